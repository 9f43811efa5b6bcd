{#
    The incremental upkeep of the model int_candles_sessionized (issue 15: the
    calendar checks share one sessionized pass, materialised incrementally).
#}

{% macro mdq_sessionized_todo() %}
    {#-
        The ranges of int_candles_sessionized an incremental build rewrites: one
        row per series, [symbol, timeframe, read_from text], read now (at
        execution; an empty list while parsing). Two sources:

        - the run's scope (source market.check_scopes under mdq_check_scope_id:
          the series written since the last successful run, from read_from, the
          third candle before the first change; a deleted candle lies after its
          series' read_from, so rewriting from there removes it);
        - series with stored candles that had no calendar coverage
          (is_covered false) and have it now (their calendar is in
          trading_calendars, their session date inside its refreshed range,
          their timeframe in var calendar_timeframes), from their first such
          candle: sessions enumerated after the candles arrived re-sessionize
          them at the next incremental run (a partial index keeps the probe
          cheap; candles that stay uncovered are not rewritten). Other changes of the calendar inputs (a session's hours,
          instruments.calendar or exchange, series_labels, var
          calendar_by_asset_class) reach only the candles re-read later:
          `mdq check --full` (dbt --full-refresh) rebuilds everything, and so
          does any build without a scope.

        Both queries read an index (check_scopes' key, the partial index): no
        scan of the stored candles.

        Returns:
            a list of [symbol, timeframe, read_from] (strings), ordered by
            read_from; [] when nothing is to rewrite.
    -#}
    {%- set scope_id = mdq_check_scope_id() -%}
    {%- if not execute or not scope_id -%}
        {{- return([]) -}}
    {%- endif -%}
    {%- set query -%}
        select symbol, timeframe, min(read_from)::text as read_from
        from (
            select symbol, timeframe, read_from
            from {{ source('market', 'check_scopes') }}
            where scope_id = {{ mdq_literal(scope_id) }}
            union all
            -- stored without coverage, now covered (calendar known, date inside
            -- its refreshed sessions, timeframe enumerated)
            select stored.symbol, stored.timeframe, min(stored.ts)
            from {{ this }} as stored
            inner join {{ ref('stg_market__trading_calendars') }} as calendars
                on stored.calendar = calendars.calendar
            where not stored.is_covered
                and stored.timeframe in (
                    {%- for tf in mdq_calendar_timeframes() %}{{ mdq_literal(tf) }}{{ ', ' if not loop.last }}{% endfor -%}
                )
                and (
                    stored.session_date is null
                    or stored.session_date
                    between calendars.first_session_date and calendars.last_session_date
                )
            group by stored.symbol, stored.timeframe
        ) as mdq_todo
        group by symbol, timeframe
        order by 3
    {%- endset -%}
    {%- set rows = run_query(query) -%}
    {%- set todo = [] -%}
    {%- for row in rows.rows -%}
        {%- do todo.append([row[0] | string, row[1] | string, row[2] | string]) -%}
    {%- endfor -%}
    {{- return(todo) -}}
{% endmacro %}


{% macro mdq_sessionized_todo_rows(alias, todo) %}
    {#-
        SQL text `and ...` keeping the rows of `alias` (columns symbol,
        timeframe, ts) inside the ranges of `todo` (mdq_sessionized_todo): the
        overall lower bound as a literal (the planner estimates the rows and
        prunes older partitions of market_data), then the per-series bounds as a
        VALUES list. `and false` for an empty todo.

        Args:
            alias: the row alias.
            todo: list of [symbol, timeframe, read_from].

        Returns:
            SQL text starting with `and`.
    -#}
    {%- if todo | length == 0 %}
        and false
    {%- else %}
        and {{ alias }}.ts >= {{ mdq_literal(todo[0][2]) }}::timestamptz
        and exists (
            select 1
            from (
                values
                {%- for row in todo %}
                ({{ mdq_literal(row[0]) }}, {{ mdq_literal(row[1]) }},
                 {{ mdq_literal(row[2]) }}::timestamptz){{ ',' if not loop.last }}
                {%- endfor %}
            ) as mdq_todo (symbol, timeframe, read_from)
            where mdq_todo.symbol = {{ alias }}.symbol
                and mdq_todo.timeframe = {{ alias }}.timeframe
                and {{ alias }}.ts >= mdq_todo.read_from
        )
    {%- endif -%}
{% endmacro %}


{% macro mdq_trim_sessionized() %}
    {#-
        Pre-hook of int_candles_sessionized (incremental builds only, inside the
        build's transaction): delete the stored candles of the ranges the build
        rewrites (mdq_sessionized_todo; read again here, before anything of the
        table changed, so the same ranges as the model's query), so that
        candles deleted from market_data leave the table and changed ones are
        stored once.

        Returns:
            a delete statement, or an empty string (first build, full rebuild,
            nothing to rewrite).
    -#}
    {%- if is_incremental() -%}
        {%- set todo = mdq_sessionized_todo() -%}
        {%- if todo | length > 0 -%}
delete from {{ this }} as stored
where true {{ mdq_sessionized_todo_rows('stored', todo) }}
        {%- endif -%}
    {%- endif -%}
{% endmacro %}


{% macro mdq_sessionized_indexes() %}
    {#-
        Post-hook of int_candles_sessionized: the partial index of the candles
        without calendar coverage that mdq_sessionized_todo probes at every
        incremental build (a few rows normally; created once per table, so
        again after a full rebuild), and ANALYZE of a new table
        (mdq_analyze_if_unanalyzed).

        Returns:
            SQL statements.
    -#}
create index if not exists {{ adapter.quote(this.identifier ~ '_not_covered') }}
    on {{ this }} (symbol, timeframe, ts)
    where not is_covered;
{{ mdq_analyze_if_unanalyzed() }}
{% endmacro %}


{% macro should_full_refresh() %}
    {#-
        Overrides dbt's macro of the same name (dbt/include/global_project/
        macros/materializations/configs.sql), which the incremental
        materialization and is_incremental() ask whether to rebuild a model
        from scratch.

        Unchanged (config full_refresh, else the --full-refresh flag) except
        for models whose meta has mdq_rebuild_unless_scoped: true
        (int_candles_sessionized): those are rebuilt whole whenever the run has
        no scope (mdq_check_scope_id: `mdq check --full`, a run with as_of,
        the first run, a plain `dbt build` by hand), because only a scope says
        which candles changed; a run with a scope updates them incrementally.

        Returns:
            true or false.
    -#}
    {%- set config_full_refresh = config.get('full_refresh') -%}
    {%- if config_full_refresh is none -%}
        {%- set config_full_refresh = flags.FULL_REFRESH -%}
    {%- endif -%}
    {%- set meta = config.get('meta') or {} -%}
    {%- if not config_full_refresh and meta.get('mdq_rebuild_unless_scoped') -%}
        {%- set config_full_refresh = mdq_check_scope_id() is none -%}
    {%- endif -%}
    {{- return(config_full_refresh) -}}
{% endmacro %}
