{#-
    unit_changes: a quote-unit switch seen in the prices (pence <-> pounds,
    cents <-> dollars, a 1000x rescaling): one row per switch
    (price_unit_changes), at the first candle on the new unit, never one
    outlier per candle after it. The step candle itself is not reported by
    price_outliers.

    observed_value = close ratio across the step, expected_value = 1.
    Extra columns: unit_factor (100, 1000, 0.01 or 0.001), candles_after (the
    candles on the new unit up to the next unit step or the end of the data).
    candles_after < persist_required (the data ends sooner) marks the finding
    provisional.
-#}
{% test unit_changes(model, lookback=none, is_final_column='is_final', scored_model=none) %}

with

{{ price_check_ctes(model, lookback, is_final_column, scored_model) }},

final as (
    select
        'unit_changes'::text as check_name,
        'unit_change'::text as anomaly_type,
        {{ mdq_setting('mdq_unit_change_severity') }}::text as severity,
        symbol,
        asset_class,
        timeframe,
        ts as ts_start,
        ts as ts_end,
        close_ratio::double precision as observed_value,
        1::double precision as expected_value,
        format(
            'close %s -> %s (ratio %s, near %s): the price level switched units %s; '
            '%s candle(s) after it on the new unit%s%s',
            prev_close,
            close,
            {{ price_round('close_ratio', 4) }},
            unit_factor,
            case when unit_factor > 1 then 'up' else 'down' end,
            candles_after,
            case
                when next_step_ts is not null
                    then format(' until the switch back at %s', next_step_ts)
                else ''
            end,
            case
                when candles_after < persist_required
                    then ' (provisional: the data ends sooner)'
                else ''
            end
        ) as failure_reason,
        unit_factor,
        candles_after
    from price_unit_changes
)

select * from final
-- incremental run: only findings inside the re-read range (price_check_ctes)
where true {{ mdq_check_scope_findings('final') }}

{% endtest %}
