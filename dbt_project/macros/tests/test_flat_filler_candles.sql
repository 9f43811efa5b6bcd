{#-
    flat_filler_candles: forward-filled outage candles. A filler has zero
    volume and open = high = low = close = the previous candle's close (what
    an exchange or a downloader writes for a minute or hour without trades
    when it fills instead of leaving a hole). Consecutive fillers of a series
    are one row (ts_start = first, ts_end = last filler). A zero-volume flat
    candle at another price is not a filler (e.g. the still-forming last
    candle of a feed); a still-forming candle is never one.

    Incremental runs (price_check_ctes): runs ending at or after read_from
    are reported; a run beginning on the first context candle read is left
    out (it may have begun earlier) and keeps its open finding until a later
    or --full run.

    observed_value = fillers in the run, expected_value = 0.
-#}
{% test flat_filler_candles(model, lookback=none, is_final_column='is_final', scored_model=none) %}

with

{{ price_check_ctes(model, lookback, is_final_column, scored_model) }},

fillers as (
    select
        symbol,
        asset_class,
        timeframe,
        ts,
        prev_ts,
        close
    from price_scored
    where is_flat_filler and not is_forming
),

-- islands among the fillers only: a run goes on while a filler's previous
-- candle is the previous filler
filler_starts as (
    select
        *,
        prev_ts is distinct from lag(ts) over (
            partition by symbol, timeframe order by ts
        ) as starts_run
    from fillers
),

filler_marked as (
    select
        *,
        count(*) filter (where starts_run) over (
            partition by symbol, timeframe order by ts
            rows between unbounded preceding and current row
        ) as run_number
    from filler_starts
),

filler_runs as (
    select
        symbol,
        min(asset_class) as asset_class,
        timeframe,
        run_number,
        min(ts) as ts_start,
        max(ts) as ts_end,
        count(*) as filler_candles,
        min(close) as fill_price
    from filler_marked
    group by symbol, timeframe, run_number
),

-- the first candle each series was read from (an incremental run reads the
-- changed series from a few context candles before read_from: a run that
-- begins on that first candle may have begun earlier, so it is not reported;
-- a full run reads every candle and loses nothing here)
series_read_from as (
    select symbol, timeframe, min(ts) as first_read_ts
    from price_scored
    group by symbol, timeframe
),

final as (
    select
        'flat_filler_candles'::text as check_name,
        'flat_filler'::text as anomaly_type,
        {{ mdq_setting('mdq_flat_filler_severity') }}::text as severity,
        symbol,
        asset_class,
        timeframe,
        ts_start,
        ts_end,
        filler_candles::double precision as observed_value,
        0::double precision as expected_value,
        format(
            '%s flat zero-volume candle(s) at %s, each equal to the previous '
            'close: an outage forward-filled by the source',
            filler_candles, fill_price
        ) as failure_reason
    from filler_runs
    {%- if mdq_check_scope_id() %}
    where not exists (
        select 1
        from series_read_from as read_from
        where read_from.symbol = filler_runs.symbol
            and read_from.timeframe = filler_runs.timeframe
            and read_from.first_read_ts = filler_runs.ts_start
    )
    {%- endif %}
)

-- incremental run: runs reaching into the re-read range (they may begin in the
-- context candles before read_from: same fingerprint as a full run's)
select * from final
where true {{ mdq_check_scope_findings('final', 'ts_end') }}

{% endtest %}
