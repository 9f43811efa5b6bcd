-- 130: what changed in market_data since the last check, so that `mdq check` re-reads only
-- that (issue 15, "incremental by default").
--
-- candle_changes: one row per statement that inserted, updated or deleted candles, per series
--   (symbol, timeframe): the first and last ts it touched and the writing transaction's id
--   (xid8, as bigint). Filled by statement-level triggers on market_data (transition tables: one insert of
--   a few rows per statement, whatever the row count). Deletions are recorded too (mdq dedupe),
--   and so is any hand-written update, whether or not it sets updated_at.
-- quality_runs.changes_xmin: the oldest transaction still running when a successful run of
--   the whole project read the change log (pg_snapshot_xmin of its snapshot). The next
--   incremental run reads the changes of every transaction from that id on: those committed
--   after the snapshot and those that were in progress. Null for runs that cannot serve as a
--   starting point (what-if, a selection, broken).
-- quality_runs.scope: 'full' or 'incremental'; quality_runs.shard: 'i/n' or null.
-- check_scopes: the series an incremental run re-reads and from which candle (read_from: the
--   third candle before the first changed one: the gap check's context), keyed by the run's
--   scope_id; rows are deleted when the run ends. dbt reads it (source market.check_scopes).
-- Idempotent.

create table if not exists candle_changes (
    change_id   bigint generated always as identity primary key,
    -- the writing transaction (pg_current_xact_id(), a 64-bit xid8 stored as bigint)
    xid         bigint not null default pg_current_xact_id()::text::bigint,
    changed_at  timestamptz not null default clock_timestamp(),
    symbol      text not null,
    timeframe   text not null,
    first_ts    timestamptz not null,
    last_ts     timestamptz not null,
    row_count   bigint not null,
    operation   text not null check (operation in ('insert', 'update', 'delete'))
);
create index if not exists idx_candle_changes_xid on candle_changes (xid);

create or replace function mdq_note_candle_changes() returns trigger
language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        insert into candle_changes (symbol, timeframe, first_ts, last_ts, row_count, operation)
        select symbol, timeframe, min(ts), max(ts), count(*), 'delete'
        from old_rows
        group by symbol, timeframe;
    elsif tg_op = 'UPDATE' then
        -- both sides: an update may move a candle to another ts
        insert into candle_changes (symbol, timeframe, first_ts, last_ts, row_count, operation)
        select symbol, timeframe, min(ts), max(ts), count(*), 'update'
        from (
            select symbol, timeframe, ts from old_rows
            union all
            select symbol, timeframe, ts from new_rows
        ) as touched
        group by symbol, timeframe;
    else
        insert into candle_changes (symbol, timeframe, first_ts, last_ts, row_count, operation)
        select symbol, timeframe, min(ts), max(ts), count(*), 'insert'
        from new_rows
        group by symbol, timeframe;
    end if;
    return null;
end
$$;

drop trigger if exists trg_market_data_changes_insert on market_data;
create trigger trg_market_data_changes_insert
    after insert on market_data
    referencing new table as new_rows
    for each statement execute function mdq_note_candle_changes();

drop trigger if exists trg_market_data_changes_update on market_data;
create trigger trg_market_data_changes_update
    after update on market_data
    referencing old table as old_rows new table as new_rows
    for each statement execute function mdq_note_candle_changes();

drop trigger if exists trg_market_data_changes_delete on market_data;
create trigger trg_market_data_changes_delete
    after delete on market_data
    referencing old table as old_rows
    for each statement execute function mdq_note_candle_changes();

alter table quality_runs add column if not exists changes_xmin bigint;
alter table quality_runs add column if not exists scope text not null default 'full';
alter table quality_runs add column if not exists shard text;

create table if not exists check_scopes (
    scope_id   text not null,
    symbol     text not null,
    timeframe  text not null,
    read_from  timestamptz not null,
    primary key (scope_id, symbol, timeframe)
);
