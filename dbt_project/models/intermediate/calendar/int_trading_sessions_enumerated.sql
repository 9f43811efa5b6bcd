{{ config(materialized="table", post_hook="analyze {{ this }}") }}

-- grain: one row per calendar, timeframe, session_date; instants UTC
-- Gives every expected candle slot an ordinal: bars_before is the number of
-- slots of all earlier sessions of the calendar and timeframe, so the candles
-- missing between two candles are ordinal(later) - ordinal(earlier) - 1 (a lag
-- scan, no per-slot expansion).
{%- set timeframes = mdq_calendar_timeframes() %}
with

sessions as (
    select * from {{ ref('stg_market__trading_sessions') }}
),

calendars as (
    select * from {{ ref('stg_market__trading_calendars') }}
),

timeframes as (
    select
        timeframe_label as timeframe,
        {{ mdq_timeframe_seconds('timeframe_label') }} as timeframe_seconds
    from unnest(array[
        {%- for tf in timeframes %}'{{ tf }}'{{ ', ' if not loop.last }}{% endfor -%}
    ]::text []) as labels (timeframe_label)
),

sized as (
    select
        sessions.calendar,
        timeframes.timeframe,
        timeframes.timeframe_seconds,
        sessions.session_date,
        sessions.open_at,
        sessions.close_at,
        sessions.is_early_close,
        calendars.timezone,
        -- midnight of the session date in the calendar's zone: the daily candle
        -- label
        (sessions.session_date::timestamp at time zone calendars.timezone)
            as session_label_at,
        case
            when timeframes.timeframe = '1d' then 1
            else ceil(
                extract(epoch from sessions.close_at - sessions.open_at)
                / timeframes.timeframe_seconds
            )::bigint
        end as bars_in_session
    from sessions
    inner join calendars
        on sessions.calendar = calendars.calendar
    cross join timeframes
),

numbered as (
    select
        sized.*,
        coalesce(
            sum(sized.bars_in_session) over (
                partition by sized.calendar, sized.timeframe
                order by sized.session_date
                rows between unbounded preceding and 1 preceding
            ),
            0
        )::bigint as bars_before,
        case
            when sized.timeframe = '1d' then sized.session_label_at
            else sized.open_at
        end as first_slot_at,
        case
            when sized.timeframe = '1d' then sized.session_label_at
            else sized.open_at + make_interval(
                secs => (sized.bars_in_session - 1) * sized.timeframe_seconds
            )
        end as last_slot_at
    from sized
),

final as (
    select
        calendar,
        timeframe,
        timeframe_seconds,
        session_date,
        timezone,
        open_at,
        close_at,
        is_early_close,
        session_label_at,
        bars_in_session,
        bars_before,
        first_slot_at,
        last_slot_at,
        lag(last_slot_at) over (
            partition by calendar, timeframe order by session_date
        ) as previous_session_last_slot_at,
        lead(first_slot_at) over (
            partition by calendar, timeframe order by session_date
        ) as next_session_first_slot_at
    from numbered
)

select * from final
