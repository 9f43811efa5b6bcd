-- grain: one row per candle of stg_market__candles with ts < as_of (symbol,
-- timeframe, ts when market_data has its unique key); instants UTC,
-- session_date exchange-local
with

{{ mdq_sessionized_candles(ref('stg_market__candles'), apply_scope=false) }},

final as (
    select
        symbol,
        asset_class,
        timeframe,
        ts,
        calendar,
        venue,
        grid,
        session_date,
        open_at,
        close_at,
        slot_ordinal,
        slot_offset_seconds,
        is_covered,
        is_in_session,
        is_aligned
    from candles_sessionized
)

select * from final
