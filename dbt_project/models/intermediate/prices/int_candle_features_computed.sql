-- grain: one row per symbol, timeframe, ts (candle open time, UTC)
{{
    config(
        materialized='incremental',
        incremental_strategy='mdq_scope',
        meta={'mdq_rebuild_unless_scoped': true, 'mdq_scope_column': 'ts'},
        indexes=[
            {'columns': ['symbol', 'timeframe', 'ts'], 'unique': true},
        ],
        post_hook="{{ price_open_bucket_index() }}",
        pre_hook="{{ price_work_mem() }}",
    )
}}

{%- set lookback_candles = mdq_quote_number(var('price_checks_lookback_candles', 50),
                                            'price_checks_lookback_candles') | int -%}
{#- the run's scope (price_scope_rows: none on a full build) -#}
{%- set scope_rows = price_scope_rows(ref('stg_market__candles'), lookback_candles) -%}

with

candles as (
    select * from {{ ref('stg_market__candles') }}
),

{% if is_incremental() %}

-- an incremental run with a scope (price_scope.sql): the changed series, read
-- from price_checks_lookback_candles candles before their read_from (counted
-- by market_data's unique key index: the lag context, whatever the gaps) and rewritten from read_from on (price_rewrite_from); nothing else is
-- read, and market_data is not searched for new rows

input_candles as (
    select candles.*
    from candles
    inner join {{ price_scope_values(scope_rows) }}
        on
            candles.symbol = price_scope.symbol
            and candles.timeframe = price_scope.timeframe
            and candles.ts >= price_scope.context_from
    where candles.ts >= {{ price_scope_lower_bound(scope_rows) }}
),

{% else %}

input_candles as (
    select * from candles
),

{% endif %}

features as (
    {{ price_candle_features('input_candles', extra_columns=['ingested_at']) }}
),

final as (
    select
        features.symbol,
        features.asset_class,
        features.timeframe,
        features.ts,
        features.open,
        features.high,
        features.low,
        features.close,
        features.volume,
        features.is_final,
        features.calendar,
        features.session_date,
        features.session_open_at,
        features.session_close_at,
        features.is_early_close,
        features.final_at,
        features.slot_ordinal,
        features.expected_candles,
        features.is_session_start,
        features.is_after_closure,
        features.time_bucket,
        features.is_valid,
        features.prev_ts,
        features.prev_close,
        features.log_return,
        features.log_open_gap,
        features.log_range,
        features.log_body,
        features.lower_wick,
        features.upper_wick,
        features.neighbour_range_median,
        features.prev_volume_median,
        features.block_start,
        features.is_flat_filler,
        features.ingested_at
    from features
    {% if is_incremental() %}
    inner join {{ price_scope_values(scope_rows) }}
        on
            features.symbol = price_scope.symbol
            and features.timeframe = price_scope.timeframe
            and features.ts >= {{ price_rewrite_from(model.name, 'price_scope', 'features') }}
    {% endif %}
)

select * from final
