-- The single-pass reference scan of issue 15 (P2 in bench/bench_scale.py): one read of
-- market_data in key order with lag() per series, computing per (symbol, timeframe):
--   key_duplicates  rows whose ts equals the previous row's ts (0 with the unique key; kept so
--                   the scan does the work a duplicate check does on an adopted table),
--   raw_gaps        steps to the next candle longer than one timeframe (no calendar),
--   spikes          log returns beyond 10 standard deviations of the series' log returns
--                   (a moving stdev over the previous 60 returns),
--   last_ts         the last candle.
-- It is the floor a full `mdq check` is compared with, not a replacement for it.
with ordered as (
    select
        symbol,
        timeframe,
        ts,
        close,
        lag(ts) over w as prev_ts,
        ln(close / nullif(lag(close) over w, 0)) as log_return
    from market_data
    window w as (partition by symbol, timeframe order by ts)
),

scored as (
    select
        symbol,
        timeframe,
        ts,
        prev_ts,
        log_return,
        stddev_samp(log_return) over (
            partition by symbol, timeframe order by ts rows between 60 preceding and 1 preceding
        ) as return_stdev
    from ordered
),

final as (
    select
        symbol,
        timeframe,
        count(*) filter (where ts = prev_ts) as key_duplicates,
        count(*) filter (
            where ts - prev_ts > case timeframe
                when '1m' then interval '1 minute'
                when '5m' then interval '5 minutes'
                when '15m' then interval '15 minutes'
                when '1h' then interval '1 hour'
                when '4h' then interval '4 hours'
                else interval '1 day'
            end
        ) as raw_gaps,
        count(*) filter (where abs(log_return) > 10 * return_stdev) as spikes,
        max(ts) as last_ts
    from scored
    group by symbol, timeframe
)

select * from final
order by symbol, timeframe
