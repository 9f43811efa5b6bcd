{#-
    price_scored_candles(features, scales, split_matches)

    Joins the per-candle features (price_candle_features) to their block's
    reference scale of the same time bucket (price_block_scales), to the
    matched known splits (price_known_split_matches) and to the known
    dividends (stg_market__corporate_actions, action_type 'dividend', matched
    to the first candle of the ex-date session), and judges each candle at
    `as_of` (price_check_as_of).

    Returns one row per candle with the feature columns plus:
      is_forming            final_at (the session close for 1d, the slot end
                            for intraday, per the instrument's calendar) is
                            after as_of - mdq_forming_grace. Computed here,
                            never stored: a candle stored while forming is
                            judged as soon as it is final.
      split_log_ratio       ln(ratio) of a known split matched to this candle
      dividend_cash         cash dividend per share going ex at this candle
      dividend_log_ratio    ln(prev_close / (prev_close - dividend)): the
                            ex-dividend drop a dividend explains
      adjusted_log_return   log_return + split_log_ratio + dividend_log_ratio
                            (a known split or dividend is neutralised: BH-12
                            gives +1.2 %); the total log return
      simple_move           exp(adjusted_log_return) - 1
      reference_return_median, reference_return_scale  (1.4826 x MAD)
      return_z              robust z of adjusted_log_return / sqrt(expected
                            candles elapsed), null without scale
      range_ratio           log_range / neighbour_range_median
      range_z               robust z of log_range against its block and bucket
      volume_ratio          volume / median volume of the 4 previous candles
                            (the candle's own unit, never price x volume)
      outlier_z_threshold, outlier_min_move  thresholds applied (the opening
                            gap after a closure uses the asset class's daily
                            floor: it spans a night, not a minute)
      is_outlier_move       |simple_move| >= outlier_min_move and (no scale
                            or |return_z| >= outlier_z), not forming
      is_wick_outlier       range_ratio >= wick_min_range_ratio, body share
                            <= wick_max_body_share, range_z >= wick_min_range_z
                            (or no range scale), not forming
      wick_side             'low' or 'high': the longer wick
-#}
{% macro price_scored_candles(features, scales, split_matches) %}
with

scored_matched_splits as (
    select
        symbol,
        timeframe,
        jump_ts,
        ln(split_ratio) as split_log_ratio
    from {{ split_matches }}
    where match_status = 'matched'
),

scored_dividends as (
    select
        symbol,
        effective_date,
        sum(cash_amount) as dividend_cash
    from {{ ref('stg_market__corporate_actions') }}
    where action_type = 'dividend' and cash_amount > 0
    group by symbol, effective_date
),

scored_joined as (
    select
        features.*,
        matches.split_log_ratio,
        dividends.dividend_cash,
        case
            when features.prev_close > dividends.dividend_cash
                then ln(
                    features.prev_close
                    / (features.prev_close - dividends.dividend_cash)
                )
        end as dividend_log_ratio,
        scales.reference_return_median,
        scales.reference_return_scale,
        scales.reference_range_median,
        scales.reference_range_scale
    from {{ features }} as features
    left join {{ scales }} as scales
        on
            features.symbol = scales.symbol
            and features.timeframe = scales.timeframe
            and features.time_bucket = scales.time_bucket
            and features.block_start = scales.block_start
    left join scored_matched_splits as matches
        on
            features.symbol = matches.symbol
            and features.timeframe = matches.timeframe
            and features.ts = matches.jump_ts
    left join scored_dividends as dividends
        on
            features.symbol = dividends.symbol
            and features.session_date = dividends.effective_date
            and features.is_session_start
),

scored_adjusted as (
    select
        *,
        log_return + coalesce(split_log_ratio, 0)
        + coalesce(dividend_log_ratio, 0) as adjusted_log_return,
        (
            final_at
            > {{ price_check_as_of() }}
            - {{ mdq_setting('mdq_forming_grace') }}::interval
        ) is true as is_forming
    from scored_joined
),

scored_measures as (
    select
        *,
        exp(adjusted_log_return) - 1 as simple_move,
        case
            when reference_return_scale > 0
                then (adjusted_log_return / sqrt(expected_candles)
                    - reference_return_median) / reference_return_scale
        end as return_z,
        case
            when neighbour_range_median > 0
                then log_range / neighbour_range_median
        end as range_ratio,
        case
            when reference_range_scale > 0
                then (log_range - reference_range_median)
                / reference_range_scale
        end as range_z,
        case
            when prev_volume_median > 0
                then volume / prev_volume_median
        end as volume_ratio,
        {{ mdq_setting('mdq_outlier_z', cast='double precision') }} as outlier_z_threshold,
        case
            when time_bucket = 'open'
                then {{ mdq_setting('mdq_outlier_min_move', timeframe="'1d'",
                                    cast='double precision') }}
            else {{ mdq_setting('mdq_outlier_min_move', cast='double precision') }}
        end as outlier_min_move,
        {{ mdq_setting('mdq_wick_min_range_ratio', cast='double precision') }} as wick_min_range_ratio,
        {{ mdq_setting('mdq_wick_max_body_share', cast='double precision') }} as wick_max_body_share,
        {{ mdq_setting('mdq_wick_min_range_z', cast='double precision') }} as wick_min_range_z
    from scored_adjusted
),

final as (
    select
        *,
        (
            not is_forming
            and abs(simple_move) >= outlier_min_move
            and (return_z is null or abs(return_z) >= outlier_z_threshold)
        ) is true as is_outlier_move,
        (
            not is_forming
            and range_ratio >= wick_min_range_ratio
            and log_body <= wick_max_body_share * log_range
            and (range_z is null or range_z >= wick_min_range_z)
        ) is true as is_wick_outlier,
        case
            when lower_wick >= upper_wick then 'low' else 'high'
        end as wick_side
    from scored_measures
)

select * from final
{% endmacro %}
