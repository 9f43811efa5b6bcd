{% test out_of_session_candles(
    model,
    symbol_column='symbol',
    asset_class_column='asset_class',
    timeframe_column='timeframe',
    ts_column='ts',
    calendar_column=none,
    severity_var='mdq_out_of_session_severity'
) %}
{#-
    Candles outside every session of their calendar: one row per candle.

    anomaly_type 'out_of_session': the calendar covers the date but the market was closed
    (weekend, holiday, outside [open_at, close_at) for intraday; a daily candle whose session
    date has no session), e.g. a flat zero-volume Saturday FX candle (BH-10). Such candles are
    ignored by the gap and staleness checks. 'calendar_not_covered': the candle's calendar is
    unknown, the timeframe is not in var `calendar_timeframes`, or the session date lies outside
    the refreshed range of trading_sessions (run `mdq calendars refresh`).
-#}
with

{{ mdq_sessionized_candles(
    model,
    symbol_column=symbol_column,
    asset_class_column=asset_class_column,
    timeframe_column=timeframe_column,
    ts_column=ts_column,
    calendar_column=calendar_column
) }},

outside as (
    select *
    from candles_sessionized
    where not is_in_session
),

final as (
    select
        'out_of_session_candles'::text as check_name,
        case
            when is_covered then 'out_of_session' else 'calendar_not_covered'
        end::text as anomaly_type,
        {{ mdq_setting(severity_var, 'asset_class', 'timeframe') }}::text as severity,
        symbol,
        asset_class,
        timeframe,
        ts as ts_start,
        ts as ts_end,
        1::double precision as observed_value,
        0::double precision as expected_value,
        (
            case
                when is_covered
                    then 'candle at '
                    || to_char(ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                    || ' is outside every session of calendar ' || calendar
                    || ' (session date ' || session_date || ')'
                else 'calendar ' || coalesce(calendar, '(none)')
                    || ' has no sessions for ' || timeframe || ' candles on '
                    || coalesce(session_date::text, '(unknown date)')
                    || '; run `mdq calendars refresh`'
            end
        )::text as failure_reason,
        calendar,
        session_date
    from outside
)

select * from final
{% endtest %}
