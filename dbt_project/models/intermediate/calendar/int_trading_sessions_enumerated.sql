{{
    config(
        materialized="incremental",
        incremental_strategy="delete+insert",
        unique_key=["calendar", "timeframe", "grid", "session_date"],
        indexes=[{"columns": ["calendar", "timeframe", "grid", "session_date"], "unique": true}],
        pre_hook="{{ mdq_trim_enumerated_sessions(['session']) }}",
        post_hook="{{ mdq_analyze_if_unanalyzed() }}",
    )
}}

-- grain: one row per calendar, timeframe, session_date (grid 'session');
-- instants UTC. Gives every expected candle slot an ordinal: bars_before is the
-- number of slots of all earlier sessions of the calendar and timeframe, so the
-- candles missing between two candles are ordinal(later) - ordinal(earlier) - 1
-- (a lag scan, no per-slot expansion). Slots from the open (XNYS 1h 09:30,
-- 10:30, ...). The clock grid is int_trading_sessions_clock_enumerated.
{{ mdq_enumerate_sessions(['session']) }}
