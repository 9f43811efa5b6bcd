-- 062: vendors' label conventions (issue 10 point 1).
-- market_data.source_ts: the vendor's own label when it differs from the canonical ts (a daily
--   bar stamped 00:00Z or at the close, an intraday bar labelled by its close); NULL when equal.
-- series_labels: per (symbol, timeframe) the convention the series was loaded in, detected from
--   the data or set by the mapping: daily_label (session_midnight, utc_midnight, close),
--   intraday_grid (session: anchored at the regular open; clock: multiples of the timeframe
--   from local midnight with a stub bar from the open), intraday_label (open, close). The
--   calendar checks judge each series on its own grid.
alter table market_data add column if not exists source_ts timestamptz;

create table if not exists series_labels (
    symbol          text not null,
    timeframe       text not null,
    daily_label     text,
    intraday_grid   text not null default 'session'
        check (intraday_grid in ('session', 'clock')),
    intraday_label  text not null default 'open' check (intraday_label in ('open', 'close')),
    decided_by      text not null check (decided_by in ('mapping', 'detected', 'default')),
    updated_at      timestamptz not null default now(),
    primary key (symbol, timeframe)
);
