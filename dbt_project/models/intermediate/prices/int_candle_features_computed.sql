-- grain: one row per symbol, timeframe, ts (candle open time, UTC)
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['symbol', 'timeframe', 'ts'],
        indexes=[
            {'columns': ['symbol', 'timeframe', 'ts'], 'unique': true},
            {'columns': ['ingested_at']},
        ],
    )
}}

with

candles as (
    select * from {{ ref('stg_market__candles') }}
),

{% if is_incremental() %}

-- series with candles written since the last run, recomputed from the first
-- changed candle minus the look-back (lag/lead context, 4-candle medians)
last_run as (
    select max(ingested_at) as last_ingested_at from {{ this }}
),

changed_series as (
    select
        candles.symbol,
        candles.timeframe,
        min(candles.ts)
        - {{ price_lookback_interval('candles.timeframe') }} as recompute_from
    from candles
    cross join last_run
    where
        last_run.last_ingested_at is null
        or candles.ingested_at > last_run.last_ingested_at
    group by candles.symbol, candles.timeframe
),

input_candles as (
    select candles.*
    from candles
    inner join changed_series
        on
            candles.symbol = changed_series.symbol
            and candles.timeframe = changed_series.timeframe
            and candles.ts >= changed_series.recompute_from
            - {{ price_lookback_interval('candles.timeframe') }}
),

{% else %}

input_candles as (
    select * from candles
),

{% endif %}

features as (
    {{ price_candle_features('input_candles', extra_columns=['ingested_at']) }}
),

final as (
    select
        features.symbol,
        features.asset_class,
        features.timeframe,
        features.ts,
        features.open,
        features.high,
        features.low,
        features.close,
        features.volume,
        features.is_final,
        features.calendar,
        features.session_date,
        features.session_open_at,
        features.session_close_at,
        features.is_early_close,
        features.final_at,
        features.slot_ordinal,
        features.expected_candles,
        features.is_session_start,
        features.is_after_closure,
        features.time_bucket,
        features.is_valid,
        features.prev_ts,
        features.prev_close,
        features.log_return,
        features.log_open_gap,
        features.log_range,
        features.log_body,
        features.lower_wick,
        features.upper_wick,
        features.neighbour_range_median,
        features.prev_volume_median,
        features.block_start,
        features.is_flat_filler,
        features.ingested_at
    from features
    {% if is_incremental() %}
    inner join changed_series
        on
            features.symbol = changed_series.symbol
            and features.timeframe = changed_series.timeframe
            and features.ts >= changed_series.recompute_from
    {% endif %}
)

select * from final
