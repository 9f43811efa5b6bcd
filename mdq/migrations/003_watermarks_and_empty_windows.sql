-- 003: what the backfill knows about coverage.
-- backfill_watermarks: per (symbol, timeframe), every candle before watermark_at has been
--   loaded (exclusive bound); advanced in the same transaction as the rows it covers.
-- backfill_confirmed_empty: windows [window_start, window_end) that the source answered
--   successfully with no candles (a sparse feed: "no trades", BH-07). The gap check classifies
--   holes inside them as source_no_data, and re-runs skip them.

create table if not exists backfill_watermarks (
    symbol         text not null,
    timeframe      text not null,
    watermark_at   timestamptz not null,
    execution_id   uuid,
    updated_at     timestamptz not null default now(),
    primary key (symbol, timeframe)
);

create table if not exists backfill_confirmed_empty (
    symbol         text not null,
    timeframe      text not null,
    window_start   timestamptz not null,
    window_end     timestamptz not null,
    provider       text,
    execution_id   uuid,
    confirmed_at   timestamptz not null default now(),
    primary key (symbol, timeframe, window_start),
    check (window_end > window_start)
);
