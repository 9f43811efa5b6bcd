-- grain: one row per symbol, timeframe, ts (candle open time, UTC), clean candles only
{{
    config(
        materialized='incremental',
        incremental_strategy='mdq_scope',
        unique_key=['symbol', 'timeframe', 'ts'],
        meta={'mdq_rebuild_unless_scoped': true, 'mdq_scope_column': 'ts'},
        pre_hook="{{ price_work_mem() }}",
        indexes=[
            {'columns': ['symbol', 'timeframe', 'ts'], 'unique': true},
        ],
    )
}}
{#- the run's scope (price_scope_rows: none on a full build) -#}
{%- set scope_rows = price_scope_rows() %}

with

-- not materialized: read several times, each read by its own filters and
-- indexes (a materialized CTE would copy every candle of the model)
features as not materialized (
    select * from {{ ref('int_candle_features_computed') }}
),

split_matches as (
    select * from {{ ref('int_candle_splits_matched') }}
),

scales as (
    select * from {{ ref('int_candle_scales_estimated') }}
),

corporate_actions as (
    select * from {{ ref('stg_market__corporate_actions') }}
),

-- known cash dividends at the first candle of their ex-date session: the
-- factor (prev_close - dividend) / prev_close the earlier prices are
-- multiplied by in the total-return series (the Adj Close convention)
dividend_events as (
    select
        features.symbol,
        features.timeframe,
        features.ts as jump_ts,
        -ln(
            (features.prev_close - dividends.dividend_cash) / features.prev_close
        ) as dividend_log_ratio
    from features
    inner join (
        select
            symbol,
            effective_date,
            sum(cash_amount) as dividend_cash
        from corporate_actions
        where action_type = 'dividend' and cash_amount > 0
        group by symbol, effective_date
    ) as dividends
        on
            features.symbol = dividends.symbol
            and features.session_date = dividends.effective_date
            and features.is_session_start
    where features.prev_close > dividends.dividend_cash
),

-- candles before each ex-date are scaled by the dividend factors of every
-- later ex-date
dividend_segments as (
    select
        symbol,
        timeframe,
        lag(jump_ts) over series as segment_from,
        jump_ts as segment_to,
        sum(dividend_log_ratio) over (
            partition by symbol, timeframe
            order by jump_ts desc
            rows between unbounded preceding and current row
        ) as later_log_ratio
    from dividend_events
    window series as (partition by symbol, timeframe order by jump_ts)
),

matched_splits as (
    select
        symbol,
        timeframe,
        jump_ts,
        ln(split_ratio) as split_log_ratio
    from split_matches
    where match_status = 'matched'
),

-- candles in [segment_from, segment_to) are divided by the product of the
-- ratios of every matched split at or after segment_to (backward adjustment:
-- the latest prices stay as traded)
split_segments as (
    select
        symbol,
        timeframe,
        lag(jump_ts) over series as segment_from,
        jump_ts as segment_to,
        sum(split_log_ratio) over (
            partition by symbol, timeframe
            order by jump_ts desc
            rows between unbounded preceding and current row
        ) as later_log_ratio
    from matched_splits
    window series as (partition by symbol, timeframe order by jump_ts)
),

{% if is_incremental() %}

series as (
    select distinct
        symbol,
        timeframe
    from scales
),

series_split_factor as (
    select
        series.symbol,
        series.timeframe,
        exp(coalesce(sum(matched_splits.split_log_ratio), 0))
        * exp(coalesce((
            select sum(dividends.dividend_log_ratio)
            from dividend_events as dividends
            where
                dividends.symbol = series.symbol
                and dividends.timeframe = series.timeframe
        ), 0)) as split_factor
    from series
    left join matched_splits
        on
            series.symbol = matched_splits.symbol
            and series.timeframe = matched_splits.timeframe
    group by series.symbol, series.timeframe
),

-- the split x dividend factor stored on each series' earliest candle (one
-- index probe per series); a series whose corporate actions changed is
-- rebuilt in full
stored_split_factor as (
    select
        series_split_factor.symbol,
        series_split_factor.timeframe,
        series_split_factor.split_factor,
        earliest.split_factor * earliest.dividend_factor as stored_split_factor
    from series_split_factor
    left join lateral (
        select
            stored.split_factor,
            stored.dividend_factor
        from {{ this }} as stored
        where
            stored.symbol = series_split_factor.symbol
            and stored.timeframe = series_split_factor.timeframe
        order by stored.ts
        limit 1
    ) as earliest on true
),

