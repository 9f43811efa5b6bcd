{% test quarantined_rows(
    model,
    runs_model,
    severity_var='mdq_quarantine_severity',
    error_share_var='mdq_quarantine_error_below_stored_share',
    conflict_severity_var='mdq_conflicting_duplicate_severity'
) %}
{#-
    quarantined_rows: input rows a backfill could not store, as findings.

    One row per series, backfill run and reason code, for the latest finished
    run (completed or failed) of each (symbol, timeframe): a later clean run
    resolves the finding. anomaly_type is 'quarantined_<reason_code>'
    (quarantined_naive_timestamp, quarantined_off_grid, ...), or
    'conflicting_duplicate' for two different rows of one key in one batch
    (both kept: the later in market_data, the earlier in quarantine).

    Severity: error when the run stored less than the share
    `error_share_var` (default 0.9) of what it fetched (a run that stored
    nothing is always error); otherwise the var `severity_var` (warn), and
    `conflict_severity_var` for conflicting duplicates. Vars keyed
    '<asset_class>:<timeframe>' (macro mdq_setting).

    ts_start/ts_end: the run's start and end (UTC). observed_value: rows
    quarantined for this reason; expected_value: 0. Context: execution_id,
    reason_code, records_fetched, records_stored, stored_share, source,
    sample_rows (up to 5 of {source_row, reason}, by row number).

    Args:
        model: the quarantine model (stg_market__quarantined_candles).
        runs_model: the backfill runs model (stg_market__backfill_runs).
-#}
{%- if runs_model is none -%}
    {{ exceptions.raise_compiler_error(
        "quarantined_rows: runs_model is required (e.g. ref('stg_market__backfill_runs'))") }}
{%- endif -%}
with

quarantined as (
    select * from {{ model }}
),

runs as (
    select * from {{ runs_model }}
),

finished_runs as (
    select
        runs.*,
        row_number() over (
            partition by runs.symbol, runs.timeframe
            order by runs.created_at desc, runs.execution_id
        ) as run_rank
    from runs
    where runs.status in ('completed', 'failed')
),

latest_runs as (
    select *
    from finished_runs
    where run_rank = 1
),

numbered as (
    select
        quarantined.*,
        row_number() over (
            partition by quarantined.execution_id, quarantined.reason_code
            order by quarantined.source_row nulls last, quarantined.quarantine_id
        ) as sample_rank
    from quarantined
),

by_reason as (
    select
        numbered.execution_id,
        numbered.reason_code,
        count(*) as rows_quarantined,
        min(numbered.source) as source,
        jsonb_agg(
            jsonb_build_object(
                'source_row', numbered.source_row, 'reason', numbered.reason
            )
            order by numbered.sample_rank
        ) filter (where numbered.sample_rank <= 5) as sample_rows,
        min(numbered.reason) filter (
            where numbered.sample_rank = 1
        ) as first_reason,
        min(numbered.source_row) filter (
            where numbered.sample_rank = 1
        ) as first_row
    from numbered
    group by numbered.execution_id, numbered.reason_code
),

joined as (
    select
        latest_runs.symbol,
        coalesce(latest_runs.asset_class, '*') as asset_class,
        latest_runs.timeframe,
        latest_runs.execution_id,
        latest_runs.status,
        coalesce(latest_runs.started_at, latest_runs.created_at) as run_started_at,
        coalesce(
            latest_runs.completed_at, latest_runs.created_at
        ) as run_completed_at,
        latest_runs.records_fetched,
        latest_runs.records_stored,
        case
            when latest_runs.records_fetched > 0
                then latest_runs.records_stored::double precision
                / latest_runs.records_fetched
        end as stored_share,
        by_reason.reason_code,
        by_reason.rows_quarantined,
        by_reason.source,
        by_reason.sample_rows,
        by_reason.first_reason,
        by_reason.first_row
    from latest_runs
    inner join by_reason
        on latest_runs.execution_id = by_reason.execution_id
),

judged as (
    select
        joined.*,
        case
            when
                joined.records_stored = 0
                or joined.stored_share < {{ mdq_setting(
                    error_share_var, 'joined.asset_class', 'joined.timeframe',
                    cast='double precision') }}
                then 'error'
            when joined.reason_code = 'conflicting_duplicate'
                then {{ mdq_setting(
                    conflict_severity_var, 'joined.asset_class', 'joined.timeframe') }}
            else {{ mdq_setting(
                severity_var, 'joined.asset_class', 'joined.timeframe') }}
        end as row_severity
    from joined
),

final as (
    select
        'quarantined_rows'::text as check_name,
        (
            case
                when reason_code = 'conflicting_duplicate'
                    then 'conflicting_duplicate'
                else 'quarantined_' || reason_code
            end
        )::text as anomaly_type,
        row_severity::text as severity,
        symbol,
        nullif(asset_class, '*') as asset_class,
        timeframe,
        run_started_at as ts_start,
        run_completed_at as ts_end,
        rows_quarantined::double precision as observed_value,
        0::double precision as expected_value,
        (
            'backfill ' || execution_id::text || ' of ' || symbol || '/'
            || timeframe || ' (' || status || ') quarantined '
            || rows_quarantined || ' row(s) for ' || reason_code
            || ' and stored ' || records_stored || ' of ' || records_fetched
            || ' fetched; e.g. row ' || coalesce(first_row::text, '?') || ': '
            || left(first_reason, 300)
        )::text as failure_reason,
        execution_id,
        reason_code,
        records_fetched,
        records_stored,
        stored_share,
        source,
        sample_rows
    from judged
)

select * from final
{% endtest %}
