-- grain: one row per symbol, timeframe, time_bucket, block_start (robust-scale
-- block, UTC)
{{
    config(
        materialized='incremental',
        incremental_strategy='mdq_scope',
        meta={'mdq_rebuild_unless_scoped': true, 'mdq_scope_column': 'block_start'},
        pre_hook="{{ price_work_mem() }}",
        indexes=[
            {'columns': ['symbol', 'timeframe', 'time_bucket', 'block_start'],
             'unique': true},
        ],
    )
}}

{#- the run's scope (price_scope_rows: none on a full build) -#}
{%- set scope_rows = price_scope_rows() %}

with

-- not materialized: read several times, each read by its own filters and
-- indexes (a materialized CTE would copy every candle of the model)
features as not materialized (
    select * from {{ ref('int_candle_features_computed') }}
),

{% if is_incremental() %}

-- an incremental run with a scope (price_scope.sql): per changed series and
-- time bucket, the block of read_from and every later one are recomputed
-- (price_rewrite_from), from the candles of the block before it, so that the
-- warm-up fallback sees its predecessor; nothing else is read
first_blocks as (
    select
        price_scope.symbol,
        price_scope.timeframe,
        buckets.time_bucket,
        {{ price_rewrite_from(model.name, 'price_scope', 'buckets') }}
            as first_changed_block
    from {{ price_scope_values(scope_rows) }}
    cross join (
        values ('day'), ('open'), ('first_hour'), ('rest')
    ) as buckets (time_bucket)
),

-- the stored block before it (one index probe), else the first changed one
previous_blocks as (
    select
        first_blocks.symbol,
        first_blocks.timeframe,
        first_blocks.time_bucket,
        first_blocks.first_changed_block,
        coalesce(
            (
                select max(blocks.block_start)
                from {{ this }} as blocks
                where
                    blocks.symbol = first_blocks.symbol
                    and blocks.timeframe = first_blocks.timeframe
                    and blocks.time_bucket = first_blocks.time_bucket
                    and blocks.block_start < first_blocks.first_changed_block
            ),
            first_blocks.first_changed_block
        ) as read_from_block
    from first_blocks
),

-- the candles of those blocks: every candle of a block is at or after its
-- start, so `ts >=` bounds the read by the (symbol, timeframe, ts) index; the
-- 'open' bucket's year blocks by the partial index of its candles (one a
-- session: price_open_bucket_index), not by every candle of the year
input_features as (
    select features.*
    from features
    inner join previous_blocks
        on
            features.symbol = previous_blocks.symbol
            and features.timeframe = previous_blocks.timeframe
            and features.time_bucket = previous_blocks.time_bucket
            and features.ts >= previous_blocks.read_from_block
            and features.block_start >= previous_blocks.read_from_block
    where
        previous_blocks.time_bucket <> 'open'
        and features.time_bucket <> 'open'
        and features.ts >= (
            select min(non_open.read_from_block)
            from previous_blocks as non_open
            where non_open.time_bucket <> 'open'
        )
    union all
    select features.*
    from features
    inner join previous_blocks
        on
            features.symbol = previous_blocks.symbol
            and features.timeframe = previous_blocks.timeframe
            and features.ts >= previous_blocks.read_from_block
            and features.block_start >= previous_blocks.read_from_block
    where
        previous_blocks.time_bucket = 'open'
        and features.time_bucket = 'open'
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

-- materialized, both: computed once (joined below, a nested loop the
-- planner picks on its row estimates would otherwise recompute the blocks per
-- row)
scales as materialized (
    {{ price_block_scales('input_features') }}
),

block_ingestion as materialized (
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
