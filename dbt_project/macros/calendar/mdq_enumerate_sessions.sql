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

        Incremental (is_incremental()): the pre-hook
        mdq_trim_enumerated_sessions has deleted every stored row from the
        first session that changed (or was added or removed) on; per calendar,
        timeframe and grid this enumerates only the sessions after the last
        stored one, plus that last one again (its next_session_first_slot_at
        changes), numbering on from its bars_before. A partition with no new
        session yields no row. A full build (first run, --full-refresh)
        enumerates everything. Zone arithmetic is done once per session, the
        rest in whole seconds (bigint), so a full build of 27 years x 3
        calendars x 13 timeframe-grids takes a few hundred milliseconds.

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

partitions as (
    -- one row per (calendar, timeframe, grid) to enumerate
    select
        calendars.calendar,
        calendars.timezone,
        timeframes.timeframe,
        timeframes.timeframe_seconds,
        grids.grid
    from calendars
    cross join timeframes
    cross join grids
    where timeframes.timeframe <> '1d' or grids.grid = 'session'
),

{% if is_incremental() %}
last_stored as (
    -- per partition: the last stored session (the pre-hook removed any
    -- changed ones) and the numbering to continue from; one index probe each
    select
        partitions.calendar,
        partitions.timeframe,
        partitions.grid,
        stored.session_date,
        stored.bars_before,
        stored.previous_session_last_slot_at
    from partitions
    inner join lateral (
        select
            this_table.session_date,
            this_table.bars_before,
            this_table.previous_session_last_slot_at
        from {{ this }} as this_table
        where this_table.calendar = partitions.calendar
            and this_table.timeframe = partitions.timeframe
            and this_table.grid = partitions.grid
        order by this_table.session_date desc
        limit 1
    ) as stored on true
),

todo as (
    -- partitions with a session after the last stored one, from that one on
    select
        partitions.*,
        last_stored.session_date as from_date,
        coalesce(last_stored.bars_before, 0)::bigint as bars_base,
        last_stored.previous_session_last_slot_at as previous_base
    from partitions
    left join last_stored
        on partitions.calendar = last_stored.calendar
        and partitions.timeframe = last_stored.timeframe
        and partitions.grid = last_stored.grid
    where exists (
        select 1
        from sessions
        where sessions.calendar = partitions.calendar
            and sessions.session_date
            > coalesce(last_stored.session_date, '-infinity'::date)
    )
),
{% else %}
todo as (
    select
        partitions.*,
        null::date as from_date,
        0::bigint as bars_base,
        null::timestamptz as previous_base
    from partitions
),
{% endif %}

todo_calendars as (
    select
        calendar,
        min(coalesce(from_date, '-infinity'::date)) as from_date
    from todo
    group by calendar
),

session_local as materialized (
    -- zone arithmetic once per session (not per timeframe): seconds from
    -- local midnight to the open, the session's length, its daily label
    select
        sessions.calendar,
        sessions.session_date,
        sessions.open_at,
        sessions.close_at,
        sessions.is_early_close,
        calendars.timezone,
        date_part(
            'epoch',
            (sessions.open_at at time zone calendars.timezone)
            - date_trunc('day', sessions.open_at at time zone calendars.timezone)
        )::bigint as open_local_seconds,
        date_part('epoch', sessions.close_at - sessions.open_at) as span_seconds,
        -- midnight of the session date in the calendar's zone: the daily
        -- candle label
        (sessions.session_date::timestamp at time zone calendars.timezone)
            as session_label_at
    from sessions
    inner join calendars
        on sessions.calendar = calendars.calendar
    inner join todo_calendars
        on sessions.calendar = todo_calendars.calendar
    where sessions.session_date >= todo_calendars.from_date
),

anchored as (
    select
        session_local.*,
        todo.timeframe,
        todo.timeframe_seconds,
        todo.grid,
        todo.bars_base,
        todo.from_date,
        todo.previous_base,
        -- the clock grid's stub: from the open to the next multiple of the
        -- timeframe after local midnight
        case
            when todo.grid = 'clock'
                then mod(
                    todo.timeframe_seconds
                    - mod(session_local.open_local_seconds, todo.timeframe_seconds),
                    todo.timeframe_seconds
                )
            else 0
        end::bigint as anchor_offset_seconds
    from session_local
    inner join todo
        on session_local.calendar = todo.calendar
        and session_local.session_date >= coalesce(todo.from_date, '-infinity'::date)
),

sized as (
    select
        anchored.*,
        anchored.open_at + make_interval(secs => anchored.anchor_offset_seconds)
            as grid_anchor_at,
        (case when anchored.anchor_offset_seconds > 0 then 1 else 0 end)::bigint
            as stub_bars,
        (case
            when anchored.timeframe = '1d' then 1
            else (case when anchored.anchor_offset_seconds > 0 then 1 else 0 end)
                + greatest(
                    ceil(
                        (anchored.span_seconds - anchored.anchor_offset_seconds)
                        / anchored.timeframe_seconds
                    ),
                    0
                )
        end)::bigint as bars_in_session
    from anchored
),