-- candles after the newest stored one (e.g. still forming at the last run,
-- final now): recomputed although nothing new was ingested
unfinished_first as (
    select
        series.symbol,
        series.timeframe,
        min(features.ts) as first_ts
    from series
    left join lateral (
        select max(stored.ts) as stored_until
        from {{ this }} as stored
        where
            stored.symbol = series.symbol
            and stored.timeframe = series.timeframe
    ) as newest on true
    inner join features
        on
            series.symbol = features.symbol
            and series.timeframe = features.timeframe
            and features.ts > coalesce(newest.stored_until, '-infinity')
    group by series.symbol, series.timeframe
),

-- an incremental run with a scope (price_scope.sql): each changed series is
-- rewritten from the start of the scale block holding its read_from
-- (price_rewrite_from: that block's scale, and so the verdict on its earlier
-- candles, moved)
scope_first as (
    select
        price_scope.symbol,
        price_scope.timeframe,
        {{ price_rewrite_from(model.name, 'price_scope', 'price_scope') }}
            as recompute_from
    from {{ price_scope_values(scope_rows) }}
),

rebuilt_series as (
    select
        symbol,
        timeframe,
        '-infinity'::timestamptz as recompute_from
    from stored_split_factor
    where
        stored_split_factor is null
        or abs(split_factor / stored_split_factor - 1) > 1e-9
),

recompute_reasons as (
    select
        symbol,
        timeframe,
        recompute_from
    from scope_first
    union all
    select
        symbol,
        timeframe,
        first_ts as recompute_from
    from unfinished_first
    union all
    select
        symbol,
        timeframe,
        recompute_from
    from rebuilt_series
),

changed_series as (
    select
        symbol,
        timeframe,
        min(recompute_from) as recompute_from
    from recompute_reasons
    group by symbol, timeframe
),

-- the 'open' candles of a changed series before that, from the year block
-- of its read_from on (their year block's scale moved), by the partial index
-- of that bucket (price_open_bucket_index); rewritten by key
open_candles as (
    select features.*
    from features
    inner join {{ price_scope_values(scope_rows) }}
        on
            features.symbol = price_scope.symbol
            and features.timeframe = price_scope.timeframe
            and features.ts >= date_trunc('year', price_scope.read_from, 'UTC')
    inner join changed_series
        on
            features.symbol = changed_series.symbol
            and features.timeframe = changed_series.timeframe
            and features.ts < changed_series.recompute_from
    where features.time_bucket = 'open'
),

input_features as (
    select features.*
    from features
    inner join changed_series
        on
            features.symbol = changed_series.symbol
            and features.timeframe = changed_series.timeframe
            and features.ts >= changed_series.recompute_from
    union all
    select * from open_candles
),

{% else %}

input_features as (
    select * from features
),

{% endif %}

scored as (
    {{ price_scored_candles('input_features', 'scales', 'split_matches') }}
),

adjusted as (
    select
        candles.*,
        exp(coalesce(segments.later_log_ratio, 0)) as split_factor,
        exp(-coalesce(dividends.later_log_ratio, 0)) as dividend_factor
    from scored as candles
    left join split_segments as segments
        on
            candles.symbol = segments.symbol
            and candles.timeframe = segments.timeframe
            and candles.ts < segments.segment_to
            and (
                segments.segment_from is null
                or candles.ts >= segments.segment_from
            )
    left join dividend_segments as dividends
        on
            candles.symbol = dividends.symbol
            and candles.timeframe = dividends.timeframe
            and candles.ts < dividends.segment_to
            and (
                dividends.segment_from is null
                or candles.ts >= dividends.segment_from
            )
),

final as (
    select
        -- keys
        symbol,
        asset_class,
        timeframe,
        ts,
        -- prices as traded, quote currency
        open,
        high,
        low,
        close,
        volume,
        -- split-adjusted to the latest share basis
        split_factor,
        {{ price_safe_split_adjust('open', '/') }} as adjusted_open,
        {{ price_safe_split_adjust('high', '/') }} as adjusted_high,
        {{ price_safe_split_adjust('low', '/') }} as adjusted_low,
        {{ price_safe_split_adjust('close', '/') }} as adjusted_close,
        {{ price_safe_split_adjust('volume', '*') }} as adjusted_volume,
        -- total return: split-adjusted and scaled by every later ex-dividend
        -- factor (prev_close - dividend) / prev_close, so that its log
        -- returns are the total log returns (dividends reinvested)
        dividend_factor,
        {{ price_safe_split_adjust('close', '/') }} * dividend_factor
            as total_return_close,
        -- returns
        log_return + coalesce(split_log_ratio, 0) as log_return,
        adjusted_log_return as total_log_return,
        return_z as return_robust_z,
        range_ratio,
        -- flags
        split_log_ratio is not null as is_split_session,
        dividend_cash is not null as is_ex_dividend,
        dividend_cash,
        is_outlier_move,
        is_wick_outlier,
        -- lineage
        ingested_at
    from adjusted
    where is_valid and not is_flat_filler and not is_forming
)

select * from final
