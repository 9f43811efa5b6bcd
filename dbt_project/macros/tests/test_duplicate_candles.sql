{% test duplicate_candles(
    model,
    symbol_column='symbol',
    asset_class_column='asset_class',
    timeframe_column='timeframe',
    ts_column='ts',
    calendar_column=none,
    sessionized_model=none,
    value_columns=['open', 'high', 'low', 'close', 'volume'],
    severity_var='mdq_duplicate_severity'
) %}
{#-
    Duplicate candles, one row per duplicated key or slot:

    - 'exact_duplicate' / 'conflicting_duplicate': several rows share (symbol,
        timeframe, ts) (possible in an adopted table without the unique key),
        with identical / differing `value_columns`;
    - 'duplicate_session' (1d) / 'duplicate_slot' (intraday): several distinct
        ts of one (symbol, timeframe) fall in the same calendar session or slot,
        e.g. a daily candle stored at the session label and again at a
        live-quote time (BH-01). ts_start/ts_end: first and last ts; the later
        row is the one to keep.

    observed_value: rows of the key, session or slot; expected_value: 1.
    Cost: one window pass over (symbol, timeframe, ts); the grouping reads
    only the rows that have a neighbour with the same ts or slot, and the
    values of duplicated keys are read back from `model` for those keys only.

    sessionized_model: the model int_candles_sessionized (YAML argument), whose
        stored pass this check reads instead of sessionizing `model` again
        (macro mdq_sessionized_candles); none: its own pass over `model` (any
        other candle model or column names).
-#}
{%- if value_columns is string or value_columns | length == 0 -%}
    {{ exceptions.raise_compiler_error(
        "duplicate_candles: value_columns must be a non-empty list of column names, got "
        ~ value_columns) }}
{%- endif -%}
with

{{ mdq_sessionized_candles(
    model,
    symbol_column=symbol_column,
    asset_class_column=asset_class_column,
    timeframe_column=timeframe_column,
    ts_column=ts_column,
    calendar_column=calendar_column,
    sessionized_model=sessionized_model
) }},

ordered as (
    -- the scan: one window pass over (symbol, timeframe, ts), the unique key's
    -- order. The rows of one key, and the in-session rows of one slot, are
    -- consecutive in it (slot ordinals grow with ts and an out-of-session
    -- candle cannot fall inside a slot), so a row belongs to a duplicate group
    -- exactly when a neighbour shares its ts or its slot.
    select
        symbol,
        asset_class,
        timeframe,
        ts,
        is_daily,
        session_date,
        calendar,
        is_in_session,
        slot_ordinal,
        lag(ts) over by_series as previous_ts,
        lead(ts) over by_series as next_ts,
        lag(case when is_in_session then slot_ordinal end) over by_series
            as previous_slot_ordinal,
        lead(case when is_in_session then slot_ordinal end) over by_series
            as next_slot_ordinal
    from candles_sessionized
    window by_series as (partition by symbol, timeframe order by ts)
),

grouped_rows as materialized (
    -- the few rows in a key or slot group; everything below reads only these
    select
        *,
        ts in (previous_ts, next_ts) as is_key_member,
        is_in_session
        and slot_ordinal in (previous_slot_ordinal, next_slot_ordinal)
            as is_slot_member
    from ordered
    where ts in (previous_ts, next_ts)
        or (
            is_in_session
            and slot_ordinal in (previous_slot_ordinal, next_slot_ordinal)
        )
),

key_groups as (
    select
        symbol,
        timeframe,
        ts,
        min(asset_class) as asset_class,
        count(*) as row_count
    from grouped_rows
    where is_key_member
    group by symbol, timeframe, ts
    having count(*) > 1
),

key_duplicates as (
    -- the value columns of the few duplicated keys, from `model` itself (the
    -- sessionized pass carries no values): identical when every value column
    -- has one value
    select
        key_groups.symbol,
        key_groups.timeframe,
        key_groups.ts,
        key_groups.asset_class,
        key_groups.row_count,
        (
            {%- for column in value_columns %}
            min(mdq_values.{{ column }}) is not distinct from max(mdq_values.{{ column }})
            and count(mdq_values.{{ column }}) in (0, count(*)){{ ' and' if not loop.last }}
            {%- endfor %}
        ) as is_identical
    from key_groups
    inner join {{ model }} as mdq_values
        on mdq_values.{{ symbol_column }}::text = key_groups.symbol
        and mdq_values.{{ timeframe_column }}::text = key_groups.timeframe
        and mdq_values.{{ ts_column }}::timestamptz = key_groups.ts
    group by
        key_groups.symbol,
        key_groups.timeframe,
        key_groups.ts,
        key_groups.asset_class,
        key_groups.row_count
),

slot_duplicates as (
    select
        symbol,
        timeframe,
        slot_ordinal,
        min(asset_class) as asset_class,
        bool_or(is_daily) as is_daily,
        min(session_date) as session_date,
        min(calendar) as calendar,
        min(ts) as first_ts,
        max(ts) as last_ts,
        count(*) as row_count
    from grouped_rows
    where is_slot_member
    group by symbol, timeframe, slot_ordinal
    having min(ts) <> max(ts)
),

key_findings as (
    select
        case
            when is_identical then 'exact_duplicate' else 'conflicting_duplicate'
        end as anomaly_type,
        symbol,
        asset_class,
        timeframe,
        ts as ts_start,
        ts as ts_end,
        row_count as observed_value,
        (
            row_count || ' rows for ' || symbol || ' ' || timeframe || ' '
            || to_char(ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            || case
                when is_identical then ', all identical'
                else ' with different values'
            end
        ) as failure_reason
    from key_duplicates
),

slot_findings as (
    select
        case
            when is_daily then 'duplicate_session' else 'duplicate_slot'
        end as anomaly_type,
        symbol,
        asset_class,
        timeframe,
        first_ts as ts_start,
        last_ts as ts_end,
        row_count as observed_value,
        (
            row_count || ' candles with different ts in '
            || case
                when is_daily then 'session ' || session_date || ' of ' || calendar
                else 'one ' || timeframe || ' slot of ' || calendar
            end
            || ' (from '
            || to_char(first_ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            || ' to '
            || to_char(last_ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            || '); keep the latest'
        ) as failure_reason
    from slot_duplicates
),

findings as (
    select * from key_findings
    union all
    select * from slot_findings
),

final as (
    select
        'duplicate_candles'::text as check_name,
        anomaly_type::text as anomaly_type,
        {{ mdq_setting(severity_var, 'asset_class', 'timeframe') }}::text as severity,
        symbol,
        asset_class,
        timeframe,
        ts_start,
        ts_end,
        observed_value::double precision as observed_value,
        1::double precision as expected_value,
        failure_reason::text as failure_reason
    from findings
)

select * from final
{% endtest %}
