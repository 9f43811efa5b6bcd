{{ config(materialized="table", post_hook="analyze {{ this }}") }}

-- grain: one row per calendar, intraday timeframe, session_date on the clock
-- grid; instants UTC. A stub slot from the open to the next multiple of the
-- timeframe after local midnight (grid_anchor_at), then those multiples (XNYS
-- 1h: 09:30, 10:00, 11:00, ...). For series labelled on the clock
-- (series_labels.intraday_grid = 'clock'); same columns as
-- int_trading_sessions_enumerated.
{{ mdq_enumerate_sessions(['clock']) }}
