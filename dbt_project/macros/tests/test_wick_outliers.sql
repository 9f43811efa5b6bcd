{#-
    wick_outliers: a single-print spike inside a candle whose close looks
    normal (field case BH-14). A candle is a wick outlier when its log range
    ln(high/low) is at least wick_min_range_ratio x the median range of its
    2 previous and 2 next candles (price_median_of_4, O(1) per row), its body
    |ln(close/open)| is at most wick_max_body_share of the range (the close
    recovered), and the range is at least wick_min_range_z robust z above its
    block median (price_block_scales). Still-forming candles are skipped.
    The candle is reported, never deleted.

    One row per candle; observed_value = range / neighbour median range,
    expected_value = wick_min_range_ratio. Extra columns: wick_side ('low' or
    'high': the suspect price), wick_price.
-#}
{% test wick_outliers(model, lookback=none, is_final_column='is_final', scored_model=none) %}

with

{{ price_check_ctes(model, lookback, is_final_column, scored_model) }},

wicks as (
    select *
    from price_scored
    where is_wick_outlier
),

final as (
    select
        'wick_outliers'::text as check_name,
        'wick_outlier'::text as anomaly_type,
        {{ mdq_setting('mdq_wick_severity') }}::text as severity,
        symbol,
        asset_class,
        timeframe,
        ts as ts_start,
        ts as ts_end,
        range_ratio::double precision as observed_value,
        wick_min_range_ratio::double precision as expected_value,
        format(
            '%s %s is a wick: range %s%% is %sx the neighbouring median %s%%, '
            'close %s recovered to within %s%% of open %s',
            wick_side,
            case when wick_side = 'low' then low else high end,
            {{ price_round('100 * (exp(log_range) - 1)', 3) }},
            {{ price_round('range_ratio', 1) }},
            {{ price_round('100 * (exp(neighbour_range_median) - 1)', 3) }},
            close,
            {{ price_round('100 * (exp(log_body) - 1)', 3) }},
            open
        ) as failure_reason,
        wick_side,
        case when wick_side = 'low' then low else high end as wick_price
    from wicks
)

select * from final
-- incremental run: only findings inside the re-read range (price_check_ctes)
where true {{ mdq_check_scope_findings('final') }}

{% endtest %}
