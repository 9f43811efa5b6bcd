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
        symbols (mdq_run_symbols): their rows are then kept only for those
        symbols, so the stored failures and dbt's verdict (error_if) concern
        the chosen series. The checks still read every series, so context
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
    {%- set meta = config.get('meta') or {} -%}
    {%- if symbols and model.resource_type == 'test' and meta.get('mdq_check') -%}
select *
from (
{{ limited }}
) as mdq_check_rows
where symbol in (
    {%- for symbol in symbols -%}
        {{ mdq_literal(symbol) }}{% if not loop.last %}, {% endif %}
    {%- endfor -%}
)
    {%- else -%}
{{ limited }}
    {%- endif -%}
{% endmacro %}
