-- grain: one row per backfill execution (execution_id); window [window_start_at,
-- window_end_at) UTC; counts in input rows
with

source as (
    select * from {{ source('market', 'backfill_state_persistent') }}
),

final as (
    select
        -- keys
        execution_id::uuid as execution_id,
        symbol::text as symbol,
        asset_class::text as asset_class,
        timeframe::text as timeframe,
        -- outcome
        status::text as status,
        provider::text as provider,
        error_message::text as error_message,
        -- counts: fetched = inserted + updated + unchanged + quarantined + duplicate
        records_fetched::integer as records_fetched,
        records_inserted::integer as records_inserted,
        records_updated::integer as records_updated,
        records_unchanged::integer as records_unchanged,
        records_quarantined::integer as records_quarantined,
        records_duplicate::integer as records_duplicate,
        records_out_of_window::integer as records_out_of_window,
        (
            records_inserted + records_updated + records_unchanged
        )::integer as records_stored,
        -- timestamps
        window_start::timestamptz as window_start_at,
        window_end::timestamptz as window_end_at,
        created_at::timestamptz as created_at,
        started_at::timestamptz as started_at,
        completed_at::timestamptz as completed_at
    from source
)

select * from final
