-- grain: one row per quarantined input row (quarantine_id); instants UTC
with

source as (
    select * from {{ source('market', 'quarantined_candles') }}
),

final as (
    select
        -- keys
        quarantine_id::bigint as quarantine_id,
        execution_id::uuid as execution_id,
        symbol::text as symbol,
        timeframe::text as timeframe,
        -- where the row came from
        provider::text as provider,
        source::text as source,
        source_row::integer as source_row,
        -- why
        coalesce(reason_code, 'invalid_row')::text as reason_code,
        reason::text as reason,
        raw_row::jsonb as raw_row,
        -- timestamps
        ts::timestamptz as ts,
        quarantined_at::timestamptz as quarantined_at
    from source
)

select * from final
