{#-
    price_scored_candles(features, scales, split_matches)

    Joins the per-candle features (price_candle_features) to their block's
    reference scale (price_block_scales) and to the matched known splits
    (price_known_split_matches), and judges each candle.

    Returns one row per candle with the feature columns plus:
      split_log_ratio       ln(ratio) of a known split matched to this candle
      adjusted_log_return   log_return + split_log_ratio (a known split is
                            neutralised: BH-12 gives +1.2 %)
      simple_move           exp(adjusted_log_return) - 1
      reference_return_median, reference_return_scale  (1.4826 x MAD)
      return_z              robust z of adjusted_log_return, null without scale
      range_ratio           log_range / neighbour_range_median
      range_z               robust z of log_range against its block
      dollar_volume_ratio   dollar_volume / prev_dollar_volume_median
      outlier_z_threshold, outlier_min_move  thresholds applied
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

scored_joined as (
    select
        features.*,
        matches.split_log_ratio,
        scales.reference_return_median,
        scales.reference_return_scale,
        scales.reference_range_median,
        scales.reference_range_scale
    from {{ features }} as features
    left join {{ scales }} as scales
        on
            features.symbol = scales.symbol
            and features.timeframe = scales.timeframe
            and features.block_start = scales.block_start
    left join scored_matched_splits as matches
        on
            features.symbol = matches.symbol
            and features.timeframe = matches.timeframe
            and features.ts = matches.jump_ts
),

scored_measures as (
    select
        *,
        log_return + coalesce(split_log_ratio, 0) as adjusted_log_return,
        exp(log_return + coalesce(split_log_ratio, 0)) - 1 as simple_move,
        case
            when reference_return_scale > 0
                then (log_return + coalesce(split_log_ratio, 0)
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
            when prev_dollar_volume_median > 0
                then dollar_volume / prev_dollar_volume_median
        end as dollar_volume_ratio,
        {{ mdq_setting('mdq_outlier_z', cast='double precision') }} as outlier_z_threshold,
        {{ mdq_setting('mdq_outlier_min_move', cast='double precision') }} as outlier_min_move,
        {{ mdq_setting('mdq_wick_min_range_ratio', cast='double precision') }} as wick_min_range_ratio,
        {{ mdq_setting('mdq_wick_max_body_share', cast='double precision') }} as wick_max_body_share,
        {{ mdq_setting('mdq_wick_min_range_z', cast='double precision') }} as wick_min_range_z
    from scored_joined
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
