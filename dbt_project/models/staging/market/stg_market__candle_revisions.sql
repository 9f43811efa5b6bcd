-- grain: one row per revision (revision_id): a final candle's values before a
-- later backfill changed them; prices in quote currency, instants UTC
with

source as (
    select * from {{ source('market', 'candle_revisions') }}
),

final as (
    select
        -- keys
        revision_id::bigint as revision_id,
        symbol::text as symbol,
        asset_class::text as asset_class,
        timeframe::text as timeframe,
        ts::timestamptz as ts,
        execution_id::uuid as execution_id,
        -- the candle before the revision
        open::double precision as open,
        high::double precision as high,
        low::double precision as low,
        close::double precision as close,
        volume::double precision as volume,
        -- the values that replaced it
        new_open::double precision as new_open,
        new_high::double precision as new_high,
        new_low::double precision as new_low,
        new_close::double precision as new_close,
        new_volume::double precision as new_volume,
        -- timestamps
        revised_at::timestamptz as revised_at,
        restored_at::timestamptz as restored_at
    from source
)

select * from final
