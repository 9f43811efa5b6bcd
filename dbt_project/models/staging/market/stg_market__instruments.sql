-- grain: one row per symbol
with

source as (
    select * from {{ source('market', 'instruments') }}
),

final as (
    select
        -- keys
        symbol::text as symbol,
        asset_class::text as asset_class,
        -- venue and calendar
        exchange::text as exchange,
        calendar::text as calendar,
        quote_currency::text as quote_currency,
        -- flags
        active::boolean as is_active
    from source
)

select * from final
