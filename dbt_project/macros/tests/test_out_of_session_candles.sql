{% test out_of_session_candles(
    model,
    symbol_column='symbol',
    asset_class_column='asset_class',
    timeframe_column='timeframe',
    ts_column='ts',
    calendar_column=none,
    sessionized_model=none,
    severity_var='mdq_out_of_session_severity'
) %}
{#-
    Candles outside every session of their calendar: one row per candle.

    anomaly_type 'out_of_session': the calendar covers the date but the market
    was closed (weekend, holiday, outside [open_at, close_at) for intraday; a
    daily candle whose session date has no session), e.g. a flat zero-volume
    Saturday FX candle (BH-10). Such candles are ignored by the gap and
    staleness checks; one row per candle. 'calendar_not_covered': the candles'
    calendar is unknown, the timeframe is not in var `calendar_timeframes`, or
    the session date lies outside the refreshed range of trading_sessions (run
    `mdq calendars refresh`); one row per (symbol, timeframe, calendar) with the
    first and last such candle and their count, so a missing refresh cannot
    flood the anomaly table.

    sessionized_model: the model int_candles_sessionized (YAML argument), whose
        stored pass this check reads instead of sessionizing `model` again
        (macro mdq_sessionized_candles); none: its own pass over `model` (any
        other candle model or column names).
-#}
with

{{ mdq_sessionized_candles(
    model,
    symbol_column=symbol_column,
    asset_class_column=asset_class_column,
    timeframe_column=timeframe_column,
    ts_column=ts_column,
    calendar_column=calendar_column,
    sessionized_model=sessionized_model
) }},

not_in_session as materialized (
    -- one pass over the candles; only the (few) rows outside every session
    -- are kept for the two branches below
    select *
    from candles_sessionized
    where not is_in_session
),

outside as (
    select *
    from not_in_session
    where is_covered
),

not_covered as (
    -- one row per series and calendar, not per candle: a missing refresh must
    -- not flood
    select
        symbol,
        timeframe,
        calendar,
        min(asset_class) as asset_class,
        min(ts) as first_ts,
        max(ts) as last_ts,
        count(*) as candle_count
    from not_in_session
    where not is_covered
    group by symbol, timeframe, calendar
),

findings as (
    select
        'out_of_session' as anomaly_type,
        symbol,
        asset_class,
        timeframe,
        ts as ts_start,
        ts as ts_end,
        1 as observed_value,
        (
            'candle at '
            || to_char(ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            || ' is outside every session of calendar ' || calendar
            || ' (session date ' || session_date || ')'
        ) as failure_reason,
        calendar
    from outside
    union all
    select
        'calendar_not_covered' as anomaly_type,
        symbol,
        asset_class,
        timeframe,
        first_ts as ts_start,
        last_ts as ts_end,
        candle_count as observed_value,
        (
            candle_count || ' ' || timeframe || ' candle(s) from '
            || to_char(first_ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            || ' to '
            || to_char(last_ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            || ' have no sessions in calendar ' || coalesce(calendar, '(none)')
            || ' (unknown calendar or timeframe, or dates outside the refreshed range);'
            || ' run `mdq calendars refresh`'
        ) as failure_reason,
        calendar
    from not_covered
),

final as (
    select
        'out_of_session_candles'::text as check_name,
        anomaly_type::text as anomaly_type,
        {{ mdq_setting(severity_var, 'asset_class', 'timeframe') }}::text as severity,
        symbol,
        asset_class,
        timeframe,
        ts_start,
        ts_end,
        observed_value::double precision as observed_value,
        0::double precision as expected_value,
        failure_reason::text as failure_reason,
        calendar
    from findings
)

select * from final
{% endtest %}
