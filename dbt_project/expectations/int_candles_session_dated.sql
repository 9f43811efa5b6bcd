-- grain: one row per candle of stg_market__candles (symbol, timeframe, ts), with the
-- exchange-local session date the calendar checks map it to (null when the candle is at or
-- after as_of, or its calendar is not refreshed). Ephemeral: it only carries the
-- dbt-expectations tests (parsed when MDQ_DBT_EXPECTATIONS=1).
{{ config(materialized='ephemeral') }}

with

candles as (
    select * from {{ ref('stg_market__candles') }}
),

sessionized as (
    select * from {{ ref('int_candles_sessionized') }}
),

final as (
    select
        candles.symbol,
        candles.asset_class,
        candles.timeframe,
        candles.ts,
        candles.open,
        candles.high,
        candles.low,
        candles.close,
        candles.volume,
        sessionized.session_date,
        coalesce(sessionized.is_in_session, false) as is_in_session
    from candles
    left join sessionized
        on
            sessionized.symbol = candles.symbol
            and sessionized.timeframe = candles.timeframe
            and sessionized.ts = candles.ts
)

select * from final
