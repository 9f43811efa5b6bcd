-- grain: one row per symbol, timeframe, time_bucket, block_start (robust-scale
-- block, UTC)
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['symbol', 'timeframe', 'time_bucket', 'block_start'],
    )
}}

with

features as (
    select * from {{ ref('int_candle_features_computed') }}
),

{% if is_incremental() %}

last_run as (
    select max(max_ingested_at) as last_ingested_at from {{ this }}
),

-- the first block of each series and time bucket touched by candles written
-- since the last run; it and every later block are recomputed
changed_series as (
    select
        features.symbol,
        features.timeframe,
        features.time_bucket,
        min(features.block_start) as first_changed_block
    from features
    cross join last_run
    where
        last_run.last_ingested_at is null
        or features.ingested_at > last_run.last_ingested_at
    group by features.symbol, features.timeframe, features.time_bucket
),

-- the block before it, so that the warm-up fallback sees its predecessor
previous_blocks as (
    select
        changed_series.symbol,
        changed_series.timeframe,
        changed_series.time_bucket,
        changed_series.first_changed_block,
        coalesce(
            max(blocks.block_start), changed_series.first_changed_block
        ) as read_from_block
    from changed_series
    left join {{ this }} as blocks
        on
            changed_series.symbol = blocks.symbol
            and changed_series.timeframe = blocks.timeframe
            and changed_series.time_bucket = blocks.time_bucket
            and blocks.block_start < changed_series.first_changed_block
    group by
        changed_series.symbol,
        changed_series.timeframe,
        changed_series.time_bucket,
        changed_series.first_changed_block
),

input_features as (
    select features.*
    from features
    inner join previous_blocks
        on
            features.symbol = previous_blocks.symbol
            and features.timeframe = previous_blocks.timeframe
            and features.time_bucket = previous_blocks.time_bucket
            and features.block_start >= previous_blocks.read_from_block
),

{% else %}

previous_blocks as (
    select
        null::text as symbol,
        null::text as timeframe,
        null::text as time_bucket,
        null::timestamptz as first_changed_block
    where false
),

input_features as (
    select * from features
),

{% endif %}

scales as (
    {{ price_block_scales('input_features') }}
),

block_ingestion as (
    select
        symbol,
        timeframe,
        time_bucket,
        block_start,
        max(ingested_at) as max_ingested_at
    from input_features
    group by symbol, timeframe, time_bucket, block_start
),

final as (
    select
        scales.symbol,
        scales.timeframe,
        scales.time_bucket,
        scales.block_start,
        scales.return_candles,
        scales.return_median,
        scales.return_mad,
        scales.range_median,
        scales.range_mad,
        scales.reference_block_start,
        scales.reference_return_median,
        scales.reference_return_scale,
        scales.reference_range_median,
        scales.reference_range_scale,
        block_ingestion.max_ingested_at
    from scales
    inner join block_ingestion
        on
            scales.symbol = block_ingestion.symbol
            and scales.timeframe = block_ingestion.timeframe
            and scales.time_bucket = block_ingestion.time_bucket
            and scales.block_start = block_ingestion.block_start
    {% if is_incremental() %}
    inner join previous_blocks
        on
            scales.symbol = previous_blocks.symbol
            and scales.timeframe = previous_blocks.timeframe
            and scales.time_bucket = previous_blocks.time_bucket
            and scales.block_start >= previous_blocks.first_changed_block
    {% endif %}
)

select * from final
