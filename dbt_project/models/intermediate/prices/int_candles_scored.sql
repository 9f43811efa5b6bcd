-- grain: one row per symbol, timeframe, ts (candle open time, UTC)
with

features as (
    select * from {{ ref('int_candle_features_computed') }}
),

scales as (
    select * from {{ ref('int_candle_scales_estimated') }}
),

split_matches as (
    select * from {{ ref('int_candle_splits_matched') }}
),

scored as (
    {{ price_scored_candles('features', 'scales', 'split_matches') }}
),

final as (
    select
        symbol,
        asset_class,
        timeframe,
        ts,
        open,
        high,
        low,
        close,
        volume,
        is_final,
        calendar,
        session_date,
        session_open_at,
        session_close_at,
        is_early_close,
        final_at,
        slot_ordinal,
        expected_candles,
        is_session_start,
        is_after_closure,
        time_bucket,
        is_valid,
        prev_ts,
        prev_close,
        log_return,
        log_open_gap,
        log_range,
        log_body,
        lower_wick,
        upper_wick,
        neighbour_range_median,
        prev_volume_median,
        block_start,
        is_flat_filler,
        is_forming,
        ingested_at,
        split_log_ratio,
        dividend_cash,
        dividend_log_ratio,
        reference_return_median,
        reference_return_scale,
        reference_range_median,
        reference_range_scale,
        adjusted_log_return,
        simple_move,
        return_z,
        range_ratio,
        range_z,
        volume_ratio,
        outlier_z_threshold,
        outlier_min_move,
        wick_min_range_ratio,
        wick_max_body_share,
        wick_min_range_z,
        is_outlier_move,
        is_wick_outlier,
        wick_side
    from scored
)

select * from final
