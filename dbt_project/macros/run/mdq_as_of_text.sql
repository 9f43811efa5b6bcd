{% macro mdq_as_of_text() %}
    {#-
        The raw reference time of this run: the one place `as_of` is read.

        Order: the dbt var `as_of` (an analyst's `--vars '{as_of: ...}'`),
        else the environment variable MDQ_AS_OF (how mdq passes it), else
        none (the callers then use now()). The environment is read only
        while executing (`execute`), never while parsing: dbt records the
        env vars a file reads at parse time and re-parses that file when
        one changes, and a per-run `--vars` value forces a full re-parse
        (dbt compares the vars' hash). So mdq's per-run value reaches the
        SQL without costing a parse.

        Returns:
            the text as given (e.g. '2024-06-01T00:00:00Z'), or none. The
            callers validate it (mdq_as_of: ISO 8601 or a compiler error).
    -#}
    {%- set value = var('as_of', none) -%}
    {%- if (value is none or value == '') and execute -%}
        {%- set value = env_var('MDQ_AS_OF', '') -%}
    {%- endif -%}
    {{- return(none if value is none or value == '' else value | string) -}}
{% endmacro %}
