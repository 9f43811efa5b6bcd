-- 150: what changed in the tables dbt's models read, so that a repeat `mdq check` with no new
-- data can leave the models as they are and run only the checks (issue 9, "fast repeat runs";
-- mdq.dbt_runner.build, mdq.db.model_builds).
--
-- model_input_changes: one row per source table and writing transaction that inserted,
--   updated, deleted or truncated rows of a model input (relid: the table's oid; xid: the
--   writing transaction's id, xid8 as bigint). Filled by four statement-level triggers per
--   table (trg_mdq_model_inputs_insert, _update, _delete, _truncate); a statement that changed
--   no row adds nothing, nor does a second statement of the same transaction (on conflict do
--   nothing), so concurrent writers never wait on each other here.
-- dbt_model_builds: per dbt schema, the last successful build of every model by mdq:
--   fingerprint (project files, profile, vars, the models' per-run environment, dbt's
--   version), changes_xmin (pg_snapshot_xmin taken before dbt read anything: a change from
--   that transaction id on is not in the build), the source tables upstream of a table or
--   incremental model (sources, quoted qualified names) and every model relation (relations).
--   Deleted by the project's on-run-start hook (macro mdq_forget_model_build) whenever a dbt
--   command that builds relations starts in that schema, mdq's own or an analyst's.
-- The watched tables are every dbt source but data_anomalies and check_scopes, which mdq writes
-- on every run and which only views read. Idempotent.

create table if not exists model_input_changes (
    relid       oid not null,
    xid         bigint not null default pg_current_xact_id()::text::bigint,
    changed_at  timestamptz not null default clock_timestamp(),
    primary key (relid, xid)
);
create index if not exists idx_model_input_changes_xid on model_input_changes (xid);

create or replace function mdq_note_model_input_change() returns trigger
language plpgsql as $$
begin
    -- a statement that changed no row (an upsert of known rows, an update matching nothing)
    -- is no change
    -- (one transition table per branch: plpgsql plans each query on its own)
    if tg_op = 'DELETE' then
        if not exists (select from old_rows) then
            return null;
        end if;
    elsif tg_op <> 'TRUNCATE' then
        if not exists (select from new_rows) then
            return null;
        end if;
    end if;
    insert into model_input_changes (relid) values (tg_relid)
    on conflict (relid, xid) do nothing;
    return null;
end
$$;

do $$
declare
    watched text;
begin
    foreach watched in array array[
        'market_data', 'instruments', 'corporate_actions', 'series_labels',
        'trading_calendars', 'trading_sessions', 'backfill_confirmed_empty',
        'backfill_state_persistent', 'quarantined_candles', 'candle_revisions'
    ] loop
        execute format('drop trigger if exists trg_mdq_model_inputs_insert on %I', watched);
        execute format(
            'create trigger trg_mdq_model_inputs_insert after insert on %I'
            ' referencing new table as new_rows'
            ' for each statement execute function mdq_note_model_input_change()',
            watched
        );
        execute format('drop trigger if exists trg_mdq_model_inputs_update on %I', watched);
        execute format(
            'create trigger trg_mdq_model_inputs_update after update on %I'
            ' referencing new table as new_rows'
            ' for each statement execute function mdq_note_model_input_change()',
            watched
        );
        execute format('drop trigger if exists trg_mdq_model_inputs_delete on %I', watched);
        execute format(
            'create trigger trg_mdq_model_inputs_delete after delete on %I'
            ' referencing old table as old_rows'
            ' for each statement execute function mdq_note_model_input_change()',
            watched
        );
        execute format('drop trigger if exists trg_mdq_model_inputs_truncate on %I', watched);
        execute format(
            'create trigger trg_mdq_model_inputs_truncate after truncate on %I'
            ' for each statement execute function mdq_note_model_input_change()',
            watched
        );
    end loop;
end
$$;

create table if not exists dbt_model_builds (
    dbt_schema     text primary key,
    fingerprint    text not null,
    changes_xmin   bigint not null,
    sources        text[] not null,
    relations      text[] not null,
    built_at       timestamptz not null default now()
);
