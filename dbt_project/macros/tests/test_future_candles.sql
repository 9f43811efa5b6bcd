{#-
    future_candles: candles stamped after the reference time.

    A candle whose open time `ts` lies more than one timeframe after `as_of`
    cannot exist yet: it comes from a clock or time-zone error at the source
    (local time stored as UTC), a mislabelled timeframe, or a test row left
    in production. One candle of tolerance covers a clock a little ahead of
    ours.

    Returns one row per (symbol, asset_class, timeframe) that has future
    candles, in the project's anomaly contract: ts_start/ts_end are the
    first and last future candle, observed_value the number of future
    candles, expected_value 0.

    Reference time: dbt var `as_of` (ISO 8601, e.g. 2024-06-01T00:00:00Z; a
    value without offset is UTC); default now(). Timeframes are `<n>m`, `<n>h`,
    `<n>d` or `<n>w`; any other value gets no tolerance (a candle after
    as_of is reported).
-#}
{% test future_candles(
    model,
    symbol_column='symbol',
    asset_class_column='asset_class',
    timeframe_column='timeframe',
    ts_column='ts',
    anomaly_severity='error'
) %}

{%- if anomaly_severity not in ('warn', 'error') -%}
    {{ exceptions.raise_compiler_error(
        "future_candles: anomaly_severity must be 'warn' or 'error', got '"
        ~ anomaly_severity ~ "'"
    ) }}
{%- endif -%}

{%- set as_of_var = mdq_as_of_text() -%}
{%- if as_of_var -%}
    {%- set as_of_text = as_of_var | string -%}
    {%- set iso_8601 = '^\d{4}-\d{2}-\d{2}'
        ~ '([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?'
        ~ '(Z|[+-]\d{2}(:?\d{2})?)?$' -%}
    {%- if not modules.re.match(iso_8601, as_of_text) -%}
        {{ exceptions.raise_compiler_error(
            "future_candles: var as_of must be an ISO 8601 timestamp, got '"
            ~ as_of_text ~ "'"
        ) }}
    {%- endif -%}
    {%- set has_zone = modules.re.search(
        '[T ]\d{2}:\d{2}.*(Z|[+-]\d{2}(:?\d{2})?)$', as_of_text
    ) -%}
    {#- without a zone the value is UTC, never the session's time zone -#}
    {%- if has_zone -%}
        {%- set as_of_sql = "'" ~ as_of_text ~ "'::timestamptz" -%}
    {%- else -%}
        {%- set as_of_sql = "('" ~ as_of_text
            ~ "'::timestamp at time zone 'UTC')" -%}
    {%- endif -%}
{%- else -%}
    {%- set as_of_sql = "now()" -%}
{%- endif -%}

with

candles as (
    select
        {{ symbol_column }} as symbol,
        {{ asset_class_column }} as asset_class,
        {{ timeframe_column }} as timeframe,
        {{ ts_column }} as ts
    from {{ model }}
    -- only candles after as_of can be future ones (the tolerance is >= 0): on a
    -- ts-partitioned market_data this reads the newest partition only; every
    -- series is still judged (a future candle turns into a normal one with time,
    -- with no change to the data, so this check is not scoped to the changes)
    where {{ ts_column }} > {{ as_of_sql }}
),

reference as (
    select {{ as_of_sql }} as as_of
),

tolerated as (
    select
        candles.symbol,
        candles.asset_class,
        candles.timeframe,
        candles.ts,
        reference.as_of,
        coalesce(
            substring(candles.timeframe from '^(\d+)[mhdw]$')::integer
            * case right(candles.timeframe, 1)
                when 'm' then interval '1 minute'
                when 'h' then interval '1 hour'
                when 'd' then interval '1 day'
                when 'w' then interval '7 days'
            end,
            interval '0'
        ) as tolerance
    from candles
    cross join reference
),

future as (
    select
        symbol,
        asset_class,
        timeframe,
        min(ts) as ts_start,
        max(ts) as ts_end,
        count(*) as future_candles,
        min(as_of) as as_of,
        min(tolerance) as tolerance
    from tolerated
    where ts > as_of + tolerance
    group by symbol, asset_class, timeframe
),

final as (
    select
        'future_candles'::text as check_name,
        'future_candle'::text as anomaly_type,
        '{{ anomaly_severity }}'::text as severity,
        symbol::text as symbol,
        asset_class::text as asset_class,
        timeframe::text as timeframe,
        ts_start::timestamptz as ts_start,
        ts_end::timestamptz as ts_end,
        future_candles::double precision as observed_value,
        0::double precision as expected_value,
        (
            future_candles || ' candle(s) open after as_of + one ' || timeframe
            || ' (' || to_char(as_of at time zone 'UTC', 'YYYY-MM-DD HH24:MI')
            || ' UTC); the latest at '
            || to_char(ts_end at time zone 'UTC', 'YYYY-MM-DD HH24:MI')
            || ' UTC'
        )::text as failure_reason
    from future
)

select * from final

{% endtest %}
