-- grain: one row per symbol (in instruments or with candles)
with

instruments as (
    select * from {{ ref('stg_market__instruments') }}
),

calendars as (
    select * from {{ ref('stg_market__trading_calendars') }}
),

candles as (
    select * from {{ ref('fct_candles') }}
),

split_matches as (
    select * from {{ ref('int_candle_splits_matched') }}
),

candle_summary as (
    select
        symbol,
        min(asset_class) as asset_class,
        array_agg(distinct timeframe order by timeframe) as timeframes,
        count(*) as clean_candles,
        min(ts) as first_candle_at,
        max(ts) as last_candle_at
    from candles
    group by symbol
),

split_summary as (
    select
        symbol,
        count(distinct effective_date) filter (
            where match_status = 'matched'
        ) as matched_splits,
        count(distinct effective_date) filter (
            where match_status = 'not_observed'
        ) as unobserved_splits
    from split_matches
    group by symbol
),

symbols as (
    select symbol from instruments
    union
    select symbol from candle_summary
),

final as (
    select
        symbols.symbol,
        coalesce(instruments.asset_class, candle_summary.asset_class)
            as asset_class,
        instruments.exchange,
        instruments.calendar,
        coalesce(calendars.timezone, 'UTC') as time_zone,
        instruments.quote_currency,
        coalesce(instruments.is_active, false) as is_active,
        instruments.symbol is not null as has_instrument,
        candle_summary.timeframes,
        coalesce(candle_summary.clean_candles, 0) as clean_candles,
        candle_summary.first_candle_at,
        candle_summary.last_candle_at,
        coalesce(split_summary.matched_splits, 0) as matched_splits,
        coalesce(split_summary.unobserved_splits, 0) as unobserved_splits
    from symbols
    left join instruments on symbols.symbol = instruments.symbol
    left join calendars on instruments.calendar = calendars.calendar
    left join candle_summary on symbols.symbol = candle_summary.symbol
    left join split_summary on symbols.symbol = split_summary.symbol
)

select * from final
