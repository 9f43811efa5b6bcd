{#-
    price_check_as_of()

    The reference time as a timestamptz SQL expression: the dbt var `as_of`,
    else the environment variable MDQ_AS_OF (macro mdq_as_of_text; an ISO 8601
    string with offset) or, when both are unset, now().
-#}
{% macro price_check_as_of() %}
    {%- set as_of = mdq_as_of_text() -%}
    {%- if as_of is none or as_of == '' -%}
        now()
    {%- else -%}
        {{ mdq_quote_text(as_of, 'as_of') }}::timestamptz
    {%- endif -%}
{% endmacro %}

{#-
    price_timeframe_interval(timeframe_column)

    The candle length of a timeframe code ('1m', '5m', '15m', '30m', '1h',
    '4h', '1d', '1w') as an interval expression; null for other codes.
-#}
{% macro price_timeframe_interval(timeframe_column) %}
    (case {{ timeframe_column }}
        when '1m' then interval '1 minute'
        when '5m' then interval '5 minutes'
        when '15m' then interval '15 minutes'
        when '30m' then interval '30 minutes'
        when '1h' then interval '1 hour'
        when '4h' then interval '4 hours'
        when '1d' then interval '1 day'
        when '1w' then interval '7 days'
    end)
{% endmacro %}

{#-
    price_scale_block_start(ts_column, timeframe_column)

    Start of the robust-scale block holding a candle: date_trunc in UTC of
    ts by the calendar unit the var `price_checks_scale_blocks` names for the
    timeframe (default month). Returns timestamptz.
-#}
{% macro price_scale_block_start(ts_column, timeframe_column) %}
    {%- set blocks = var('price_checks_scale_blocks', {}) -%}
    {%- if blocks is not mapping -%}
        {{ exceptions.raise_compiler_error(
            "mdq: var 'price_checks_scale_blocks' must be a mapping timeframe: unit, got "
            ~ (blocks | string)[:80]) }}
    {%- endif -%}
    date_trunc(
        (case {{ timeframe_column }}
        {%- for timeframe, unit in blocks.items() %}
            when {{ mdq_quote_text(timeframe, 'price_checks_scale_blocks') }}
                then {{ mdq_quote_choice(unit, ['day', 'week', 'month', 'quarter', 'year'],
                                          'price_checks_scale_blocks') }}
        {%- endfor %}
            else 'month'
        end),
        {{ ts_column }},
        'UTC'
    )
{% endmacro %}

{#-
    price_median_of_4(a, b, c, d)

    Median of up to four nullable double precision expressions, in O(1) per
    row: (sum - max - min) / 2 for four values, sum - max - min for three,
    the mean for two, the value for one, null for none. Used for the
    neighbour medians (2 candles before, 2 after) instead of a rolling
    percentile window.
-#}
{% macro price_median_of_4(a, b, c, d) %}
    (case (({{ a }}) is not null)::int + (({{ b }}) is not null)::int
            + (({{ c }}) is not null)::int + (({{ d }}) is not null)::int
        when 4 then (
            ({{ a }}) + ({{ b }}) + ({{ c }}) + ({{ d }})
            - greatest({{ a }}, {{ b }}, {{ c }}, {{ d }})
            - least({{ a }}, {{ b }}, {{ c }}, {{ d }})
        ) / 2
        when 3 then (
            coalesce({{ a }}, 0) + coalesce({{ b }}, 0)
            + coalesce({{ c }}, 0) + coalesce({{ d }}, 0)
            - greatest({{ a }}, {{ b }}, {{ c }}, {{ d }})
            - least({{ a }}, {{ b }}, {{ c }}, {{ d }})
        )
        when 2 then (
            coalesce({{ a }}, 0) + coalesce({{ b }}, 0)
            + coalesce({{ c }}, 0) + coalesce({{ d }}, 0)
        ) / 2
        when 1 then coalesce({{ a }}, {{ b }}, {{ c }}, {{ d }})
    end)
{% endmacro %}

{#-
    price_volume_kind(asset_class_column)

    What a candle's volume counts, by asset class, as a SQL text expression
    for failure reasons: 'tick volume' (forex: FX feeds count price updates,
    there is no central tape), 'contract volume' (future, option),
    'base-currency volume' (crypto), 'share volume' (stock, etf, fund), else
    'volume'. Volume is always compared in this unit, never as price x
    volume (a bad price would inflate it).
-#}
{% macro price_volume_kind(asset_class_column) %}
    (case {{ asset_class_column }}
        when 'forex' then 'tick volume'
        when 'future' then 'contract volume'
        when 'option' then 'contract volume'
        when 'crypto' then 'base-currency volume'
        when 'stock' then 'share volume'
        when 'etf' then 'share volume'
        when 'fund' then 'share volume'
        else 'volume'
    end)
{% endmacro %}

{#-
    price_context_start(relation, series, before_ts, candles)

    The open time of the `candles`-th candle of a series before `before_ts`
    (the first candle an incremental model must re-read so that its lag/lead
    context is complete), by one index range scan of (symbol, timeframe, ts)
    on `relation`, whatever the gaps (nights, weekends, holidays) between
    them. Replaces a look-back in time, which re-selected days of 1m rows
    (issue 15: 7.2M of 11.4M rows after one new day).

    Args:
        relation: the candle relation (market_data's staging view, or a model
            with a (symbol, timeframe, ts) index).
        series: alias of the row holding symbol and timeframe.
        before_ts: SQL expression (timestamptz).
        candles: how many candles back (integer >= 1).

    Returns:
        a timestamptz SQL expression; `before_ts` when the series has no
        candle before it.
-#}
{% macro price_context_start(relation, series, before_ts, candles) %}
    coalesce(
        (
            select min(context_candles.ts)
            from (
                select context_source.ts
                from {{ relation }} as context_source
                where
                    context_source.symbol = {{ series }}.symbol
                    and context_source.timeframe = {{ series }}.timeframe
                    and context_source.ts < {{ before_ts }}
                order by context_source.ts desc
                limit {{ candles | int }}
            ) as context_candles
        ),
        {{ before_ts }}
    )
{% endmacro %}

{#-
    price_scope_context_candles()

    How many candles before an incremental run's read_from the price tests
    read as context (macro price_check_ctes): 8, more than the previous
    candle (recoveries, split prior outliers) and the default
    mdq_unit_change_persist_candles (5: a unit step undoing one that recent
    is a bad print). Returns an integer.
-#}
{% macro price_scope_context_candles() %}{{ return(8) }}{% endmacro %}
