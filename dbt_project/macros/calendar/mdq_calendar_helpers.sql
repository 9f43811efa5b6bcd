{#
    Shared helpers of the calendar checks (gaps, staleness, duplicates,
    alignment, sessions). Every macro returns a SQL expression or CTE text for
    PostgreSQL.
#}

{% macro mdq_timeframe_seconds(timeframe) %}
    {#-
        Length of a timeframe label in seconds, as a SQL bigint expression.

        Args:
            timeframe: SQL expression of a label '<n><unit>', unit s, m, h, d or
                w ('1m' -> 60, '4h' -> 14400, '1d' -> 86400).

        Returns:
            bigint expression; null for a label of another shape.
    -#}
    (case
        when {{ timeframe }} ~ '^[0-9]+[smhdw]$'
            then substring({{ timeframe }} from '^[0-9]+')::bigint
            * case right({{ timeframe }}, 1)
                when 's' then 1
                when 'm' then 60
                when 'h' then 3600
                when 'd' then 86400
                when 'w' then 604800
            end
    end)
{% endmacro %}


{% macro mdq_as_of() %}
    {#-
        The reference time of every "now"-dependent check: dbt var `as_of`, else
        the environment variable MDQ_AS_OF (macro mdq_as_of_text; an ISO 8601
        timestamp with offset, e.g. '2024-06-01T00:00:00Z'), or now() when unset.

        Raises:
            compiler error: `as_of` is not an ISO 8601 date or timestamp.
    -#}
    {%- set value = mdq_as_of_text() -%}
    {%- if value is none or value == '' -%}
        now()
    {%- else -%}
        {%- set pattern = '^\\d{4}-\\d{2}-\\d{2}([T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?)?(Z|[+-]\\d{2}(:?\\d{2})?)?$' -%}
        {%- if not modules.re.match(pattern, value | string) -%}
            {{ exceptions.raise_compiler_error(
                "mdq: var 'as_of' must be an ISO 8601 timestamp such as "
                ~ "'2024-06-01T00:00:00Z', got '" ~ value ~ "'") }}
        {%- endif -%}
        '{{ value }}'::timestamptz
    {%- endif -%}
{% endmacro %}


{% macro mdq_literal(value) %}
    {#- A jinja string or number as a SQL literal (strings quoted, quotes doubled). -#}
    {%- if value is number -%}
        {{ value }}
    {%- else -%}
        '{{ (value | string).replace("'", "''") }}'
    {%- endif -%}
{% endmacro %}


{% macro mdq_default_calendar(asset_class) %}
    {#-
        Calendar of a candle whose symbol has no instruments row, from the dbt
        var `calendar_by_asset_class` (mirrors
        flows.calendars.DEFAULT_CALENDAR_BY_ASSET_CLASS).

        Returns:
            a SQL text expression; null for an asset class that is not in the
            mapping.
    -#}
    {%- set mapping = var('calendar_by_asset_class', {}) -%}
    (case {{ asset_class }}
        {%- for key, value in mapping.items() %}
        when {{ mdq_literal(key) }} then {{ mdq_literal(value) }}
        {%- endfor %}
        else null::text
    end)
{%- endmacro %}


{% macro mdq_calendar_timeframes() %}
    {#-
        The timeframes the calendar checks enumerate slots for (dbt var
        `calendar_timeframes`):
        intraday labels shorter than a day, and '1d' (one candle per session).

        Raises:
            compiler error: a label is not '<n>s|m|h' shorter than a day or
                '1d'.
    -#}
    {%- set timeframes = var('calendar_timeframes') -%}
    {%- for tf in timeframes -%}
        {%- if not modules.re.match('^([0-9]+[smh]|1d)$', tf | string) -%}
            {{ exceptions.raise_compiler_error(
                "mdq: var 'calendar_timeframes' has '" ~ tf
                ~ "'; expected labels like 1m, 5m, 1h, 4h or 1d") }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(timeframes) }}
{% endmacro %}


{% macro mdq_sessionized_candles(
    model,
    symbol_column='symbol',
    asset_class_column='asset_class',
    timeframe_column='timeframe',
    ts_column='ts',
    calendar_column=none,
    value_columns=[],
    apply_lookback=true,
    apply_scope=true,
    apply_as_of=true,
    sessionized_model=none
) %}
    {#-
        CTE text (no leading `with`, no trailing comma) ending in
        `candles_sessionized`: one row per row of `model` with ts < as_of (and,
        when var `check_lookback_days` is set, ts >= as_of - that many days),
        mapped to its calendar session and expected slot.

        Session date rule: ((ts at time zone <calendar tz>) + <day roll-over>
        hours)::date, from trading_calendars (FX rolls at 17:00 New York, so
        Sunday evening belongs to Monday). Slot ordinal: bars of all earlier
        sessions of the calendar and timeframe plus floor((ts - open_at) /
        timeframe) inside the session (1d: one slot per session), so the candles
        missing between two candles are the difference of their ordinals minus
        1.

        Grid: the series' intraday grid from series_labels ('session' when
        absent, and for 1d); on the 'clock' grid the slot ordinal counts the
        stub from the open to grid_anchor_at as one slot, then multiples of the
        timeframe from grid_anchor_at.

        Columns of candles_sessionized: symbol, asset_class, timeframe, ts,
        calendar, venue, grid, grid_anchor_at, stub_bars, timeframe_seconds, is_daily, session_date, timezone,
        open_at, close_at, session_label_at, bars_before, bars_in_session,
        first_slot_at, last_slot_at, previous_session_last_slot_at,
        next_session_first_slot_at, is_covered, is_in_session, slot_ordinal,
        slot_offset_seconds, is_aligned, plus `value_columns`.

        Args:
            model: the candle relation.
            symbol_column, asset_class_column, timeframe_column, ts_column: its
                columns.
            calendar_column: a column naming each row's calendar; default: the
                calendar of the symbol in instruments, else var
                `calendar_by_asset_class`.
            value_columns: more columns of `model` to carry along (e.g. open,
                volume).
            apply_lookback: honour var `check_lookback_days` and an incremental
                run's scope (staleness passes false: a feed dead for longer than
                the look-back must still be reported).

        Incremental runs (`mdq check` without --full; macro mdq_check_scope_id):
        with apply_lookback, only the rows of the series listed in source
        market.check_scopes under the run's scope_id are read, from their
        read_from on (the third candle before the first one written since the
        last successful run: the context of a gap between the last old candle
        and the first new one). mdq resolves these checks' findings only inside
        that range (mdq.quality.SCOPED_CHECKS). apply_scope=false leaves the
        scope out (and the dependency on the source: the model
        int_candles_sessionized, whose unit tests mock every input).
        apply_as_of=false keeps the candles at or after as_of too (the model
        int_candles_sessionized stores every candle; the checks cut at as_of).

        Shared pass (sessionized_model, the model int_candles_sessionized,
        issue 15): the candles are not sessionized again but read from that
        table with the same filters (as_of, look-back, scope), so a check's
        rows are those of its own pass. candles_sessionized then has only the
        per-candle columns symbol, asset_class, timeframe, ts, as_of,
        calendar, venue, grid, is_daily, session_date, slot_ordinal,
        slot_offset_seconds, is_covered, is_in_session, is_aligned (the
        session's own columns are a join to mdq_sessions_enumerated on
        calendar, timeframe, grid and session_date; value_columns are not
        available). The column arguments then name the columns of `model`,
        which is not read here.
    -#}
    {%- set lookback = var('check_lookback_days', none) -%}
    {%- if lookback is not none and lookback is not number -%}
        {{ exceptions.raise_compiler_error(
            "mdq: var 'check_lookback_days' must be a number of days or null, got "
            ~ lookback) }}
    {%- endif -%}
    {%- set timeframes = mdq_calendar_timeframes() -%}
    {#- called at parse time too, so that dbt records the dependency -#}
    {%- set scope_relation = source('market', 'check_scopes') if apply_scope else none -%}
    {%- set scope_id = mdq_check_scope_id() if apply_lookback and apply_scope else none -%}

    {%- if sessionized_model is not none -%}
        {#- the shared pass reads the stored table, whose columns are these -#}
        {%- set symbol_column, timeframe_column, ts_column = 'symbol', 'timeframe', 'ts' -%}
    {%- endif %}
    {%- set mdq_row_filters -%}
        where
        {%- if apply_as_of %}
            {{ ts_column }} < {{ mdq_as_of() }}
        {%- else %}
            true
        {%- endif %}
        {%- if lookback is not none and apply_lookback %}
            and {{ ts_column }}
            >= {{ mdq_as_of() }} - make_interval(days => {{ lookback }})
        {%- endif %}
        {%- if scope_id %}
            {#- the overall lower bound, read now and written as a literal: the
                planner then estimates the rows from market_data's statistics
                (a subquery bound is a run-time parameter, estimated at a few
                thousand rows whatever it is: nested loops over every re-read
                candle, 4.7 s instead of 0.1 s for one new day at 1M) -#}
            {%- set bound_rows = run_query(
                "select min(read_from)::text from " ~ scope_relation
                ~ " where scope_id = '" ~ scope_id ~ "'") -%}
            {%- set bound = bound_rows.columns[0].values()[0] if bound_rows else none %}
            -- incremental run: only the re-read range of the changed series; the
            -- overall lower bound is implied by the exists below and lets PostgreSQL
            -- skip the older monthly partitions of market_data (migration 110;
            -- bench/bench_partitions.py "scoped re-read")
            {%- if bound is none %}
            and false
            {%- else %}
            and {{ ts_column }} >= {{ mdq_literal(bound | string) }}::timestamptz
            {%- endif %}
            and exists (
                select 1
                from {{ scope_relation }} as mdq_scope
                where mdq_scope.scope_id = '{{ scope_id }}'
                    and mdq_scope.symbol = mdq_rows.{{ symbol_column }}::text
                    and mdq_scope.timeframe = mdq_rows.{{ timeframe_column }}::text
                    and mdq_rows.{{ ts_column }} >= mdq_scope.read_from
            )
        {%- endif %}
    {%- endset %}

    {%- set mdq_reference_ctes -%}
    mdq_instruments as not materialized (
        select * from {{ ref('stg_market__instruments') }}
    ),

    mdq_calendars as not materialized (
        select * from {{ ref('stg_market__trading_calendars') }}
    ),

    mdq_sessions_enumerated as not materialized (
        select * from {{ ref('int_trading_sessions_enumerated') }}
        union all
        select * from {{ ref('int_trading_sessions_clock_enumerated') }}
    ),

    mdq_series_labels as not materialized (
        select * from {{ ref('stg_market__series_labels') }}
    ),
    {%- endset %}

    {%- if sessionized_model is not none %}

    {#- the reference CTEs; the shared pass reads only the calendars and
        sessions, but keeps the own pass's dependencies (a caller such as
        mdq_last_in_session_candles refs them in a branch dbt does not parse) #}
{{ mdq_reference_ctes }}

    candles_sessionized as (
        select
            mdq_rows.symbol,
            mdq_rows.asset_class,
            mdq_rows.timeframe,
            mdq_rows.ts,
            {{ mdq_as_of() }} as as_of,
            mdq_rows.calendar,
            mdq_rows.venue,
            mdq_rows.grid,
            mdq_rows.timeframe = '1d' as is_daily,
            mdq_rows.session_date,
            mdq_rows.slot_ordinal,
            mdq_rows.slot_offset_seconds,
            mdq_rows.is_covered,
            mdq_rows.is_in_session,
            mdq_rows.is_aligned
        from {{ sessionized_model }} as mdq_rows
{{ mdq_row_filters }}
    )
    {%- else %}

    mdq_candles_source as (
        select
            {{ symbol_column }}::text as symbol,
            {{ asset_class_column }}::text as asset_class,
            {{ timeframe_column }}::text as timeframe,
            {{ ts_column }}::timestamptz as ts,
            {%- if calendar_column %}
            {{ calendar_column }}::text as calendar_override,
            {%- else %}
            null::text as calendar_override,
            {%- endif %}
            {%- for column in value_columns %}
            {{ column }},
            {%- endfor %}
            {{ mdq_as_of() }} as as_of
        from {{ model }} as mdq_rows
{{ mdq_row_filters }}
    ),

{{ mdq_reference_ctes }}

    mdq_candles_calendared as (
        select
            candles.*,
            coalesce(
                candles.calendar_override,
                instruments.calendar,
                {{ mdq_default_calendar('candles.asset_class') }}
            ) as calendar,
            instruments.exchange as exchange,
            case
                when candles.timeframe = '1d' then 'session'
                else coalesce(labels.intraday_grid, 'session')
            end as grid
        from mdq_candles_source as candles
        left join mdq_instruments as instruments
            on candles.symbol = instruments.symbol
        left join mdq_series_labels as labels
            on candles.symbol = labels.symbol
            and candles.timeframe = labels.timeframe
        -- optimisation fence: calendar becomes a plain column, not a case
        -- expression re-evaluated in every join condition
        offset 0
    ),

    mdq_candles_dated as (
        select
            candles.*,
            coalesce(candles.exchange, candles.calendar) as venue,
            calendars.timezone,
            calendars.first_session_date,
            calendars.last_session_date,
            -- local wall-clock time only to derive the session date, zone named
            -- explicitly
            (
                (candles.ts at time zone calendars.timezone)
                + make_interval(hours => calendars.day_rollover_hours)
            )::date as session_date
        from mdq_candles_calendared as candles
        left join mdq_calendars as calendars
            on candles.calendar = calendars.calendar
        -- optimisation fence: session_date becomes a plain column, so the
        -- planner hash-joins the (small) enumerated sessions instead of
        -- sorting every candle for a merge join
        offset 0
    ),

    candles_sessionized as (
        select
            candles.symbol,
            candles.asset_class,
            candles.timeframe,
            candles.ts,
            candles.as_of,
            candles.calendar,
            candles.venue,
            candles.grid,
            sessions.grid_anchor_at,
            sessions.stub_bars,
            -- from the session row when there is one (no regex per candle)
            coalesce(
                sessions.timeframe_seconds,
                {{ mdq_timeframe_seconds('candles.timeframe') }}
            ) as timeframe_seconds,
            candles.timeframe = '1d' as is_daily,
            candles.session_date,
            candles.timezone,
            sessions.open_at,
            sessions.close_at,
            sessions.session_label_at,
            sessions.bars_before,
            sessions.bars_in_session,
            sessions.first_slot_at,
            sessions.last_slot_at,
            sessions.previous_session_last_slot_at,
            sessions.next_session_first_slot_at,
            coalesce(
                candles.session_date
                between candles.first_session_date and candles.last_session_date
                and candles.timeframe in (
                    {%- for tf in timeframes %}'{{ tf }}'{{ ', ' if not loop.last }}{% endfor -%}
                ),
                false
            ) as is_covered,
            coalesce(
                sessions.session_date is not null
                and (
                    candles.timeframe = '1d'
                    or (candles.ts >= sessions.open_at and candles.ts < sessions.close_at)
                ),
                false
            ) as is_in_session,
            -- date_part (double precision), not extract (numeric): whole
            -- seconds are exact in a double and the arithmetic is several
            -- times cheaper per row
            case
                when candles.timeframe = '1d' then sessions.bars_before
                when candles.ts < sessions.grid_anchor_at then sessions.bars_before
                else sessions.bars_before + sessions.stub_bars + floor(
                    date_part('epoch', candles.ts - sessions.grid_anchor_at)
                    / sessions.timeframe_seconds
                )::bigint
            end as slot_ordinal,
            case
                when candles.timeframe = '1d'
                    then date_part('epoch', candles.ts - sessions.session_label_at)
                when candles.ts < sessions.grid_anchor_at
                    then date_part('epoch', candles.ts - sessions.open_at)
                else date_part('epoch', candles.ts - sessions.grid_anchor_at)
                    - sessions.timeframe_seconds * floor(
                        date_part('epoch', candles.ts - sessions.grid_anchor_at)
                        / sessions.timeframe_seconds
                    )
            end::double precision as slot_offset_seconds,
            case
                when candles.timeframe = '1d'
                    then candles.ts in (sessions.session_label_at, sessions.open_at)
                when candles.ts < sessions.grid_anchor_at
                    then candles.ts = sessions.open_at
                else date_part('epoch', candles.ts - sessions.grid_anchor_at)
                    - sessions.timeframe_seconds * floor(
                        date_part('epoch', candles.ts - sessions.grid_anchor_at)
                        / sessions.timeframe_seconds
                    ) = 0
            end as is_aligned
            {%- for column in value_columns %},
            candles.{{ column }}
            {%- endfor %}
        from mdq_candles_dated as candles
        left join mdq_sessions_enumerated as sessions
            on candles.calendar = sessions.calendar
            and candles.timeframe = sessions.timeframe
            and candles.grid = sessions.grid
            and candles.session_date = sessions.session_date
    )
    {%- endif %}
{% endmacro %}


{% macro mdq_last_in_session_candles(relation=none) %}
    {#-
        A parenthesised subquery (usable as a relation) with the last
        in-session candle before as_of of every series of `model`, found by
        index look-ups instead of a scan of every candle: the series by a
        loose index scan of (symbol, timeframe) (one index probe per series,
        a recursive CTE), then per series a walk back from its last candle
        before as_of, one index probe per candle, that stops at the first
        candle inside a session (one probe of the session enumerations'
        unique index per candle). The rule is is_in_session of
        mdq_sessionized_candles (and mdq.db.health's series_staleness, `mdq
        health`): a session of the candle's calendar, timeframe and grid on
        its session date, and (1d) or open_at <= ts < close_at. Cost: two
        index probes per series, plus two per out-of-session candle after a
        series' last in-session one (e.g. synthetic weekend FX candles); a
        series without an in-session candle is absent, as in a scan.

        Calendar: instruments.calendar of the symbol, else var
        `calendar_by_asset_class` for the asset class of the series' newest
        candle (mdq_default_calendar). Grid: series_labels.intraday_grid
        ('session' when absent, and for 1d).

        Args:
            relation: the candle table with columns symbol, asset_class,
                timeframe, ts and an index on (symbol, timeframe, ts); default
                source market.market_data (not the staging view: its casts hide
                the index order from the loose index scan, which then sorts
                every candle once per series).

        Returns:
            SQL text `( ... )` with columns symbol, asset_class, timeframe, ts:
            one row per series with a candle in a session before as_of.
    -#}
    {%- set model = relation if relation is not none else source('market', 'market_data') -%}
    {%- set in_session -%}
        exists (
            select 1
            from (
                select calendar, timeframe, grid, session_date, open_at, close_at
                from {{ ref('int_trading_sessions_enumerated') }}
                union all
                select calendar, timeframe, grid, session_date, open_at, close_at
                from {{ ref('int_trading_sessions_clock_enumerated') }}
            ) as mdq_sessions
            where mdq_sessions.calendar = mdq_walk.calendar
                and mdq_sessions.timeframe = mdq_walk.timeframe
                and mdq_sessions.grid = mdq_walk.grid
                and mdq_sessions.session_date = (
                    (mdq_step.ts at time zone mdq_walk.timezone)
                    + make_interval(hours => mdq_walk.day_rollover_hours)
                )::date
                and (
                    mdq_walk.timeframe = '1d'
                    or (mdq_step.ts >= mdq_sessions.open_at and mdq_step.ts < mdq_sessions.close_at)
                )
        )
    {%- endset -%}
    (
        with recursive mdq_series as (
            (
                select
                    mdq_first.symbol::text as symbol,
                    mdq_first.timeframe::text as timeframe
                from {{ model }} as mdq_first
                order by mdq_first.symbol, mdq_first.timeframe
                limit 1
            )
            union all
            select mdq_following.symbol, mdq_following.timeframe
            from mdq_series
            cross join lateral (
                select
                    mdq_next.symbol::text as symbol,
                    mdq_next.timeframe::text as timeframe
                from {{ model }} as mdq_next
                where (mdq_next.symbol, mdq_next.timeframe)
                    > (mdq_series.symbol, mdq_series.timeframe)
                order by mdq_next.symbol, mdq_next.timeframe
                limit 1
            ) as mdq_following
        ),

        mdq_newest as materialized (
            -- the last candle before as_of of each series (one backward index probe)
            select
                mdq_series.symbol,
                mdq_series.timeframe,
                mdq_last.ts,
                mdq_last.asset_class
            from mdq_series
            cross join lateral (
                select
                    mdq_candle.ts::timestamptz as ts,
                    mdq_candle.asset_class::text as asset_class
                from {{ model }} as mdq_candle
                where mdq_candle.symbol = mdq_series.symbol
                    and mdq_candle.timeframe = mdq_series.timeframe
                    and mdq_candle.ts < {{ mdq_as_of() }}
                order by mdq_candle.ts desc
                limit 1
            ) as mdq_last
        ),

        mdq_series_calendared as materialized (
            select
                mdq_newest.symbol,
                mdq_newest.timeframe,
                mdq_newest.ts,
                mdq_newest.asset_class,
                mdq_calendars.calendar,
                mdq_calendars.timezone,
                mdq_calendars.day_rollover_hours,
                case
                    when mdq_newest.timeframe = '1d' then 'session'
                    else coalesce(mdq_labels.intraday_grid, 'session')
                end as grid
            from mdq_newest
            left join {{ ref('stg_market__instruments') }} as mdq_instruments
                on mdq_newest.symbol = mdq_instruments.symbol
            left join {{ ref('stg_market__series_labels') }} as mdq_labels
                on mdq_newest.symbol = mdq_labels.symbol
                and mdq_newest.timeframe = mdq_labels.timeframe
            inner join {{ ref('stg_market__trading_calendars') }} as mdq_calendars
                on mdq_calendars.calendar = coalesce(
                    mdq_instruments.calendar,
                    {{ mdq_default_calendar('mdq_newest.asset_class') }}
                )
        ),

        -- walk back one candle at a time (index probes) while the candle lies
        -- outside every session of its calendar
        mdq_walk as (
            select
                mdq_series_calendared.*,
                null::boolean as is_in_session
            from mdq_series_calendared
            union all
            select
                mdq_walk.symbol,
                mdq_walk.timeframe,
                mdq_step.ts,
                mdq_step.asset_class,
                mdq_walk.calendar,
                mdq_walk.timezone,
                mdq_walk.day_rollover_hours,
                mdq_walk.grid,
                {{ in_session }} as is_in_session
            from mdq_walk
            cross join lateral (
                select mdq_walk.ts, mdq_walk.asset_class
                where mdq_walk.is_in_session is null
                union all
                (
                    select
                        mdq_candle.ts::timestamptz,
                        mdq_candle.asset_class::text
                    from {{ model }} as mdq_candle
                    where mdq_walk.is_in_session is false
                        and mdq_candle.symbol = mdq_walk.symbol
                        and mdq_candle.timeframe = mdq_walk.timeframe
                        and mdq_candle.ts < mdq_walk.ts
                    order by mdq_candle.ts desc
                    limit 1
                )
            ) as mdq_step
            where mdq_walk.is_in_session is not true
        )

        select
            mdq_walk.symbol as symbol,
            mdq_walk.asset_class as asset_class,
            mdq_walk.timeframe as timeframe,
            mdq_walk.ts as ts
        from mdq_walk
        where mdq_walk.is_in_session
    )
{%- endmacro %}
