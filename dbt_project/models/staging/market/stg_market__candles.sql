-- grain: one row per symbol, timeframe, ts (candle open time, UTC)
with

source as (
    select * from {{ source('market', 'market_data') }}
    -- a shard run (mdq check --shard i/n, its own schema): only the shard's symbols
    where true {{ mdq_shard_rows('symbol') }}
),

renamed as (
    select
        -- keys
        symbol::text as symbol,
        asset_class::text as asset_class,
        timeframe::text as timeframe,
        -- timestamps
        ts::timestamptz as ts,
        -- prices
        open::double precision as open,
        high::double precision as high,
        low::double precision as low,
        close::double precision as close,
        -- volume
        volume::double precision as volume,
        -- lineage
        source::text as source,
        is_final::boolean as is_final,
        ingested_at::timestamptz as ingested_at
    from source
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
        source,
        is_final,
        ingested_at
    from renamed
)

select * from final
