{#-
    The incremental price models (int_candle_features_computed,
    int_candle_scales_estimated, fct_candles) follow the run's scope, the
    series an incremental `mdq check` re-reads (market.check_scopes under
    MDQ_CHECK_SCOPE: one row per series changed since the last successful run,
    with read_from, the third candle before the first inserted, updated or
    deleted one; written by mdq.db.check_scope from the change log of
    migration 130). They never look for new rows by ingested_at (issue 15: a
    scan of market_data and of each model to find them), and a deleted or
    revised old candle is recomputed from where it was, which ingested_at
    cannot tell. Without a scope (mdq check --full, --as-of, the first run) they
    are rebuilt from scratch (meta mdq_rebuild_unless_scoped: the project's
    should_full_refresh, macros/calendar/mdq_sessionized_model.sql).
-#}

{% macro price_scope_rows(context_relation=none, context_candles=0) %}
    {#-
        The series of this run's scope (market.check_scopes under
        mdq_check_scope_id()), read while executing, so that the models can
        place them in their SQL as literals: the planner then knows the few
        series and the lower bound of ts (a run-time bound is estimated at a
        third of every series whatever it is, and a seq scan or hash join of
        the whole table follows; see mdq_check_scope_rows).

        Args:
            context_relation: relation with a (symbol, timeframe, ts) index to
                count context candles on (none: no context).
            context_candles: candles before read_from to read as well (>= 0).

        Returns:
            a list of [symbol, timeframe, read_from, context_from] (text; the
            timestamps as timestamptz text, context_from <= read_from), earliest
            context_from first; [] for an empty scope; none on a full build
            (not is_incremental(): no scope, or the model's first build) and
            while parsing. Call it unconditionally in the model, so that dbt
            records the sources it reads.
    -#}
    {%- set scope_relation = source('market', 'check_scopes') -%}
    {%- set scope_id = mdq_check_scope_id() -%}
    {%- if not execute or scope_id is none or not is_incremental() -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- if context_relation is not none and context_candles | int > 0 -%}
        {%- set context_sql = price_context_start(
            context_relation, 'mdq_scope', 'mdq_scope.read_from', context_candles | int) -%}
    {%- else -%}
        {%- set context_sql = 'mdq_scope.read_from' -%}
    {%- endif -%}
    {%- set result = run_query(
        "select mdq_scope.symbol, mdq_scope.timeframe, mdq_scope.read_from::text, ("
        ~ context_sql ~ ")::text as context_from from " ~ scope_relation
        ~ " as mdq_scope where mdq_scope.scope_id = " ~ mdq_literal(scope_id)
        ~ " order by 4, 1, 2") -%}
    {%- set rows = [] -%}
    {%- for row in result.rows -%}
        {%- do rows.append([row[0] | string, row[1] | string, row[2] | string, row[3] | string]) -%}
    {%- endfor -%}
    {{- return(rows) -}}
{% endmacro %}


{% macro price_scope_values(rows, alias='price_scope') %}
    {#-
        The rows of price_scope_rows as a relation `alias` (symbol text,
        timeframe text, read_from timestamptz, context_from timestamptz), to
        place after `from` or `using`: a VALUES list of literals, or an empty
        relation of the same columns for an empty scope.
    -#}
    {%- if rows -%}
    (
        values
        {%- for row in rows %}
        ({{ mdq_literal(row[0]) }}, {{ mdq_literal(row[1]) }},
         {{ mdq_literal(row[2]) }}::timestamptz, {{ mdq_literal(row[3]) }}::timestamptz)
         {{- ',' if not loop.last }}
        {%- endfor %}
    ) as {{ alias }} (symbol, timeframe, read_from, context_from)
    {%- else -%}
    (
        select
            null::text as symbol,
            null::text as timeframe,
            null::timestamptz as read_from,
            null::timestamptz as context_from
        where false
    ) as {{ alias }}
    {%- endif -%}
{% endmacro %}


{% macro price_scope_lower_bound(rows) %}
    {#-
        The earliest context_from of the scope rows (price_scope_rows: the
        first row; context_from <= read_from) as a timestamptz literal, for a
        plain `ts >= literal` beside the per-series bound (the planner
        estimates it from the histogram and prunes ts partitions); 'infinity'
        for an empty scope (nothing qualifies).
    -#}
    {%- if rows -%}
        {{- mdq_literal(rows[0][3]) -}}::timestamptz
    {%- else -%}
        'infinity'::timestamptz
    {%- endif -%}
{% endmacro %}


{% macro price_rewrite_from(model_name, scope, row) %}
    {#-
        Where an incremental price model rewrites a series of the scope, as an
        SQL expression of the scope row `scope` (read_from, timeframe) and of
        the model's row `row`, compared with the model's range column
        (meta mdq_scope_column). The model recomputes exactly those rows and
        the write (strategy mdq_scope) deletes exactly those before inserting,
        so a deleted or revised candle leaves nothing stale behind.

          int_candle_features_computed (ts): read_from. A candle's features
            depend on the 4 candles before it (lag) and the 2 after it (lead);
            read_from is the third candle before the first change
            (mdq.db.check_scope.CONTEXT_CANDLES = 3 >= 2), so every candle whose
            features changed is at or after it.
          int_candle_scales_estimated (block_start): the block of read_from in
            the row's time bucket (a year for 'open', else
            price_scale_block_start): every block that gained, lost or changed
            a candle, and every later one (its fallback is the previous block).
          fct_candles (ts): the scale block of read_from
            (price_scale_block_start): a candle's verdict depends on its
            features and its block's scale. Its 'open' candles before that
            (their year block's scale moved) are rewritten by key.

        Raises:
            compiler error: another model.
    -#}
    {%- if model_name == 'int_candle_features_computed' -%}
        {{ scope }}.read_from
    {%- elif model_name == 'int_candle_scales_estimated' -%}
        (case
            when {{ row }}.time_bucket = 'open'
                then date_trunc('year', {{ scope }}.read_from, 'UTC')
            else {{ price_scale_block_start(scope ~ '.read_from', scope ~ '.timeframe') }}
        end)
    {%- elif model_name == 'fct_candles' -%}
        {{ price_scale_block_start(scope ~ '.read_from', scope ~ '.timeframe') }}
    {%- else -%}
        {{ exceptions.raise_compiler_error(
            "price_rewrite_from: no rewrite rule for model " ~ model_name) }}
    {%- endif -%}
{% endmacro %}


{% macro get_incremental_mdq_scope_sql(arg_dict) %}
    {#-
        dbt incremental strategy `mdq_scope` (config incremental_strategy=
        'mdq_scope') of the price models: the write of an incremental run with
        a scope.

        1. delete, per series of the scope, the model's rows from
           price_rewrite_from on (meta mdq_scope_column: the range column), by
           the (symbol, timeframe, ...) index: one index range scan a series;
        2. with a unique_key, delete the rows the new rows replace outside that
           range (fct_candles: the 'open' candles of a changed year block,
           candles final since the last run);
        3. insert the new rows (dbt's temp relation, analysed first).
        Nothing else is read: no join of the whole model to the new rows, as
        delete+insert does.

        Args:
            arg_dict: dbt's (target_relation, temp_relation, unique_key,
                dest_columns).

        Returns:
            the SQL statements.
    -#}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set temp = arg_dict['temp_relation'] -%}
    {%- set unique_key = arg_dict['unique_key'] -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    {%- set meta = config.get('meta') or {} -%}
    {%- set column = meta.get('mdq_scope_column', 'ts') -%}
    {%- set rows = price_scope_rows() -%}
    {%- if rows is none -%}
        {{ exceptions.raise_compiler_error(
            "mdq_scope: " ~ model.name ~ " is written by scope, but the run has none") }}
    {%- endif -%}
analyze {{ temp }};

delete from {{ target }} as mdq_target
using {{ price_scope_values(rows) }}
where
    mdq_target.symbol = price_scope.symbol
    and mdq_target.timeframe = price_scope.timeframe
    and mdq_target.{{ column }}
    >= {{ price_rewrite_from(model.name, 'price_scope', 'mdq_target') }};

{% if unique_key %}
{%- set keys = [unique_key] if unique_key is string else unique_key %}
delete from {{ target }} as mdq_target
using {{ temp }} as mdq_new
where
    {% for key in keys -%}
    mdq_target.{{ key }} = mdq_new.{{ key }}
    and {% endfor -%}
    not exists (
        select 1
        from {{ price_scope_values(rows) }}
        where
            mdq_new.symbol = price_scope.symbol
            and mdq_new.timeframe = price_scope.timeframe
            and mdq_new.{{ column }}
            >= {{ price_rewrite_from(model.name, 'price_scope', 'mdq_new') }}
    );
{% endif %}

insert into {{ target }} ({{ columns }})
select {{ columns }}
from {{ temp }};
{% endmacro %}


{% macro price_open_bucket_index() %}
    {#-
        Post-hook of int_candle_features_computed: a partial index on
        (symbol, timeframe, ts) of its 'open' bucket candles (the first candle
        of a session after a closure: one a session), by which the
        incremental runs read the year blocks of that bucket
        (int_candle_scales_estimated, fct_candles) without reading every
        candle of the year. Created when `this` has none (after a build from
        scratch: the table is new; dbt's `indexes` config has no partial
        indexes), under a name made unique by the time (the replaced table
        keeps its own index's name until it is dropped).

        Returns:
            the SQL, or '' (index present, or while parsing).
    -#}
    {%- if not execute -%}{{ return('') }}{%- endif -%}
    {%- set found = run_query(
        "select 1 from pg_index as mdq_index"
        ~ " inner join pg_class as mdq_class on mdq_class.oid = mdq_index.indexrelid"
        ~ " where mdq_index.indrelid = " ~ mdq_literal(this | string) ~ "::regclass"
        ~ " and mdq_class.relname like '%\\_open\\_bucket\\_%'") -%}
    {%- if found.rows | length > 0 -%}{{ return('') }}{%- endif -%}
    {%- set name = this.identifier[:30] ~ '_open_bucket_'
        ~ modules.datetime.datetime.utcnow().strftime('%Y%m%d%H%M%S%f') -%}
create index {{ adapter.quote(name) }}
    on {{ this }} (symbol, timeframe, ts)
    where time_bucket = 'open'
{%- endmacro %}


{% macro price_work_mem() %}
    {#-
        Pre-hook of the incremental price models: `set local work_mem =
        '64MB'` for their transaction only (PostgreSQL's default 4MB spills
        their per-series window sort and the block medians' sorts to disk
        from a few hundred thousand candles on). 64MB per sort node, a few
        nodes per model, two dbt threads: well under a gigabyte.
    -#}
    set local work_mem = '64MB'
{%- endmacro %}
