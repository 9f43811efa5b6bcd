-- grain: one row per calendar
with

source as (
    select * from {{ source('market', 'trading_calendars') }}
),

final as (
    select
        -- keys
        calendar::text as calendar,
        -- time zone and trading-day roll-over (hours added to local time)
        timezone::text as timezone,
        day_rollover_hours::integer as day_rollover_hours,
        -- coverage of trading_sessions
        first_session_date::date as first_session_date,
        last_session_date::date as last_session_date,
        -- lineage
        calendar_version::text as calendar_version,
        refreshed_at::timestamptz as refreshed_at
    from source
)

select * from final
