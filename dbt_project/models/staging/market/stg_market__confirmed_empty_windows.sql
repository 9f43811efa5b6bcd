-- grain: one row per symbol, timeframe, window_start; window [window_start,
-- window_end) UTC
with

source as (
    select * from {{ source('market', 'backfill_confirmed_empty') }}
),

final as (
    select
        -- keys
        symbol::text as symbol,
        timeframe::text as timeframe,
        -- timestamps
        window_start::timestamptz as window_start_at,
        window_end::timestamptz as window_end_at,
        confirmed_at::timestamptz as confirmed_at,
        -- lineage
        provider::text as provider
    from source
)

select * from final
