{% test candle_gaps(
    model,
    symbol_column='symbol',
    asset_class_column='asset_class',
    timeframe_column='timeframe',
    ts_column='ts',
    calendar_column=none,
    sessionized_model=none,
    error_after_var='mdq_gap_error_after_candles'
) %}
{#-
    Calendar-aware gaps: one row per hole between two consecutive in-session
    candles of a (symbol, timeframe), counted in missing candles of that
    timeframe where the calendar says the market was open (weekends, holidays,
    closures, early closes and the FX weekend are not gaps; intraday slots are
    aligned to the session open, the last one may be shorter).

    anomaly_type: 'source_no_data' when backfill_confirmed_empty windows of the
        symbol and timeframe (adjacent or overlapping windows merged, e.g.
        pages) contain every missing slot (BH-07); else 'venue_outage' when
        another symbol of the same venue (instruments.exchange, else the
        calendar) and timeframe has an overlapping hole (BH-06); else 'gap'.
        ts_start/ts_end: first and last missing slot (daily: the session label,
        midnight exchange time). Out-of-session candles are ignored (see
        out_of_session_candles). Cost: one join to the enumerated sessions and
        one lag() scan.

    Early-close stubs: many vendors omit the last, partial bar of an
    early-close session (NYSE 1h bars on 2024-11-29 close at 13:00: the 12:30
    slot is 30 minutes long). A hole that is exactly that one slot follows
    var `mdq_early_close_stub` (per asset class and timeframe): 'ignore' (the
    default: no row), 'warn' (one row, anomaly_type 'early_close_stub',
    severity warn) or 'gap' (an ordinary gap).

    sessionized_model: the model int_candles_sessionized (YAML argument), whose
        stored pass this check reads instead of sessionizing `model` again
        (macro mdq_sessionized_candles); none: its own pass over `model` (any
        other candle model or column names). A shard run sessionizes all of
        market_data itself (the venue context, mdq_venue_context).
-#}
{#- a shard run reads every symbol for the venue check (mdq_venue_context): the
    shard's own shared pass holds only the shard's symbols, so it sessionizes itself -#}
{%- if mdq_run_shard() -%}
    {%- set sessionized_model = none -%}
{%- endif %}
with

{{ mdq_sessionized_candles(
    mdq_venue_context(model),
    symbol_column=symbol_column,
    asset_class_column=asset_class_column,
    timeframe_column=timeframe_column,
    ts_column=ts_column,
    calendar_column=calendar_column,
    sessionized_model=sessionized_model
) }},

confirmed_empty as (
    select * from {{ ref('stg_market__confirmed_empty_windows') }}
),

confirmed_empty_ordered as (
    select
        symbol,
        timeframe,
        window_start_at,
        window_end_at,
        max(window_end_at) over (
            partition by symbol, timeframe
            order by window_start_at
            rows between unbounded preceding and 1 preceding
        ) as previous_max_end_at
    from confirmed_empty
),

confirmed_empty_islands as (
    -- adjacent or overlapping windows (e.g. pages of one backfill) form one
    -- island
    select
        *,
        sum(
            case when previous_max_end_at >= window_start_at then 0 else 1 end
        ) over (
            partition by symbol, timeframe
            order by window_start_at
            rows between unbounded preceding and current row
        ) as island_number
    from confirmed_empty_ordered
),

confirmed_empty_spans as (
    select
        symbol,
        timeframe,
        min(window_start_at) as span_start_at,
        max(window_end_at) as span_end_at
    from confirmed_empty_islands
    group by symbol, timeframe, island_number
),

in_session as (
    select *
    from candles_sessionized
    where is_in_session
),

ordered as (
    -- the scan: two lag() columns per candle; everything else is computed for
    -- holes only
    select
        symbol,
        asset_class,
        timeframe,
        calendar,
        venue,
        ts,
        grid,
        session_date,
        slot_ordinal,
        lag(slot_ordinal) over by_symbol as previous_slot_ordinal,
        lag(ts) over by_symbol as previous_ts
    from in_session
    window by_symbol as (
        partition by symbol, timeframe order by ts
    )
),

jumps as materialized (
    -- the session of the candle after each hole (an in-session candle has one).
    -- Materialized: the few holes first; inlined, the planner (estimating one
    -- row) joined this session set to the previous candle's on calendar,
    -- timeframe and grid alone before the candles, sessions x sessions per
    -- calendar (minutes on years of XNYS 1m sessions)
    select
        ordered.*,
        own_sessions.timeframe_seconds,
        own_sessions.bars_before,
        own_sessions.first_slot_at,
        own_sessions.grid_anchor_at,
        own_sessions.stub_bars,
        own_sessions.previous_session_last_slot_at
    from ordered
    inner join mdq_sessions_enumerated as own_sessions
        on ordered.calendar = own_sessions.calendar
        and ordered.timeframe = own_sessions.timeframe
        and ordered.grid = own_sessions.grid
        and ordered.session_date = own_sessions.session_date
    where ordered.slot_ordinal - ordered.previous_slot_ordinal > 1
),

holes as (
    select
        jumps.symbol,
        jumps.asset_class,
        jumps.timeframe,
        jumps.calendar,
        jumps.venue,
        calendars.timezone,
        jumps.previous_ts,
        jumps.ts,
        jumps.slot_ordinal - jumps.previous_slot_ordinal - 1 as missing_candles,
        -- the one missing slot is the partial last slot of an early close
        (
            jumps.timeframe <> '1d'
            and previous_sessions.is_early_close
            and jumps.slot_ordinal - jumps.previous_slot_ordinal = 2
            and jumps.previous_slot_ordinal + 1
            = previous_sessions.bars_before + previous_sessions.bars_in_session - 1
            and previous_sessions.last_slot_at
            + make_interval(secs => jumps.timeframe_seconds)
            > previous_sessions.close_at
        ) as is_early_close_stub,
        -- first missing slot: the next slot of the previous candle's session,
        -- else the first slot of the session after it
        case
            when jumps.previous_slot_ordinal + 1
                < previous_sessions.bars_before + previous_sessions.bars_in_session
                then previous_sessions.grid_anchor_at + make_interval(
                    secs => (
                        jumps.previous_slot_ordinal + 1 - previous_sessions.bars_before
                        - previous_sessions.stub_bars
                    )
                    * jumps.timeframe_seconds
                )
            else previous_sessions.next_session_first_slot_at
        end as first_missing_at,
        -- last missing slot: the slot before this candle's in its session, else
        -- the last slot of the session before it
        case
            when jumps.slot_ordinal - 1 - jumps.bars_before >= jumps.stub_bars
                and jumps.slot_ordinal > jumps.bars_before
                then jumps.grid_anchor_at + make_interval(
                    secs => (jumps.slot_ordinal - 1 - jumps.bars_before - jumps.stub_bars)
                    * jumps.timeframe_seconds
                )
            when jumps.slot_ordinal > jumps.bars_before then jumps.first_slot_at
            else jumps.previous_session_last_slot_at
        end as last_missing_at
    from jumps
    inner join mdq_calendars as calendars
        on jumps.calendar = calendars.calendar
    inner join mdq_sessions_enumerated as previous_sessions
        on jumps.calendar = previous_sessions.calendar
        and jumps.timeframe = previous_sessions.timeframe
        and jumps.grid = previous_sessions.grid
        and (
            (jumps.previous_ts at time zone calendars.timezone)
            + make_interval(hours => calendars.day_rollover_hours)
        )::date = previous_sessions.session_date
),

shared_holes as (
    -- holes that another symbol of the same venue and timeframe shares (in
    -- part)
    select distinct
        holes.symbol,
        holes.timeframe,
        holes.first_missing_at
    from holes
    inner join holes as others
        on holes.venue = others.venue
        and holes.timeframe = others.timeframe
        and holes.symbol <> others.symbol
        and others.first_missing_at <= holes.last_missing_at
        and others.last_missing_at >= holes.first_missing_at
),

classified as (
    select
        holes.*,
        exists (
            select 1
            from confirmed_empty_spans
            where confirmed_empty_spans.symbol = holes.symbol
                and confirmed_empty_spans.timeframe = holes.timeframe
                and confirmed_empty_spans.span_start_at <= holes.first_missing_at
                and confirmed_empty_spans.span_end_at > holes.last_missing_at
        ) as is_confirmed_empty,
        shared_holes.symbol is not null as is_venue_wide
    from holes
    left join shared_holes
        on holes.symbol = shared_holes.symbol
        and holes.timeframe = shared_holes.timeframe
        and holes.first_missing_at = shared_holes.first_missing_at
),

judged as (
    select
        classified.*,
        classified.is_early_close_stub
        and {{ mdq_setting('mdq_early_close_stub', 'classified.asset_class',
                           'classified.timeframe') }} = 'warn' as is_labelled_stub
    from classified
    where
        not classified.is_early_close_stub
        or {{ mdq_setting('mdq_early_close_stub', 'classified.asset_class',
                          'classified.timeframe') }} <> 'ignore'
),

final as (
    select
        'candle_gaps'::text as check_name,
        case
            when is_labelled_stub then 'early_close_stub'
            when is_confirmed_empty then 'source_no_data'
            when is_venue_wide then 'venue_outage'
            else 'gap'
        end::text as anomaly_type,
        case
            when is_confirmed_empty or is_labelled_stub then 'warn'
            when missing_candles
                >= {{ mdq_setting(error_after_var, 'asset_class', 'timeframe') }}
                then 'error'
            else 'warn'
        end::text as severity,
        symbol,
        asset_class,
        timeframe,
        first_missing_at as ts_start,
        last_missing_at as ts_end,
        missing_candles::double precision as observed_value,
        0::double precision as expected_value,
        (
            missing_candles || ' missing ' || timeframe || ' candle(s) '
            || case
                when timeframe = '1d'
                    then 'for session(s) '
                    || ((first_missing_at at time zone timezone)::date)::text
                    || ' to ' || ((last_missing_at at time zone timezone)::date)::text
                else 'from '
                    || to_char(first_missing_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI"Z"')
                    || ' to '
                    || to_char(last_missing_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI"Z"')
            end
            || ' on calendar ' || calendar
            || case
                when is_labelled_stub
                    then ' (the partial last bar of an early-close session, which'
                    || ' many vendors omit)'
                when is_confirmed_empty then ' (source confirmed no data)'
                when is_venue_wide then ' (same hole in other symbols of ' || venue || ')'
                else ''
            end
        )::text as failure_reason,
        calendar,
        venue,
        previous_ts,
        ts as next_ts
    from judged
)

select * from final
{% endtest %}
