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
        is_valid,
        is_flat_filler,
        is_forming,
        ingested_at,
        log_return,
        split_log_ratio,
        adjusted_log_return,
        return_z,
        range_ratio,
        range_z,
        dollar_volume_ratio,
        is_outlier_move,
        is_wick_outlier
    from scored
)

select * from final
