{% macro mdq_forget_model_build() %}
    {#-
        The project's on-run-start hook: a dbt command that builds relations
        (build, run, seed, snapshot, clone, retry) deletes the record of the
        last complete build by mdq of this target schema
        (dbt_model_builds, migration 150), mdq's own models step and an
        analyst's `dbt build --vars ...` alike. mdq writes the record again
        after a successful build of every model (mdq.db.model_builds); while
        it is missing, `mdq check` builds the models instead of re-using them.

        Returns:
            a delete statement, or nothing (another command, parsing, or a
            database without migration 150).
    -#}
    {%- if execute and flags.WHICH in ('build', 'run', 'seed', 'snapshot', 'clone', 'retry') -%}
        {%- set builds = adapter.get_relation(
            database=target.database,
            schema=var('source_schema', 'public'),
            identifier='dbt_model_builds') -%}
        {%- if builds is not none -%}
            delete from {{ builds }}
            where dbt_schema = {{ mdq_quote_text(target.schema, 'target.schema') }}
        {%- endif -%}
    {%- endif -%}
{% endmacro %}
