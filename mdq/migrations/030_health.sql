-- 030: health monitoring (flows/health.py).
-- health_snapshots: one row per health run: what was wrong at as_of, with
--   per-series detail.
-- health_alert_streaks: one row per problem going on now (kind + subject); the
--   alert is sent when the row is created, and the row is deleted when the
--   problem is gone, so a problem alerts once per streak, not at every run.

create table if not exists health_snapshots (
    snapshot_id           bigint generated always as identity primary key,
    taken_at              timestamptz not null default now(),
    -- reference time of the run (UTC)
    as_of                 timestamptz not null,
    status                text not null check (status in ('ok', 'problems')),
    series_tracked        integer not null,
    stale_series          integer not null,
    failing_symbols       integer not null,
    open_gaps             integer not null,
    open_outliers         integer not null,
    open_error_anomalies  integer not null,
    -- [{kind, subject, severity, message}], sorted by kind and subject
    problems              jsonb not null default '[]'::jsonb,
    -- [{symbol, timeframe, last_ts, age_seconds, is_stale, open_gaps,
    --   open_outliers}]
    series                jsonb not null default '[]'::jsonb
);
create index if not exists idx_health_snapshots_taken_at
    on health_snapshots (taken_at);

create table if not exists health_alert_streaks (
    -- '<kind>:<subject>', e.g. 'stale:AAPL/1d'
    problem_key   text primary key,
    kind          text not null,
    subject       text not null,
    started_at    timestamptz not null,
    last_seen_at  timestamptz not null,
    alerted_at    timestamptz,
    message       text not null
);
