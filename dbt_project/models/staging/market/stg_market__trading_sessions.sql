-- grain: one row per calendar, session_date; [open_at, close_at) in UTC
with

source as (
    select * from {{ source('market', 'trading_sessions') }}
),

final as (
    select
        -- keys
        calendar::text as calendar,
        session_date::date as session_date,
        -- timestamps
        open_at::timestamptz as open_at,
        close_at::timestamptz as close_at,
        -- flags
        is_early_close::boolean as is_early_close
    from source
)

select * from final
