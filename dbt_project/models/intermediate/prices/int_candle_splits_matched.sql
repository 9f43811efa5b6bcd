-- grain: one row per symbol, timeframe, effective_date of a known split
{{ config(materialized='table') }}

with

features as (
    select * from {{ ref('int_candle_features_computed') }}
),

matches as (
    {{ price_known_split_matches('features') }}
),

final as (
    select
        symbol,
        asset_class,
        timeframe,
        effective_date,
        split_ratio,
        jump_ts,
        session_offset,
        split_fit,
        match_status
    from matches
)

select * from final
