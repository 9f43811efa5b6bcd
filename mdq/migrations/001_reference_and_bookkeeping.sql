-- 001: reference tables (instruments, corporate actions, trading sessions) and the
-- bookkeeping tables of the original spec (backfill state, anomalies, duplicate log,
-- failure tracking) plus the quarantine for rejected input rows.
-- All instants are timestamptz in UTC. Idempotent: safe on a database that has some of these.

create table if not exists instruments (
    symbol          text primary key,
    asset_class     text not null,
    -- exchange MIC or venue name, e.g. XNYS, COINBASE; free text
    exchange        text,
    -- trading calendar: an exchange_calendars code (XNYS, XLON, ...), '24/7' or 'FX'
    calendar        text not null,
    quote_currency  text,
    active          boolean not null default true,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);

create table if not exists corporate_actions (
    corporate_action_id  bigint generated always as identity primary key,
    symbol               text not null,
    -- 'split' (reverse splits too: ratio < 1) or 'dividend'
    action_type          text not null check (action_type in ('split', 'dividend')),
    -- first session traded on the new basis (ex-date), exchange-local date
    effective_date       date not null,
    -- split: new shares per old share (2:1 split = 2, 1:10 reverse split = 0.1)
    ratio                numeric check (ratio is null or ratio > 0),
    -- dividend: cash per share in quote currency
    cash_amount          numeric,
    currency             text,
    source               text,
    created_at           timestamptz not null default now(),
    constraint corporate_actions_split_has_ratio
        check (action_type <> 'split' or ratio is not null),
    constraint corporate_actions_natural_key unique (symbol, action_type, effective_date)
);

-- Expected sessions per calendar, written by `mdq calendars refresh` from exchange_calendars
-- (holidays, unscheduled closures, early closes). One row per calendar and session date;
-- a session is the half-open interval [open_at, close_at).
create table if not exists trading_sessions (
    calendar          text not null,
    session_date      date not null,
    open_at           timestamptz not null,
    close_at          timestamptz not null,
    is_early_close    boolean not null default false,
    calendar_version  text,
    refreshed_at      timestamptz not null default now(),
    primary key (calendar, session_date),
    check (close_at > open_at)
);
create index if not exists idx_trading_sessions_open_at on trading_sessions (calendar, open_at);

create table if not exists backfill_state_persistent (
    execution_id         uuid primary key,
    symbol               text not null,
    asset_class          text,
    timeframe            text not null,
    status               text not null default 'pending'
        check (status in ('pending', 'in_progress', 'completed', 'failed', 'skipped')),
    provider             text,
    -- requested window, half-open [window_start, window_end)
    window_start         timestamptz,
    window_end           timestamptz,
    records_fetched      integer not null default 0,
    records_inserted     integer not null default 0,
    records_updated      integer not null default 0,
    records_unchanged    integer not null default 0,
    records_quarantined  integer not null default 0,
    error_message        text,
    flow_run_id          text,
    -- a worker renews its lease; an in_progress row past its lease can be taken over
    lease_expires_at     timestamptz,
    created_at           timestamptz not null default now(),
    started_at           timestamptz,
    completed_at         timestamptz,
    updated_at           timestamptz not null default now()
);
-- At most one active backfill per (symbol, timeframe), enforced by the database.
create unique index if not exists uq_backfill_state_one_active
    on backfill_state_persistent (symbol, timeframe)
    where status in ('pending', 'in_progress');
create index if not exists idx_backfill_state_symbol on backfill_state_persistent (symbol, timeframe);
create index if not exists idx_backfill_state_status on backfill_state_persistent (status);
create index if not exists idx_backfill_state_created_at on backfill_state_persistent (created_at);

create table if not exists data_anomalies (
    anomaly_id       bigint generated always as identity primary key,
    -- stable identity of one finding: a re-run updates it instead of inserting again
    fingerprint      text not null unique,
    -- the check (dbt test name) that found it, and the dbt node that ran it
    check_name       text not null,
    dbt_unique_id    text,
    -- gap, outlier, wick_outlier, split_suspect, stale, duplicate, ... (see README)
    anomaly_type     text not null,
    severity         text not null check (severity in ('warn', 'error')),
    symbol           text,
    asset_class      text,
    timeframe        text,
    ts_start         timestamptz,
    ts_end           timestamptz,
    observed_value   double precision,
    expected_value   double precision,
    details          jsonb not null default '{}'::jsonb,
    status           text not null default 'open' check (status in ('open', 'resolved')),
    first_seen_at    timestamptz not null default now(),
    last_seen_at     timestamptz not null default now(),
    resolved_at      timestamptz,
    times_seen       integer not null default 1
);
create index if not exists idx_data_anomalies_symbol on data_anomalies (symbol, timeframe);
create index if not exists idx_data_anomalies_type on data_anomalies (anomaly_type);
create index if not exists idx_data_anomalies_status on data_anomalies (status, severity);
create index if not exists idx_data_anomalies_last_seen on data_anomalies (last_seen_at);

-- Every row removed by `mdq dedupe --apply`, in full, so that it can be restored.
create table if not exists duplicate_records_log (
    log_id        bigint generated always as identity primary key,
    cleanup_id    uuid not null,
    symbol        text not null,
    timeframe     text not null,
    ts            timestamptz not null,
    -- the removed row as it was (all columns of market_data)
    removed_row   jsonb not null,
    -- the row that was kept for the same key, for reference
    kept_row      jsonb,
    reason        text not null,
    removed_at    timestamptz not null default now(),
    restored_at   timestamptz
);
create index if not exists idx_duplicate_records_log_cleanup on duplicate_records_log (cleanup_id);
create index if not exists idx_duplicate_records_log_symbol on duplicate_records_log (symbol, timeframe, ts);

create table if not exists symbol_failure_tracking (
    symbol                 text not null,
    timeframe              text not null default '*',
    consecutive_failures   integer not null default 0,
    total_failures         integer not null default 0,
    last_error             text,
    last_failure_at        timestamptz,
    last_success_at        timestamptz,
    -- set when the alert of the current streak was sent; cleared by a success
    alert_sent_at          timestamptz,
    updated_at             timestamptz not null default now(),
    primary key (symbol, timeframe)
);
create index if not exists idx_symbol_failure_tracking_failures
    on symbol_failure_tracking (consecutive_failures);

-- Input rows rejected before writing, with the reason and the raw row: nothing is dropped.
create table if not exists quarantined_candles (
    quarantine_id   bigint generated always as identity primary key,
    execution_id    uuid,
    provider        text,
    source          text,
    -- 1-based row number in the source (file line or record index), when known
    source_row      integer,
    symbol          text,
    timeframe       text,
    ts              timestamptz,
    reason          text not null,
    raw_row         jsonb not null,
    quarantined_at  timestamptz not null default now()
);
create index if not exists idx_quarantined_candles_execution on quarantined_candles (execution_id);
create index if not exists idx_quarantined_candles_symbol on quarantined_candles (symbol, timeframe);
