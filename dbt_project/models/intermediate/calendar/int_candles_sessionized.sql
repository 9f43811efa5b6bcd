{{
    config(
        materialized="incremental",
        incremental_strategy="append",
        indexes=[{"columns": ["symbol", "timeframe", "ts"]}],
        meta={"mdq_rebuild_unless_scoped": true},
        pre_hook="{{ mdq_trim_sessionized() }}",
        post_hook="{{ mdq_sessionized_indexes() }}",
    )
}}

-- grain: one row per row of market_data (symbol, timeframe, ts when market_data
-- has its unique key; an adopted table's duplicates are kept), whatever as_of
-- says (the checks cut at as_of); instants UTC, session_date exchange-local.
--
-- The shared sessionized pass of the calendar checks (issue 15). Built whole
-- when the run has no scope (`mdq check --full`, a run with as_of, a plain
-- `dbt build`; macro should_full_refresh), ordered by (symbol, timeframe, ts)
-- so that the checks' window scans can follow the index instead of sorting.
-- A run with a scope (incremental `mdq check`) rewrites only the changed
-- series from their read_from, and the stored candles that have calendar
-- coverage now but had none (macros mdq_sessionized_todo, mdq_trim_sessionized).
-- depends_on: {{ source('market', 'check_scopes') }}
{%- set todo = mdq_sessionized_todo() if is_incremental() else none %}
{%- if todo is none %}
    {%- set candles = ref('stg_market__candles') %}
{%- else %}
    {%- set candles -%}
    (
        select mdq_candles.*
        from {{ ref('stg_market__candles') }} as mdq_candles
        where true {{ mdq_sessionized_todo_rows('mdq_candles', todo) }}
    )
    {%- endset %}
{%- endif %}

with

{{ mdq_sessionized_candles(candles, apply_lookback=false, apply_scope=false, apply_as_of=false) }},

final as (
    select
        symbol,
        asset_class,
        timeframe,
        ts,
        calendar,
        venue,
        grid,
        session_date,
        slot_ordinal,
        slot_offset_seconds,
        is_covered,
        is_in_session,
        is_aligned
    from candles_sessionized
)

select * from final
{%- if todo is none %}
order by symbol, timeframe, ts
{%- endif %}
