{% test misaligned_candles(
    model,
    symbol_column='symbol',
    asset_class_column='asset_class',
    timeframe_column='timeframe',
    ts_column='ts',
    calendar_column=none,
    sessionized_model=none,
    severity_var='mdq_misaligned_severity'
) %}
{#-
    In-session candles whose ts is off the timeframe's grid: one row per candle,
    anomaly_type 'misaligned_ts'. Intraday: the grid starts at the session open
    (XNYS 1h:
    09:30, 10:30, ...). Daily: ts must be the session label, midnight of the
    session date in the exchange's zone (2024-03-14 -> 2024-03-14T04:00:00Z), or
    the session open; a daily candle stamped 2024-03-14T20:00:02Z is misaligned
    (BH-01).

    observed_value: seconds from the slot start (daily: from the session label);
    expected_value: 0.

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

misaligned as (
    -- with the session label of the candle's session (an in-session candle
    -- has one)
    select
        candles.symbol,
        candles.asset_class,
        candles.timeframe,
        candles.ts,
        candles.calendar,
        candles.session_date,
        candles.is_daily,
        candles.slot_offset_seconds,
        sessions.session_label_at
    from candles_sessionized as candles
    inner join mdq_sessions_enumerated as sessions
        on candles.calendar = sessions.calendar
        and candles.timeframe = sessions.timeframe
        and candles.grid = sessions.grid
        and candles.session_date = sessions.session_date
    where candles.is_in_session and not candles.is_aligned
),

final as (
    select
        'misaligned_candles'::text as check_name,
        'misaligned_ts'::text as anomaly_type,
        {{ mdq_setting(severity_var, 'asset_class', 'timeframe') }}::text as severity,
        symbol,
        asset_class,
        timeframe,
        ts as ts_start,
        ts as ts_end,
        slot_offset_seconds as observed_value,
        0::double precision as expected_value,
        (
            timeframe || ' candle at '
            || to_char(ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            || ' is ' || slot_offset_seconds || ' s off the grid of calendar '
            || calendar || ' (expected '
            || to_char(
                (
                    case
                        when is_daily then session_label_at
                        else ts - make_interval(secs => slot_offset_seconds)
                    end
                ) at time zone 'UTC',
                'YYYY-MM-DD"T"HH24:MI:SS"Z"'
            )
            || ')'
        )::text as failure_reason,
        calendar,
        session_date
    from misaligned
)

select * from final
{% endtest %}
