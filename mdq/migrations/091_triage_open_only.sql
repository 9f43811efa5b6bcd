-- 091: data_anomaly_triage matches mute rules against open anomalies only
-- (resolved ones accumulate and a mute cannot change their status), so its
-- cost grows with the open findings, not with the whole history. And a
-- 'stale' finding's observed value (candles missed) and ts_end (as_of) move
-- at every run by nature: its acknowledgement lapses only when its severity
-- changes (a new last candle is a new finding anyway). Same columns.

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
