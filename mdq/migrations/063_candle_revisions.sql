-- 063: revisions are history (issue 10 point 4). When a later backfill changes a final candle
-- (a vendor's correction), the values it replaced are kept here with the run that replaced
-- them; `mdq revisions restore` puts them back (and records the values it replaced in turn).
create table if not exists candle_revisions (
    revision_id     bigint generated always as identity primary key,
    symbol          text not null,
    asset_class     text,
    timeframe       text not null,
    ts              timestamptz not null,
    -- the candle as it was before the revision
    open            double precision not null,
    high            double precision not null,
    low             double precision not null,
    close           double precision not null,
    volume          double precision not null,
    is_final        boolean not null,
    source          text,
    source_ts       timestamptz,
    -- the values that replaced them
    new_open        double precision,
    new_high        double precision,
    new_low         double precision,
    new_close       double precision,
    new_volume      double precision,
    -- the backfill execution that replaced them (NULL: a restore)
    execution_id    uuid,
    revised_at      timestamptz not null default now(),
    restored_at     timestamptz
);
create index if not exists idx_candle_revisions_key on candle_revisions (symbol, timeframe, ts);
create index if not exists idx_candle_revisions_execution on candle_revisions (execution_id);
