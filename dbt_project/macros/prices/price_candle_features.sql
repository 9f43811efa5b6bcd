{#-
    price_candle_features(candles, extra_columns=[])

    Per-candle features of the price checks, from any relation or CTE name
    `candles` with columns symbol, asset_class, timeframe, ts (candle open,
    timestamptz UTC), open, high, low, close, volume and is_final (boolean;
    pass a relation with `true as is_final` when the model has none).

    extra_columns: more columns of `candles` passed through unchanged (e.g.
    ingested_at for the incremental models).

    Nothing here depends on `as_of`: the incremental model stores these rows,
    and whether a candle is still forming at `as_of` is decided when it is
    judged (price_scored_candles, from final_at).

    Calendar: the instrument's calendar (instruments.calendar, else var
    calendar_by_asset_class), its session (int_trading_sessions_enumerated,
    written by `mdq calendars refresh`) and its expected slot, by the same
    rules as the calendar checks (mdq_sessionized_candles): session_date =
    ((ts at time zone tz) + day roll-over)::date.

    Cost: one sort per (symbol, timeframe) for the lag/lead window (like a lag
    gap scan) and hash joins to the instruments and the enumerated sessions;
    no per-row percentile.

    Returns a SELECT with one row per input candle and, besides the input
    columns:
      calendar           the calendar code used
      session_date       exchange-local session date of ts (UTC date without
                         a refreshed calendar)
      session_open_at, session_close_at  the session, UTC (null outside one)
      is_early_close     the session closes early (exchange_calendars)
      final_at           when the candle is final: the session close for 1d,
                         the slot end (ts + timeframe, cut at the session
                         close: early closes) for intraday; ts + timeframe
                         without a session
      slot_ordinal       expected-slot number of the candle in its calendar
                         and timeframe (null without a session)
      expected_candles   expected candles elapsed since the previous candle:
                         slot_ordinal - previous slot_ordinal (>= 1; 1 when
                         unknown). Returns are scaled by its square root.
      is_session_start   first candle of its session_date in the series
      is_after_closure   intraday candle that starts a session following a
                         closure (overnight, weekend, holiday): its return is
                         the opening gap
      time_bucket        scale bucket of the candle: 'day' (1d and longer),
                         'open' (is_after_closure), 'first_hour' (the rest of
                         the first hour after such an open), 'rest'
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
      prev_volume_median  median volume of the 4 previous candles, in the
                         series' own unit (shares, contracts, ticks, base
                         currency): never price x volume; volumes outside
                         [0, price_safe_bound) are left out
      block_start        robust-scale block (price_scale_block_start; a year
                         for the 'open' bucket, which has one candle a session)
      is_flat_filler     volume = 0 and open = high = low = close = prev_close
                         (an outage forward-fill)
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
        coalesce(
            instruments.calendar,
            {{ mdq_default_calendar('candles.asset_class') }}
        ) as calendar
    from {{ candles }} as candles
    left join {{ ref('stg_market__instruments') }} as instruments
        on candles.symbol = instruments.symbol
),

price_dated as (
    select
        price_input.*,
        coalesce(
            (
                (price_input.ts at time zone calendars.timezone)
                + make_interval(hours => calendars.day_rollover_hours)
            )::date,
            (price_input.ts at time zone 'UTC')::date
        ) as session_date
    from price_input
    left join {{ ref('stg_market__trading_calendars') }} as calendars
        on price_input.calendar = calendars.calendar
),

price_located as (
    select
        dated.*,
        sessions.open_at as session_open_at,
        sessions.close_at as session_close_at,
        coalesce(sessions.is_early_close, false) as is_early_close,
        case
            when sessions.session_date is null then null
            when dated.timeframe = '1d' then sessions.bars_before
            when dated.ts >= sessions.open_at and dated.ts < sessions.close_at
                then sessions.bars_before + floor(
                    date_part('epoch', dated.ts - sessions.open_at)
                    / sessions.timeframe_seconds
                )::bigint
        end as slot_ordinal,
        case
            when sessions.session_date is null
                then dated.ts + {{ price_timeframe_interval('dated.timeframe') }}
            when dated.timeframe = '1d' then sessions.close_at
            else least(
                dated.ts + {{ price_timeframe_interval('dated.timeframe') }},
                sessions.close_at
            )
        end as final_at,
        -- a session that follows a closure (its open is after the previous
        -- session's last slot ends): overnight, weekend, holiday
        coalesce(
            dated.timeframe <> '1d'
            and sessions.previous_session_last_slot_at
            + make_interval(secs => sessions.timeframe_seconds)
            < sessions.open_at,
            false
        ) as follows_closure,
        (
            {{ price_within_safe_range('dated.open') }}
            and {{ price_within_safe_range('dated.high') }}
            and {{ price_within_safe_range('dated.low') }}
            and {{ price_within_safe_range('dated.close') }}
        ) as is_valid,
        -- volume usable for medians: a sum of four stays finite
        case
            when dated.volume >= 0 and dated.volume < {{ price_safe_bound() }}
                then dated.volume
        end as safe_volume
    from price_dated as dated
    left join {{ ref('int_trading_sessions_enumerated') }} as sessions
        on
            dated.calendar = sessions.calendar
            and dated.timeframe = sessions.timeframe
            and dated.session_date = sessions.session_date
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
        lag(slot_ordinal) over series as prev_slot_ordinal,
        lag(log_range, 1) over series as range_lag_1,
        lag(log_range, 2) over series as range_lag_2,
        lead(log_range, 1) over series as range_lead_1,
        lead(log_range, 2) over series as range_lead_2,
        lag(safe_volume, 1) over series as volume_lag_1,
        lag(safe_volume, 2) over series as volume_lag_2,
        lag(safe_volume, 3) over series as volume_lag_3,
        lag(safe_volume, 4) over series as volume_lag_4
    from price_logs
    window series as (partition by symbol, timeframe order by ts)
),

price_bucketed as (
    select
        *,
        (prev_session_date is null or session_date <> prev_session_date)
            as is_session_start,
        (
            follows_closure
            and prev_session_date is not null
            and session_date <> prev_session_date
        ) as is_after_closure,
        case
            when timeframe not like '%m' and timeframe not like '%h' then 'day'
            when
                follows_closure
                and prev_session_date is not null
                and session_date <> prev_session_date
                then 'open'
            when follows_closure and ts < session_open_at + interval '1 hour'
                then 'first_hour'
            else 'rest'
        end as time_bucket
    from price_lagged
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
        calendar,
        session_date,
        session_open_at,
        session_close_at,
        is_early_close,
        final_at,
        slot_ordinal,
        greatest(
            coalesce(slot_ordinal - prev_slot_ordinal, 1), 1
        )::bigint as expected_candles,
        is_session_start,
        is_after_closure,
        time_bucket,
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
        {{ price_median_of_4('volume_lag_1', 'volume_lag_2',
                             'volume_lag_3', 'volume_lag_4') }}
            as prev_volume_median,
        case
            when time_bucket = 'open' then date_trunc('year', ts, 'UTC')
            else {{ price_scale_block_start('ts', 'timeframe') }}
        end as block_start,
        {%- for column in extra_columns %}
        {{ column }},
        {%- endfor %}
        (
            volume = 0
            and open = high and high = low and low = close
            and close = prev_close
        ) is true as is_flat_filler
    from price_bucketed
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
