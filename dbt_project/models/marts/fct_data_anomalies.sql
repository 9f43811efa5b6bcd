-- grain: one row per anomaly (fingerprint): every finding of the checks, open or
-- resolved, with the reason from details. A view (the marts' exception): mdq check writes
-- data_anomalies after dbt has run, so a table would always lag one run.
--
-- The checks run on the models below and their failing rows become rows of
-- data_anomalies (mdq check, from the checks' stored failures). Declaring them makes the
-- lineage connect market_data -> staging -> intermediate -> each check -> this model, and
-- makes dbt build this model after every check (a check's test edge).
-- depends_on: {{ ref('stg_market__candles') }}
-- depends_on: {{ ref('stg_market__instruments') }}
-- depends_on: {{ ref('stg_market__trading_calendars') }}
-- depends_on: {{ ref('stg_market__confirmed_empty_windows') }}
-- depends_on: {{ ref('int_trading_sessions_enumerated') }}
-- depends_on: {{ ref('int_trading_sessions_clock_enumerated') }}
-- depends_on: {{ ref('int_candles_sessionized') }}
-- depends_on: {{ ref('stg_market__series_labels') }}
-- depends_on: {{ ref('int_candles_scored') }}
-- depends_on: {{ ref('int_candle_splits_matched') }}
-- depends_on: {{ ref('stg_market__quarantined_candles') }}
-- depends_on: {{ ref('stg_market__backfill_runs') }}
-- the scope an incremental run re-reads (read by the calendar checks)
-- depends_on: {{ source('market', 'check_scopes') }}
{{ config(materialized='view') }}

with

anomalies as (
    select * from {{ ref('stg_market__data_anomalies') }}
),

final as (
    select
        anomaly_id,
        fingerprint,
        check_name,
        dbt_unique_id,
        anomaly_type,
        severity,
        symbol,
        asset_class,
        timeframe,
        ts_start,
        ts_end,
        observed_value,
        expected_value,
        details ->> 'failure_reason' as failure_reason,
        details,
        status,
        status = 'open' as is_open,
        first_seen_at,
        last_seen_at,
        resolved_at,
        times_seen
    from anomalies
)

select * from final
