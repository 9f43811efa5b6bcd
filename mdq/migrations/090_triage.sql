-- 090: triage of findings (issue 12).
-- anomaly_acks: one row per acknowledgement of one finding, never deleted (the
--   history). Active while ended_at is null and expires_at is in the future; a
--   recorded run that sees the finding change (observed value, extent, severity)
--   or resolve ends it.
-- anomaly_mutes: mute rules covering findings by symbol, timeframe, check,
--   type and ts_start range (null = any); active until expires_at or unmute.
-- data_anomaly_triage: per anomaly, its effective status now: open,
--   acknowledged, muted or resolved.
-- quality_runs: one row per recorded quality run with its as_of, so that the
--   recorded state only moves forward in time.
-- health_snapshots gains min_severity (problems below it never page) and
--   triage (acknowledged/muted counts and the active mute rules).

create table if not exists anomaly_acks (
    ack_id          bigint generated always as identity primary key,
    anomaly_id      bigint not null
        references data_anomalies (anomaly_id) on delete cascade,
    acked_by        text not null,
    reason          text not null,
    acked_at        timestamptz not null default now(),
    -- null: until the finding changes or is unacknowledged
    expires_at      timestamptz,
    -- the finding as it was acknowledged; any change reopens it
    severity        text not null,
    observed_value  double precision,
    ts_end          timestamptz,
    ended_at        timestamptz,
    ended_by        text,
    end_reason      text check (
        end_reason in ('unacknowledged', 'changed', 'resolved')
    )
);
create unique index if not exists uq_anomaly_acks_active
    on anomaly_acks (anomaly_id) where ended_at is null;

create table if not exists anomaly_mutes (
    mute_id         bigint generated always as identity primary key,
    -- what it covers; null = any
    symbol          text,
    timeframe       text,
    check_name      text,
    anomaly_type    text,
    -- findings whose ts_start lies in [ts_from, ts_to)
    ts_from         timestamptz,
    ts_to           timestamptz,
    muted_by        text not null,
    reason          text not null,
    created_at      timestamptz not null default now(),
    expires_at      timestamptz not null,
    ended_at        timestamptz,
    ended_by        text,
    check (ts_from is null or ts_to is null or ts_from < ts_to)
);

-- Mute rules are matched against open anomalies only (resolved ones accumulate and a
-- mute cannot change their status), so the view's cost grows with the open findings, not
-- with the whole history. A 'stale' finding's observed value (candles missed) and ts_end
-- (as_of) move at every run by nature: its acknowledgement lapses only when its severity
-- changes (a new last candle is a new finding anyway).
create or replace view data_anomaly_triage as
with active_acks as (
    select
        k.ack_id,
        k.anomaly_id,
        k.severity,
        k.observed_value,
        k.ts_end
    from anomaly_acks as k
    where k.ended_at is null
        and (k.expires_at is null or k.expires_at > now())
),

active_mutes as (
    select
        m.mute_id,
        m.symbol,
        m.timeframe,
        m.check_name,
        m.anomaly_type,
        m.ts_from,
        m.ts_to
    from anomaly_mutes as m
    where m.ended_at is null and m.expires_at > now()
),

matched as (
    select
        a.anomaly_id,
        a.status,
        k.ack_id,
        case when a.status = 'open' then (
            select min(m.mute_id)
            from active_mutes as m
            where (m.symbol is null or m.symbol = a.symbol)
                and (m.timeframe is null or m.timeframe = a.timeframe)
                and (m.check_name is null or m.check_name = a.check_name)
                and (m.anomaly_type is null or m.anomaly_type = a.anomaly_type)
                and (m.ts_from is null or a.ts_start >= m.ts_from)
                and (m.ts_to is null or a.ts_start < m.ts_to)
        ) end as mute_id
    from data_anomalies as a
    left join active_acks as k
        on k.anomaly_id = a.anomaly_id
        and k.severity = a.severity
        and (
            a.anomaly_type = 'stale'
            or (
                k.observed_value is not distinct from a.observed_value
                and k.ts_end is not distinct from a.ts_end
            )
        )
),

final as (
    select
        matched.anomaly_id,
        case
            when matched.status <> 'open' then matched.status
            when matched.ack_id is not null then 'acknowledged'
            when matched.mute_id is not null then 'muted'
            else 'open'
        end as triage_status,
        matched.ack_id,
        matched.mute_id
    from matched
)

select * from final;

create table if not exists quality_runs (
    run_id       bigint generated always as identity primary key,
    -- the run's time and the instant it judged the data at (as_of, or now)
    seen_at      timestamptz not null,
    as_of        timestamptz not null,
    full_run     boolean not null
);
create index if not exists idx_quality_runs_as_of on quality_runs (as_of);

alter table health_snapshots
    add column if not exists min_severity text not null default 'error';
alter table health_snapshots
    add column if not exists triage jsonb not null default '{}'::jsonb;
