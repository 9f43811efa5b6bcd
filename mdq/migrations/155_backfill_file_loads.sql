-- 155: what a whole-file backfill left behind, so that rerunning the unchanged file is
-- recognised in bulk instead of re-parsing, re-validating and comparing every candle
-- (issue 15, "Write path": an unchanged rerun <= 0.3x the first load, 0 rows written).
--
-- backfill_file_loads: one row per (provider, source_digest) whose whole-file run completed
--   every series with every input row accounted for. source_digest: sha256 of the loader's
--   code, the mapping and the file's bytes (mdq.providers.csv_file.CsvFileProvider.content_digest).
-- backfill_file_series: per series of such a file, what the load left in market_data:
--   first_ts/last_ts of its candles, and a fingerprint of the stored rows in
--   [first_ts, last_ts]: their count and the sum of their xmin (the id of the transaction that
--   wrote each row version). Any insert, update or delete of a candle in that range since
--   changes the fingerprint (a new row version carries the writer's id), and so does a
--   VACUUM FULL/dump and restore (a needless full rerun, never a wrong skip). Also: the
--   instruments row as it was (json), the watermark, the quarantined rows of the execution
--   and the counts of the state row. execution_id: the execution that last loaded or
--   confirmed the series (its quarantined rows are the file's rejected rows of the series).
-- Idempotent.

create table if not exists backfill_file_loads (
    provider       text not null,
    source_digest  text not null,
    source         text not null,
    series         integer not null,
    input_rows     bigint not null,
    loaded_at      timestamptz not null default now(),
    confirmed_at   timestamptz not null default now(),
    primary key (provider, source_digest)
);

create table if not exists backfill_file_series (
    provider              text not null,
    source_digest         text not null,
    symbol                text not null,
    timeframe             text not null,
    execution_id          uuid not null,
    asset_class           text,
    window_start          timestamptz not null,
    window_end            timestamptz not null,
    first_ts              timestamptz not null,
    last_ts               timestamptz not null,
    candles               bigint not null,
    xmin_sum              numeric not null,
    instrument            text,
    watermark_at          timestamptz,
    quarantine_rows       bigint not null,
    records_fetched       integer not null,
    records_stored        integer not null,
    records_quarantined   integer not null,
    records_duplicate     integer not null,
    records_out_of_window integer not null,
    primary key (provider, source_digest, symbol, timeframe),
    foreign key (provider, source_digest)
        references backfill_file_loads (provider, source_digest) on delete cascade
);
