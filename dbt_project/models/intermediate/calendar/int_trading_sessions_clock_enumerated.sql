{{
    config(
        materialized="incremental",
        incremental_strategy="delete+insert",
        unique_key=["calendar", "timeframe", "grid", "session_date"],
        indexes=[{"columns": ["calendar", "timeframe", "grid", "session_date"], "unique": true}],
        pre_hook="{{ mdq_trim_enumerated_sessions(['clock']) }}",
        post_hook="{{ mdq_analyze_if_unanalyzed() }}",
    )
}}

-- grain: one row per calendar, intraday timeframe, session_date on the clock
-- grid; instants UTC. A stub slot from the open to the next multiple of the
-- timeframe after local midnight (grid_anchor_at), then those multiples (XNYS
-- 1h: 09:30, 10:00, 11:00, ...). For series labelled on the clock
-- (series_labels.intraday_grid = 'clock'); same columns as
-- int_trading_sessions_enumerated.
{{ mdq_enumerate_sessions(['clock']) }}
