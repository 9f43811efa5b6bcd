{#-
    price_check_ctes(model, lookback=none, is_final_column='is_final',
                     scored_model=none)

    The CTE chain shared by the price tests, as text to place after `with`:
      price_source         the candles of `model` (columns symbol, asset_class,
                           timeframe, ts, open, high, low, close, volume)
      price_features       price_candle_features
      price_scales         price_block_scales
      price_split_matches  price_known_split_matches
      price_scored         price_scored_candles
      price_suspects       price_split_suspects
      price_unit_changes   price_unit_changes
    PostgreSQL evaluates only the CTEs a test reads.

    Args:
      model: the candle relation (the generic test's model).
      lookback: interval text (e.g. '60 days') or none. When set, only
        candles with ts >= as_of - lookback are read, so a run costs what the
        recent data costs. Blocks at the start of that window are partial:
        make it at least two scale blocks long (2 years for 1d).
      is_final_column: boolean column marking closed candles, or none when
        the model has none (every candle then counts as closed).
      scored_model: none (compute everything from `model`, any candle
        relation), or a relation with the columns of int_candles_scored
        (normally ref('int_candles_scored'), built incrementally from the
        same candles): the tests then read the precomputed judgements
        instead of recomputing the windows and the block scales, and the
        known splits come from int_candle_splits_matched.

    Incremental runs (`mdq check` without --full, macro mdq_check_scope_id),
    with scored_model: only the series of market.check_scopes are read, from
    price_scope_context_candles() candles before their read_from (the third
    candle before the first change) on, and each test reports only findings
    with ts_start >= read_from (macro mdq_check_scope_findings), the range in
    which mdq resolves them (mdq.quality.SCOPED_CHECKS). Why that is enough:
    a candle's judgement in int_candles_scored depends only on the candle,
    its previous close (lag) and its block's scale in
    int_candle_scales_estimated, which the incremental price models have
    already brought up to date for the changed blocks; the tests add the
    neighbours: the next candle (recovery, level held, split and unit
    persistence: all after it, so read), the previous candle's outlier move
    (recovery, split prior outlier) and a unit step up to
    mdq_unit_change_persist_candles candles before (in the context candles,
    which are read but not reported: their own context is cut). Not re-judged
    by an incremental run (the weekly --full run does): candles before
    read_from whose block scale moved because new candles joined the block,
    and provisional split or unit findings before read_from that later
    candles confirm or refute; a flat-filler run that began at or before the
    first context candle (test flat_filler_candles).

    Raises a compiler error when lookback is not a string.
-#}
{% macro price_check_ctes(model, lookback=none, is_final_column='is_final', scored_model=none) %}
{%- if lookback is not none and lookback is not string -%}
    {{ exceptions.raise_compiler_error(
        "price_check_ctes: lookback must be interval text such as '60 days', got " ~ lookback) }}
{%- endif -%}
{%- if scored_model is not none %}
-- precomputed: the candles already scored by the incremental models;
-- not materialized, so that each test's filters reach the view
price_features as not materialized (
    select *
    from {{ scored_model }} as mdq_scored
    where true
    {%- if lookback %}
        and ts >= {{ price_check_as_of() }} - '{{ lookback | replace("'", "") }}'::interval
    {%- endif %}
    {#- incremental run: the changed series from price_scope_context_candles()
        candles before their read_from (docstring above) -#}
    {{ mdq_check_scope_rows('mdq_scored', ref('int_candle_features_computed'),
                            price_scope_context_candles()) }}
),

price_split_matches as not materialized (
    select * from {{ ref('int_candle_splits_matched') }}
),

price_scored as not materialized (
    select * from price_features
),
{%- else %}
price_source as (
    select
        symbol,
        asset_class,
        timeframe,
        ts,
        open,
        high,
        low,
        close,
        volume,
        {% if is_final_column %}{{ adapter.quote(is_final_column) }}{% else %}true{% endif %}::boolean
            as is_final
    from {{ model }}
    {%- if lookback %}
    where ts >= {{ price_check_as_of() }} - '{{ lookback | replace("'", "") }}'::interval
    {%- endif %}
),

price_features as (
    {{ price_candle_features('price_source') }}
),

price_scales as (
    {{ price_block_scales('price_features') }}
),

price_split_matches as (
    {{ price_known_split_matches('price_features') }}
),

price_scored as (
    {{ price_scored_candles('price_features', 'price_scales',
                            'price_split_matches') }}
),
{%- endif %}

price_suspects as (
    {{ price_split_suspects('price_scored') }}
),

price_unit_changes as (
    {{ price_unit_changes('price_scored') }}
)
{% endmacro %}

{#- round(x, digits) for double precision (PostgreSQL has round(numeric, int) only) -#}
{% macro price_round(expression, digits=2) %}round(({{ expression }})::numeric, {{ digits }}){% endmacro %}
