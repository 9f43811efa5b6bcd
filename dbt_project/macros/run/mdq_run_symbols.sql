{% macro mdq_run_symbols() %}
    {#-
        The symbols this run is restricted to (`mdq check --symbols A,B`): the
        environment variable MDQ_SYMBOLS, comma-separated, read only while
        executing (never while parsing: see mdq_as_of_text).

        Returns:
            a list of symbol strings, stripped and non-empty; [] = every symbol.
    -#}
    {%- set symbols = [] -%}
    {%- if execute -%}
        {%- for part in env_var('MDQ_SYMBOLS', '').split(',') -%}
            {%- if part.strip() -%}
                {%- do symbols.append(part.strip()) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{- return(symbols) -}}
{% endmacro %}


{% macro get_limit_subquery_sql(sql, limit) %}
    {#-
        Overrides dbt's macro of the same name (dbt/include/global_project/
        macros/adapters/show.sql), which the test materialization wraps around
        every test's SQL before storing and counting its rows.

        Unchanged (dbt's get_limit_sql) except for the project's checks (tests
        whose config has meta.mdq_check: true) in a run restricted to some
        symbols (mdq_run_symbols) or to one shard (mdq_run_shard): their rows
        are then kept only for those symbols, so the stored failures and dbt's
        verdict (error_if) concern the chosen series. The checks still read every series, so context
        across symbols (a venue outage seen in another symbol) is the same as
        in a full run.

        Args:
            sql: the test's compiled SQL (one row per finding).
            limit: dbt's `limit` config or none.

        Returns:
            the SQL whose rows dbt stores and counts.
    -#}
    {%- set limited = adapter.dispatch('get_limit_sql', 'dbt')(sql, limit) -%}
    {%- set symbols = mdq_run_symbols() -%}
    {%- set shard = mdq_run_shard() -%}
    {%- set meta = config.get('meta') or {} -%}
    {%- if (symbols or shard) and model.resource_type == 'test' and meta.get('mdq_check') -%}
select *
from (
{{ limited }}
) as mdq_check_rows
where true
    {%- if symbols %}
    and symbol in (
        {%- for symbol in symbols -%}
            {{ mdq_literal(symbol) }}{% if not loop.last %}, {% endif %}
        {%- endfor -%}
    )
    {%- endif %}
    {%- if shard %}
    -- shard {{ shard[0] }}/{{ shard[1] }}; rows without a symbol belong to the first shard
    and case
        when symbol is null then {{ 'true' if shard[0] == 1 else 'false' }}
        else {{ mdq_shard_number('symbol', shard[1]) }} = {{ shard[0] - 1 }}
    end
    {%- endif %}
    {%- else -%}
{{ limited }}
    {%- endif -%}
{% endmacro %}


{% macro mdq_check_scope_id() %}
    {#-
        The key of an incremental run's rows in source market.check_scopes
        (`mdq check` without --full): the environment variable MDQ_CHECK_SCOPE,
        read only while executing (never while parsing: see mdq_as_of_text).

        Returns:
            the key (hex text), or none: the checks read every candle.

        Raises:
            compiler error: a key that is not 1-64 hex digits.
    -#}
    {%- set value = env_var('MDQ_CHECK_SCOPE', '') if execute else '' -%}
    {%- if value and not modules.re.match('^[0-9a-f]{1,64}$', value) -%}
        {{ exceptions.raise_compiler_error(
            "mdq: MDQ_CHECK_SCOPE must be hex digits, got '" ~ value ~ "'") }}
    {%- endif -%}
    {{- return(value or none) -}}
{% endmacro %}


{% macro mdq_run_shard() %}
    {#-
        The shard of this run (`mdq check --shard i/n`): the environment
        variable MDQ_SHARD, read only while executing.

        Returns:
            [i, n] (integers, 1 <= i <= n), or none: every symbol.

        Raises:
            compiler error: a value not shaped 'i/n' with 1 <= i <= n.
    -#}
    {%- set value = env_var('MDQ_SHARD', '') if execute else '' -%}
    {%- if not value -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set match = modules.re.match('^([0-9]+)/([0-9]+)$', value) -%}
    {%- if not match or (match.group(1) | int) < 1
            or (match.group(1) | int) > (match.group(2) | int) -%}
        {{ exceptions.raise_compiler_error(
            "mdq: MDQ_SHARD must be i/n with 1 <= i <= n, got '" ~ value ~ "'") }}
    {%- endif -%}
    {{- return([match.group(1) | int, match.group(2) | int]) -}}
{% endmacro %}


{% macro mdq_shard_number(symbol, shard_count) %}
    {#-
        The 0-based shard of a symbol among `shard_count`: the first 32 bits of
        md5(symbol) modulo the count (mdq.db.check_scope.shard_of computes the
        same in Python; md5 is stable across PostgreSQL versions and Citus
        workers, hashtext is not guaranteed to be).

        Args:
            symbol: SQL text expression.
            shard_count: integer >= 1.

        Returns:
            a bigint SQL expression.
    -#}
    mod(('x' || left(md5({{ symbol }}), 8))::bit(32)::bigint, {{ shard_count | int }})
{%- endmacro %}


{% macro mdq_check_scope_rows(alias, context_relation=none, context_candles=0) %}
    {#-
        SQL text `and ...` restricting the rows of `alias` (columns symbol,
        timeframe, ts) to an incremental run's re-read range: the series listed
        in source market.check_scopes under the run's scope_id (macro
        mdq_check_scope_id), from their read_from on, or from `context_candles`
        candles before read_from (counted by an index scan of
        `context_relation`, macro price_context_start) when those are given.
        Empty text on a full run (no scope): every row.

        The per-series starts are read now (run_query, one index probe per
        series) and written as literals (a VALUES list and the overall lower
        bound), so that the planner estimates the re-read rows from the
        statistics, hash-joins the few series and prunes old partitions (a
        run-time bound is estimated at a few thousand rows whatever it is: see
        mdq_sessionized_candles).

        Args:
            alias: the row alias or relation name holding symbol, timeframe, ts.
            context_relation: relation with a (symbol, timeframe, ts) index to
                count context candles on (none: no context).
            context_candles: candles before read_from to read as well (>= 0).

        Returns:
            SQL text starting with `and`, or ''.
    -#}
    {%- set scope_relation = source('market', 'check_scopes') -%}
    {%- set scope_id = mdq_check_scope_id() -%}
    {%- if scope_id -%}
        {%- if context_relation is not none and context_candles | int > 0 -%}
            {%- set start_sql = price_context_start(
                context_relation, 'mdq_scope', 'mdq_scope.read_from', context_candles | int) -%}
        {%- else -%}
            {%- set start_sql = 'mdq_scope.read_from' -%}
        {%- endif -%}
        {%- set start_rows = run_query(
            "select mdq_scope.symbol, mdq_scope.timeframe, (" ~ start_sql ~ ")::text from "
            ~ scope_relation ~ " as mdq_scope where mdq_scope.scope_id = '" ~ scope_id ~ "'"
            ~ " order by 3") -%}
        {%- if not start_rows or (start_rows.rows | length) == 0 %}
        and false
        {%- else %}
        and {{ alias }}.ts >= {{ mdq_literal(start_rows.rows[0][2] | string) }}::timestamptz
        and exists (
            select 1
            from (
                values
                {%- for row in start_rows.rows %}
                ({{ mdq_literal(row[0] | string) }}, {{ mdq_literal(row[1] | string) }},
                 {{ mdq_literal(row[2] | string) }}::timestamptz){{ ',' if not loop.last }}
                {%- endfor %}
            ) as mdq_scope (symbol, timeframe, read_from)
            where mdq_scope.symbol = {{ alias }}.symbol::text
                and mdq_scope.timeframe = {{ alias }}.timeframe::text
                and {{ alias }}.ts >= mdq_scope.read_from
        )
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{% macro mdq_check_scope_findings(alias, start_column='ts_start') %}
    {#-
        SQL text `and ...` keeping only the findings of `alias` (columns
        symbol, timeframe and `start_column`) that lie inside an incremental
        run's re-read range: series in market.check_scopes under the run's
        scope_id, `start_column` >= read_from. The same rule by which mdq
        resolves these checks' open findings (mdq.db.anomalies.persist_findings,
        mdq.quality.SCOPED_CHECKS), so that a finding judged with part of its
        context missing (one in the context candles before read_from) is
        neither reported nor resolved. Empty text on a full run.

        Args:
            alias: the relation or CTE name of the findings.
            start_column: the column compared with read_from.

        Returns:
            SQL text starting with `and`, or ''.
    -#}
    {%- set scope_relation = source('market', 'check_scopes') -%}
    {%- set scope_id = mdq_check_scope_id() -%}
    {%- if scope_id %}
        and exists (
            select 1
            from {{ scope_relation }} as mdq_scope
            where mdq_scope.scope_id = '{{ scope_id }}'
                and mdq_scope.symbol = {{ alias }}.symbol::text
                and mdq_scope.timeframe = {{ alias }}.timeframe::text
                and {{ alias }}.{{ start_column }} >= mdq_scope.read_from
        )
    {%- endif -%}
{%- endmacro %}


{% macro mdq_shard_rows(symbol) %}
    {#-
        SQL text `and ...` keeping only the rows whose symbol falls in this
        run's shard (`mdq check --shard i/n`, macro mdq_run_shard; the same
        rule as mdq_shard_number and mdq.db.check_scope.shard_of). Empty text
        outside a shard run, and while parsing.

        Used by stg_market__candles: a shard builds its own dbt schema
        (mdq.db.check_scope.shard_schema), so that view, and every model and
        check reading it (the incremental price models, int_candles_sessionized,
        the per-series checks), holds only the shard's symbols. The venue check
        reads every symbol (mdq_venue_context).

        Args:
            symbol: SQL text expression of the row's symbol (never null in
                market_data).

        Returns:
            SQL text starting with `and`, or ''.
    -#}
    {%- set shard = mdq_run_shard() -%}
    {%- if shard %}
    and {{ mdq_shard_number(symbol, shard[1]) }} = {{ shard[0] - 1 }}
    {%- endif -%}
{%- endmacro %}


{% macro mdq_venue_context(model) %}
    {#-
        The relation the gap check reads candles from. The check classes a hole
        'venue_outage' when another symbol of the same venue and timeframe has an
        overlapping hole (test candle_gaps), so it needs every symbol's rows,
        whichever shard it falls in: in a shard run (mdq_run_shard) the
        shard-filtered stg_market__candles (mdq_shard_rows) is replaced by the
        source market.market_data it types (the checks cast every column they
        read); the output is still kept to the shard's symbols
        (get_limit_subquery_sql). Any other model, and any run that is not a
        shard's, reads `model` itself.

        Args:
            model: the relation the test is attached to.

        Returns:
            a relation.
    -#}
    {%- set candles = source('market', 'market_data') -%}
    {%- if mdq_run_shard() and model.identifier == 'stg_market__candles' -%}
        {{- return(candles) -}}
    {%- endif -%}
    {{- return(model) -}}
{%- endmacro %}
