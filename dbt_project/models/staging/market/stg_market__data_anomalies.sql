-- grain: one row per anomaly (fingerprint), open or resolved
with

source as (
    select * from {{ source('market', 'data_anomalies') }}
),

final as (
    select
        -- keys
        anomaly_id::bigint as anomaly_id,
        fingerprint::text as fingerprint,
        -- what found it
        check_name::text as check_name,
        dbt_unique_id::text as dbt_unique_id,
        anomaly_type::text as anomaly_type,
        severity::text as severity,
        -- where
        symbol::text as symbol,
        asset_class::text as asset_class,
        timeframe::text as timeframe,
        ts_start::timestamptz as ts_start,
        ts_end::timestamptz as ts_end,
        -- measurement
        observed_value::double precision as observed_value,
        expected_value::double precision as expected_value,
        details::jsonb as details,
        -- life cycle
        status::text as status,
        first_seen_at::timestamptz as first_seen_at,
        last_seen_at::timestamptz as last_seen_at,
        resolved_at::timestamptz as resolved_at,
        times_seen::integer as times_seen
    from source
)

select * from final
