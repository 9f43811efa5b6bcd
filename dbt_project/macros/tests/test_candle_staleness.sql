{% test candle_staleness(
    model,
    symbol_column='symbol',
    asset_class_column='asset_class',
    timeframe_column='timeframe',
    ts_column='ts',
    calendar_column=none,
    sessionized_model=none,
    stale_after_var='mdq_stale_after_candles',
    error_after_var='mdq_stale_error_after_candles'
) %}
{#-
    Staleness: one row per (symbol, timeframe) whose feed has missed at least
    var(stale_after_var) completed candles since its last in-session candle,
    judged at var `as_of`. Completed candles are counted on the calendar: only
    slots of sessions, and only slots that ended by as_of (the candle still
    forming is the grace), so a stock is not stale over a weekend or before the
    open while a 1m crypto feed is stale after a few minutes. Out-of-session
    candles (e.g. synthetic weekend FX candles, BH-10) do not count as updates.

    ts_start: the last in-session candle; ts_end: as_of. observed_value:
        completed candles missed; expected_value: the threshold. Severity
        'error' from var(error_after_var) on. Reads the whole history whatever
        var `check_lookback_days` says (only the last candle of each series
        matters, and a feed dead for longer than the look-back is still stale).
        An incremental run (`mdq check` without --full, macro
        mdq_check_scope_id) reads instead only the last in-session candle of
        every series, changed or not, by index look-ups
        (mdq_last_in_session_candles, on market_data, whose staging view the
        model is): the same verdict at a cost that follows the number of
        series (with calendar_column or other column names: the scan).
        Not in mdq.quality.SCOPED_CHECKS: it judges every series each run.

    sessionized_model: the model int_candles_sessionized (YAML argument), whose
        stored pass this check reads instead of sessionizing `model` again
        (macro mdq_sessionized_candles); none: its own pass over `model` (any
        other candle model or column names).
-#}
{#- incremental run: the last in-session candle of every series by index
    look-ups (all series: a dead feed is one with no change), not all history -#}
{%- set index_path = calendar_column is none and [symbol_column, asset_class_column,
    timeframe_column, ts_column] == ['symbol', 'asset_class', 'timeframe', 'ts'] -%}
{%- if mdq_check_scope_id() and index_path -%}
    {#- market_data itself (the model is its staging view: same rows) -#}
    {%- set candles = mdq_last_in_session_candles() -%}
    {%- set sessionized_model = none -%}
{%- else -%}
    {%- set candles = model -%}
{%- endif %}
with

{{ mdq_sessionized_candles(
    candles,
    symbol_column=symbol_column,
    asset_class_column=asset_class_column,
    timeframe_column=timeframe_column,
    ts_column=ts_column,
    calendar_column=calendar_column,
    sessionized_model=sessionized_model,
    apply_lookback=false
) }},

last_candles as (
    -- hash aggregate, no sort: the last in-session candle of each series
    select
        symbol,
        timeframe,
        min(asset_class) as asset_class,
        min(calendar) as calendar,
        min(grid) as grid,
        max(ts) as last_ts,
        max(slot_ordinal) as last_slot_ordinal,
        min(as_of) as as_of
    from candles_sessionized
    where is_in_session
    group by symbol, timeframe
),

current_sessions as (
    -- per calendar and timeframe: the last session that opened by as_of
    select distinct on (sessions.calendar, sessions.timeframe, sessions.grid)
        sessions.calendar,
        sessions.timeframe,
        sessions.grid,
        sessions.grid_anchor_at,
        sessions.stub_bars,
        sessions.timeframe_seconds,
        sessions.open_at,
        sessions.close_at,
        sessions.bars_before,
        sessions.bars_in_session
    from mdq_sessions_enumerated as sessions
    where sessions.open_at <= {{ mdq_as_of() }}
    order by
        sessions.calendar, sessions.timeframe, sessions.grid, sessions.open_at desc
),

completed as (
    select
        last_candles.*,
        -- slots that ended by as_of: all earlier sessions, plus the finished
        -- slots of the session in progress (a daily slot ends at the close)
        current_sessions.bars_before + case
            when last_candles.as_of >= current_sessions.close_at
                then current_sessions.bars_in_session
            when last_candles.timeframe = '1d' then 0
            -- the clock grid's stub slot ends at grid_anchor_at
            when last_candles.as_of < current_sessions.grid_anchor_at then 0
            else least(
                current_sessions.stub_bars + floor(
                    extract(
                        epoch from last_candles.as_of - current_sessions.grid_anchor_at
                    )
                    / current_sessions.timeframe_seconds
                )::bigint,
                current_sessions.bars_in_session
            )
        end as completed_slots
    from last_candles
    inner join current_sessions
        on last_candles.calendar = current_sessions.calendar
        and last_candles.timeframe = current_sessions.timeframe
        and last_candles.grid = current_sessions.grid
),

measured as (
    select
        *,
        greatest(completed_slots - (last_slot_ordinal + 1), 0) as missed_candles,
        {{ mdq_setting(stale_after_var, 'asset_class', 'timeframe') }} as stale_after,
        {{ mdq_setting(error_after_var, 'asset_class', 'timeframe') }} as error_after
    from completed
),

final as (
    select
        'candle_staleness'::text as check_name,
        'stale'::text as anomaly_type,
        case
            when missed_candles >= error_after then 'error' else 'warn'
        end::text as severity,
        symbol,
        asset_class,
        timeframe,
        last_ts as ts_start,
        as_of as ts_end,
        missed_candles::double precision as observed_value,
        stale_after::double precision as expected_value,
        (
            'no ' || timeframe || ' candle since '
            || to_char(last_ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI"Z"')
            || ': ' || missed_candles || ' completed candle(s) of calendar ' || calendar
            || ' missed by '
            || to_char(as_of at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI"Z"')
            || ' (threshold ' || stale_after || ')'
        )::text as failure_reason,
        calendar
    from measured
    where missed_candles >= stale_after
)

select * from final
{% endtest %}
