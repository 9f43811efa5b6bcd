-- grain: one row per symbol, timeframe, ts (candle open time, UTC)
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['symbol', 'timeframe', 'ts'],
        indexes=[
            {'columns': ['symbol', 'timeframe', 'ts'], 'unique': true},
            {'columns': ['ingested_at']},
        ],
    )
}}

{%- set lookback_candles = mdq_quote_number(var('price_checks_lookback_candles', 50),
                                            'price_checks_lookback_candles') | int -%}

with

candles as (
    select * from {{ ref('stg_market__candles') }}
),

{% if is_incremental() %}

-- series with candles written since the last run, recomputed from the
-- price_checks_lookback_candles-th candle before the first changed one (the
-- lag/lead context: 4 back, 2 ahead), which is read from twice as far back;
-- candles, not a time interval: an interval of days re-selected most of a 1m
-- history after one new day (issue 15)
last_run as (
    select max(ingested_at) as last_ingested_at from {{ this }}
),

changed_first as (
    select
        candles.symbol,
        candles.timeframe,
        min(candles.ts) as first_changed_ts
    from candles
    cross join last_run
    where
        last_run.last_ingested_at is null
        or candles.ingested_at > last_run.last_ingested_at
    group by candles.symbol, candles.timeframe
),

changed_series as (
    select
        changed_first.symbol,
        changed_first.timeframe,
        {{ price_context_start(ref('stg_market__candles'), 'changed_first',
                               'changed_first.first_changed_ts', lookback_candles) }}
            as recompute_from,
        {{ price_context_start(ref('stg_market__candles'), 'changed_first',
                               'changed_first.first_changed_ts', 2 * lookback_candles) }}
            as read_from
    from changed_first
),

input_candles as (
    select candles.*
    from candles
    inner join changed_series
        on
            candles.symbol = changed_series.symbol
            and candles.timeframe = changed_series.timeframe
            and candles.ts >= changed_series.read_from
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
    inner join changed_series
        on
            features.symbol = changed_series.symbol
            and features.timeframe = changed_series.timeframe
            and features.ts >= changed_series.recompute_from
    {% endif %}
)

select * from final