numbered as (
    select
        sized.*,
        (
            sized.bars_base
            + sum(sized.bars_in_session) over session_order
            - sized.bars_in_session
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
    window session_order as (
        partition by sized.calendar, sized.timeframe, sized.grid
        order by sized.session_date
        rows between unbounded preceding and current row
    )
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
        -- the first enumerated row of an incremental run is the last stored
        -- one: its predecessor is not enumerated again
        case
            when session_date = from_date then previous_base
            else lag(last_slot_at) over partition_order
        end as previous_session_last_slot_at,
        lead(first_slot_at) over partition_order as next_session_first_slot_at
    from numbered
    window partition_order as (
        partition by calendar, timeframe, grid order by session_date
    )
)

select * from final
{% endmacro %}


{% macro mdq_trim_enumerated_sessions(grid_names) %}
    {#-
        Pre-hook of the incremental session enumerations: delete, per calendar,
        every stored row from the first session date whose session (open_at,
        close_at, is_early_close, the calendar's zone) differs from
        stg_market__trading_sessions, was added before the last stored date or
        was removed, so that mdq_enumerate_sessions renumbers from there; and
        every row of a calendar, timeframe or grid no longer wanted. Sessions
        appended after the last stored date delete nothing.

        The sessions are compared with one stored partition per calendar (the
        first timeframe of var calendar_timeframes on the first grid; read by
        the unique index): every partition of a calendar is enumerated in the
        same runs from the same sessions, so one stands for all (a partition
        added later is enumerated whole by the model). When that partition is
        missing, the whole calendar is renumbered.

        Args:
            grid_names: the model's grids ('session' and/or 'clock').

        Returns:
            two delete statements when the model is built incrementally, else an
            empty string (first build, --full-refresh).
    -#}
{%- if is_incremental() %}
{%- set timeframes = mdq_calendar_timeframes() %}
{%- set probe_timeframe = (timeframes | reject('equalto', '1d') | first) if 'clock' in grid_names else timeframes[0] %}
delete from {{ this }}
where timeframe <> all(array[
        {%- for tf in timeframes %}'{{ tf }}'{{ ', ' if not loop.last }}{% endfor -%}
    ]::text [])
    or grid <> all(array[
        {%- for name in grid_names %}'{{ name }}'{{ ', ' if not loop.last }}{% endfor -%}
    ]::text [])
    or (timeframe = '1d' and grid <> 'session')
    or calendar not in (select calendar from {{ ref('stg_market__trading_calendars') }});

with

wanted as (
    select
        sessions.calendar,
        sessions.session_date,
        sessions.open_at,
        sessions.close_at,
        sessions.is_early_close,
        calendars.timezone
    from {{ ref('stg_market__trading_sessions') }} as sessions
    inner join {{ ref('stg_market__trading_calendars') }} as calendars
        on sessions.calendar = calendars.calendar
),

probe as (
    select *
    from {{ this }}
    where timeframe = '{{ probe_timeframe }}' and grid = '{{ grid_names[0] }}'
),

changed as (
    select
        coalesce(wanted.calendar, probe.calendar) as calendar,
        min(coalesce(wanted.session_date, probe.session_date)) as restart_date
    from wanted
    full outer join probe
        on wanted.calendar = probe.calendar
        and wanted.session_date = probe.session_date
    where probe.session_date is null
        or wanted.session_date is null
        or (wanted.open_at, wanted.close_at, wanted.is_early_close, wanted.timezone)
        is distinct from
        (probe.open_at, probe.close_at, probe.is_early_close, probe.timezone)
    group by 1
)

delete from {{ this }} as stored
using changed
where stored.calendar = changed.calendar
    and stored.session_date >= changed.restart_date
{%- endif %}
{% endmacro %}


{% macro mdq_analyze_if_unanalyzed() %}
    {#-
        Post-hook of the incremental session enumerations: ANALYZE the model
        only when PostgreSQL has no statistics for it yet (a first build or a
        --full-refresh: a new table), so the checks' planner hash-joins
        candles to it. An incremental run that appended a few sessions leaves
        the statistics to autovacuum (ANALYZE of the whole table cost ~0.5 s
        per run on this project's 165K rows).

        Returns:
            a DO statement.
    -#}
do $mdq$
begin
    if not exists (
        select 1
        from pg_stats
        where schemaname = {{ mdq_literal(this.schema) }}
            and tablename = {{ mdq_literal(this.identifier) }}
    ) then
        execute format('analyze %I.%I', {{ mdq_literal(this.schema) }}, {{ mdq_literal(this.identifier) }});
    end if;
end
$mdq$
{% endmacro %}
