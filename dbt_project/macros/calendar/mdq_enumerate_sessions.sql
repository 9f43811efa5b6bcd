{% macro mdq_enumerate_sessions(grid_names) %}
    {#-
        The query of int_trading_sessions_enumerated (grid 'session') and
        int_trading_sessions_clock_enumerated (grid 'clock'): one row per
        calendar, timeframe (var calendar_timeframes), grid and session date,
        with the session's expected candle slots numbered across sessions
        (bars_before), so the candles missing between two candles are
        ordinal(later) - ordinal(earlier) - 1.

        Grid 'session': slots from the open (XNYS 1h 09:30, 10:30, ...; the
        last one may be shorter). Grid 'clock' (intraday only): a stub slot
        from the open to the next multiple of the timeframe after local
        midnight (grid_anchor_at; stub_bars = 1), then those multiples
        (09:30, 10:00, 11:00, ...). A 1d session has one slot labelled
        midnight of the session date in the calendar's zone.

        Args:
            grid_names: list of 'session' and/or 'clock'.

        Returns:
            the query text (ends with `select * from final`).
    -#}
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

grids as (
    select grid_name as grid
    from unnest(array[
        {%- for name in grid_names %}'{{ name }}'{{ ', ' if not loop.last }}{% endfor -%}
    ]::text []) as names (grid_name)
),

anchored as (
    select
        sessions.calendar,
        timeframes.timeframe,
        timeframes.timeframe_seconds,
        grids.grid,
        sessions.session_date,
        sessions.open_at,
        sessions.close_at,
        sessions.is_early_close,
        calendars.timezone,
        case
            when grids.grid = 'clock'
                then sessions.open_at + make_interval(
                    secs => mod(
                        timeframes.timeframe_seconds
                        - mod(
                            date_part(
                                'epoch',
                                (sessions.open_at at time zone calendars.timezone)
                                - date_trunc(
                                    'day',
                                    sessions.open_at at time zone calendars.timezone
                                )
                            )::bigint,
                            timeframes.timeframe_seconds
                        ),
                        timeframes.timeframe_seconds
                    )
                )
            else sessions.open_at
        end as grid_anchor_at
    from sessions
    inner join calendars
        on sessions.calendar = calendars.calendar
    cross join timeframes
    cross join grids
    where timeframes.timeframe <> '1d' or grids.grid = 'session'
),

sized as (
    select
        anchored.calendar,
        anchored.timeframe,
        anchored.timeframe_seconds,
        anchored.grid,
        anchored.grid_anchor_at,
        (
            case when anchored.grid_anchor_at > anchored.open_at then 1 else 0 end
        )::bigint as stub_bars,
        anchored.session_date,
        anchored.open_at,
        anchored.close_at,
        anchored.is_early_close,
        anchored.timezone,
        -- midnight of the session date in the calendar's zone: the daily candle
        -- label
        (anchored.session_date::timestamp at time zone anchored.timezone)
            as session_label_at,
        case
            when anchored.timeframe = '1d' then 1
            else (
                case when anchored.grid_anchor_at > anchored.open_at then 1 else 0 end
            ) + greatest(
                ceil(
                    extract(epoch from anchored.close_at - anchored.grid_anchor_at)
                    / anchored.timeframe_seconds
                ),
                0
            )::bigint
        end as bars_in_session
    from anchored
),

numbered as (
    select
        sized.*,
        coalesce(
            sum(sized.bars_in_session) over (
                partition by sized.calendar, sized.timeframe, sized.grid
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
            when sized.bars_in_session > sized.stub_bars
                then sized.grid_anchor_at + make_interval(
                    secs => (sized.bars_in_session - sized.stub_bars - 1)
                    * sized.timeframe_seconds
                )
            else sized.open_at
        end as last_slot_at
    from sized
),

final as (
    select
        calendar,
        timeframe,
        timeframe_seconds,
        grid,
        grid_anchor_at,
        stub_bars,
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
            partition by calendar, timeframe, grid order by session_date
        ) as previous_session_last_slot_at,
        lead(first_slot_at) over (
            partition by calendar, timeframe, grid order by session_date
        ) as next_session_first_slot_at
    from numbered
)

select * from final
{% endmacro %}
