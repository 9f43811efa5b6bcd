{#-
    price_candle_features(candles, extra_columns=[])

    Per-candle features of the price checks, from any relation or CTE name
    `candles` with columns symbol, asset_class, timeframe, ts (candle open,
    timestamptz UTC), open, high, low, close, volume and is_final (boolean;
    pass a relation with `true as is_final` when the model has none).

    extra_columns: more columns of `candles` passed through unchanged (e.g.
    ingested_at for the incremental models).

    Cost: one sort per (symbol, timeframe) for the lag/lead window (like a lag
    gap scan) and hash joins to the instruments and trading calendars; no per-row percentile.

    Returns a SELECT with one row per input candle and, besides the input
    columns:
      session_date       exchange-local date of ts (time zone of the
                         instrument's calendar in trading_calendars, written by
                         `mdq calendars refresh`; UTC without an instruments
                         row or a refreshed calendar)
      is_session_start   first candle of its session_date in the series
      is_valid           all four prices inside the safe range
                         (price_within_safe_range: logs, ratios and products
                         of two of them cannot overflow)
      prev_ts, prev_close  previous candle of the series (any validity)
      log_return         ln(close / prev_close), null when either is invalid
      log_open_gap       ln(open / prev_close)
      log_range          ln(high / low) >= 0
      log_body           |ln(close / open)|
      lower_wick, upper_wick  ln(min(open, close) / low), ln(high / max(open, close))
      neighbour_range_median  median of the log ranges of the 2 previous and
                         2 next candles (price_median_of_4), null if none
      dollar_volume      close x volume, quote currency; null when close or
                         volume is outside the safe range
      prev_dollar_volume_median  median dollar volume of the 4 previous candles
      block_start        robust-scale block (price_scale_block_start)
      is_flat_filler     volume = 0 and open = high = low = close = prev_close
                         (an outage forward-fill)
      is_forming         is_final is false, or ts + timeframe > as_of - the
                         forming_grace parameter (still-forming candle)
-#}
{% macro price_candle_features(candles, extra_columns=[]) %}
with

price_input as (
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
        coalesce(candles.is_final, true) as is_final,
        {%- for column in extra_columns %}
        candles.{{ column }},
        {%- endfor %}
        coalesce(calendars.timezone, 'UTC') as time_zone
    from {{ candles }} as candles
    left join {{ ref('stg_market__instruments') }} as instruments
        on candles.symbol = instruments.symbol
    left join {{ ref('stg_market__trading_calendars') }} as calendars
        on instruments.calendar = calendars.calendar
),

price_located as (
    select
        *,
        (ts at time zone time_zone)::date as session_date,
        (
            {{ price_within_safe_range('open') }}
            and {{ price_within_safe_range('high') }}
            and {{ price_within_safe_range('low') }}
            and {{ price_within_safe_range('close') }}
        ) as is_valid,
        case
            when
                {{ price_within_safe_range('close') }}
                and volume >= 0 and volume < {{ price_safe_bound() }}
                then close * volume
        end as dollar_volume
    from price_input
),

price_logs as (
    select
        *,
        case when is_valid then ln(high / low) end as log_range,
        case when is_valid then abs(ln(close / open)) end as log_body,
        case when is_valid then ln(least(open, close) / low) end as lower_wick,
        case when is_valid then ln(high / greatest(open, close)) end as upper_wick
    from price_located
),

price_lagged as (
    select
        *,
        lag(ts) over series as prev_ts,
        lag(close) over series as prev_close,
        lag(is_valid) over series as prev_is_valid,
        lag(session_date) over series as prev_session_date,
        lag(log_range, 1) over series as range_lag_1,
        lag(log_range, 2) over series as range_lag_2,
        lead(log_range, 1) over series as range_lead_1,
        lead(log_range, 2) over series as range_lead_2,
        lag(dollar_volume, 1) over series as dollar_volume_lag_1,
        lag(dollar_volume, 2) over series as dollar_volume_lag_2,
        lag(dollar_volume, 3) over series as dollar_volume_lag_3,
        lag(dollar_volume, 4) over series as dollar_volume_lag_4
    from price_logs
    window series as (partition by symbol, timeframe order by ts)
),

final as (
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
        is_final,
        session_date,
        (prev_session_date is null or session_date <> prev_session_date)
            as is_session_start,
        is_valid,
        prev_ts,
        prev_close,
        case
            when is_valid and prev_is_valid then ln(close / prev_close)
        end as log_return,
        case
            when is_valid and prev_is_valid then ln(open / prev_close)
        end as log_open_gap,
        log_range,
        log_body,
        lower_wick,
        upper_wick,
        {{ price_median_of_4('range_lag_1', 'range_lag_2',
                             'range_lead_1', 'range_lead_2') }}
            as neighbour_range_median,
        dollar_volume,
        {{ price_median_of_4('dollar_volume_lag_1', 'dollar_volume_lag_2',
                             'dollar_volume_lag_3', 'dollar_volume_lag_4') }}
            as prev_dollar_volume_median,
        {{ price_scale_block_start('ts', 'timeframe') }} as block_start,
        {%- for column in extra_columns %}
        {{ column }},
        {%- endfor %}
        (
            volume = 0
            and open = high and high = low and low = close
            and close = prev_close
        ) is true as is_flat_filler,
        (
            not is_final
            or ts + {{ price_timeframe_interval('timeframe') }}
            > {{ price_check_as_of() }}
            - {{ mdq_setting('mdq_forming_grace') }}::interval
        ) is true as is_forming
    from price_lagged
)

select * from final
{% endmacro %}


{#-
    price_safe_bound()

    The magnitude beyond which the price checks treat a price or a volume as
    unusable: 1e100. Any product, ratio or sum of four values within
    [1e-100, 1e100] stays far inside double precision (about 1.8e308), so a
    bad print of 1e308 in one series can never raise `value out of range:
    overflow` and stop the checks of every other series (issue 16). Real
    prices and volumes are many orders of magnitude inside it; the rows
    outside it are reported by ohlc_integrity (the ingest quarantines them
    before they are stored, by its own documented bound).
-#}
{% macro price_safe_bound() %}1e100{% endmacro %}

{#-
    price_within_safe_range(column)

    True when the price `column` is in [1e-100, 1e100] (price_safe_bound):
    positive, finite, not NaN, and far from overflow and underflow. False for
    null.
-#}
{% macro price_within_safe_range(column) -%}
    coalesce({{ column }} between 1 / {{ price_safe_bound() }}
        and {{ price_safe_bound() }}, false)
{%- endmacro %}

{#-
    price_safe_split_adjust(column, operator)

    `column operator split_factor` (operator '/' for prices, '*' for volume)
    when both sides are within price_safe_bound, else null: a split-adjusted
    value of an unusable print is unknown, not an overflow error.
-#}
{% macro price_safe_split_adjust(column, operator) -%}
    {%- if operator not in ('/', '*') -%}
        {{ exceptions.raise_compiler_error(
            "price_safe_split_adjust: operator must be '/' or '*', got '"
            ~ operator ~ "'") }}
    {%- endif -%}
    (case
        when abs({{ column }}) <= {{ price_safe_bound() }}
            and split_factor between 1 / {{ price_safe_bound() }}
            and {{ price_safe_bound() }}
            then {{ column }} {{ operator }} split_factor
    end)
{%- endmacro %}
