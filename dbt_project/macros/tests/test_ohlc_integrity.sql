{#-
    ohlc_integrity: the internal consistency of each candle of `model`
    (columns symbol, asset_class, timeframe, ts, open, high, low, close,
    volume). One row per candle and violated rule:
      invalid_price            a price or the volume is null, NaN, infinite,
                               beyond 1e100 in magnitude, or a price in
                               (0, 1e-100) (outside price_safe_bound)
      nonpositive_price        a price <= 0 (observed = the smallest price)
      negative_volume          volume < 0
      ohlc_integrity           high < max(open, close, low) or
                               low > min(open, close)
                               (observed = the bad bound, expected = the bound
                               it must reach)
      zero_volume_move         volume = 0 but open <> close: a price moved
                               without trades (a data-vendor artefact; warn
                               by default)
    Severities: the vars mdq_*_severity (macro mdq_setting).
    Incremental runs read only the re-read range (macro mdq_check_scope_rows);
    mdq resolves their findings only there (mdq.quality.SCOPED_CHECKS).
-#}
{% test ohlc_integrity(model) %}

with

candles as (
    select
        symbol,
        asset_class,
        timeframe,
        ts,
        open,
        high,
        low,
        close,
        volume
    from {{ model }} as mdq_candles
    where true
    -- incremental run: only the changed series from their read_from on (each
    -- candle is judged alone: nothing before it matters)
    {{ mdq_check_scope_rows('mdq_candles') }}
),

checked as (
    select
        *,
        (
            open is null or high is null or low is null or close is null
            or volume is null
            or 'NaN' in (open, high, low, close, volume)
            or abs(open) = 'Infinity' or abs(high) = 'Infinity'
            or abs(low) = 'Infinity' or abs(close) = 'Infinity'
            or abs(volume) = 'Infinity'
            -- outside the price checks' safe range (price_safe_bound): the
            -- features treat the candle as unusable, so say why here
            or greatest(abs(open), abs(high), abs(low), abs(close), abs(volume))
            > {{ price_safe_bound() }}
            or (
                least(open, high, low, close) > 0
                and least(open, high, low, close) < 1 / {{ price_safe_bound() }}
            )
        ) as is_invalid
    from candles
),

violations as (
    select
        'invalid_price' as anomaly_type,
        symbol, asset_class, timeframe, ts,
        null::double precision as observed_value,
        null::double precision as expected_value,
        format('open %s, high %s, low %s, close %s, volume %s: null, NaN, infinite or '
               'outside [1e-100, 1e100]',
               coalesce(open::text, 'null'), coalesce(high::text, 'null'),
               coalesce(low::text, 'null'), coalesce(close::text, 'null'),
               coalesce(volume::text, 'null')) as failure_reason
    from checked
    where is_invalid
    union all
    select
        'nonpositive_price',
        symbol, asset_class, timeframe, ts,
        least(open, high, low, close),
        0,
        format('open %s, high %s, low %s, close %s: prices must be > 0',
               open, high, low, close)
    from checked
    where not is_invalid and least(open, high, low, close) <= 0
    union all
    select
        'negative_volume',
        symbol, asset_class, timeframe, ts,
        volume,
        0,
        format('volume %s < 0', volume)
    from checked
    where not is_invalid and volume < 0
    union all
    select
        'ohlc_integrity',
        symbol, asset_class, timeframe, ts,
        high,
        greatest(open, close, low),
        format('high %s below max(open %s, close %s, low %s)',
               high, open, close, low)
    from checked
    where not is_invalid and high < greatest(open, close, low)
    union all
    select
        'ohlc_integrity',
        symbol, asset_class, timeframe, ts,
        low,
        least(open, close),
        format('low %s above min(open %s, close %s)', low, open, close)
    from checked
    where not is_invalid and low > least(open, close)
    union all
    select
        'zero_volume_move',
        symbol, asset_class, timeframe, ts,
        abs(close - open),
        0,
        format('volume 0 but open %s <> close %s: a move without trades',
               open, close)
    from checked
    where not is_invalid and volume = 0 and open <> close
),

final as (
    select
        'ohlc_integrity'::text as check_name,
        anomaly_type::text as anomaly_type,
        (case anomaly_type
            when 'invalid_price' then {{ mdq_setting('mdq_invalid_price_severity') }}
            when 'nonpositive_price' then {{ mdq_setting('mdq_nonpositive_price_severity') }}
            when 'negative_volume' then {{ mdq_setting('mdq_negative_volume_severity') }}
            when 'ohlc_integrity' then {{ mdq_setting('mdq_ohlc_integrity_severity') }}
            else {{ mdq_setting('mdq_zero_volume_move_severity') }}
        end)::text as severity,
        symbol,
        asset_class,
        timeframe,
        ts as ts_start,
        ts as ts_end,
        observed_value::double precision as observed_value,
        expected_value::double precision as expected_value,
        failure_reason
    from violations
)

select * from final

{% endtest %}
