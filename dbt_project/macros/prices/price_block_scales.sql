{#-
    price_block_scales(features)

    Robust location and scale of log returns and of log ranges per
    (symbol, timeframe, time_bucket, block_start), from the output of
    price_candle_features (relation or CTE name `features`).

    Session-aware: each time bucket has its own scale (price_candle_features:
    'open' = the opening gap after a closure, judged against the series' own
    overnight-gap scale over a year; 'first_hour' = the rest of the first hour
    after an open; 'rest'; 'day' for daily candles). A return across missing
    candles enters the estimate divided by the square root of the expected
    candles elapsed (a per-candle scale, like the one it is judged against).

    Estimator, stated plainly: for each calendar block (a day of 1m candles,
    a month of 1h candles, a year of 1d candles: var
    price_checks_scale_blocks) the median and the MAD (median absolute
    deviation about that median) of the block's own log returns and log
    ranges, by two grouped percentile_cont passes (one sort of the block per
    pass, no per-row window). The block includes the candle being judged,
    which a 50 %-breakdown estimator tolerates. It is therefore not a
    trailing rolling window: it is a block estimate, and a block with fewer
    than `scale_min_candles` returns (the warm-up, or the still-filling
    latest block) uses the previous block's estimate instead (`reference_*`).
    Scale = 1.4826 x MAD, the normal-consistent sigma (Rousseeuw & Croux
    1993); it is null when no block has enough returns.

    Returns one row per (symbol, timeframe, time_bucket, block_start) with
    return_candles, return_median, return_mad, range_median, range_mad and
    reference_return_median, reference_return_scale, reference_range_median,
    reference_range_scale, reference_block_start.
-#}
{% macro price_block_scales(features) %}
with

scale_input as (
    select
        symbol,
        asset_class,
        timeframe,
        time_bucket,
        block_start,
        log_return / sqrt(expected_candles) as log_return,
        log_range
    from {{ features }}
    where is_valid
),

scale_medians as (
    select
        symbol,
        timeframe,
        time_bucket,
        block_start,
        min(asset_class) as asset_class,
        count(log_return) as return_candles,
        count(log_range) as range_candles,
        percentile_cont(0.5) within group (order by log_return)
            as return_median,
        percentile_cont(0.5) within group (order by log_range)
            as range_median
    from scale_input
    group by symbol, timeframe, time_bucket, block_start
),

scale_deviations as (
    select
        features.symbol,
        features.timeframe,
        features.time_bucket,
        features.block_start,
        percentile_cont(0.5) within group (
            order by abs(features.log_return - medians.return_median)
        ) as return_mad,
        percentile_cont(0.5) within group (
            order by abs(features.log_range - medians.range_median)
        ) as range_mad
    from scale_input as features
    inner join scale_medians as medians
        on
            features.symbol = medians.symbol
            and features.timeframe = medians.timeframe
            and features.time_bucket = medians.time_bucket
            and features.block_start = medians.block_start
    group by
        features.symbol, features.timeframe, features.time_bucket,
        features.block_start
),

scale_blocks as (
    select
        medians.symbol,
        medians.asset_class,
        medians.timeframe,
        medians.time_bucket,
        medians.block_start,
        medians.return_candles,
        medians.range_candles,
        medians.return_median,
        deviations.return_mad,
        medians.range_median,
        deviations.range_mad,
        medians.return_candles
        >= {{ mdq_setting('mdq_scale_min_candles', 'medians.asset_class',
                          'medians.timeframe', cast='double precision') }} as is_enough
    from scale_medians as medians
    inner join scale_deviations as deviations
        on
            medians.symbol = deviations.symbol
            and medians.timeframe = deviations.timeframe
            and medians.time_bucket = deviations.time_bucket
            and medians.block_start = deviations.block_start
),

scale_with_previous as (
    select
        *,
        lag(block_start) over series as previous_block_start,
        lag(is_enough) over series as previous_is_enough,
        lag(return_median) over series as previous_return_median,
        lag(return_mad) over series as previous_return_mad,
        lag(range_median) over series as previous_range_median,
        lag(range_mad) over series as previous_range_mad
    from scale_blocks
    window series as (
        partition by symbol, timeframe, time_bucket order by block_start
    )
),

final as (
    select
        symbol,
        timeframe,
        time_bucket,
        block_start,
        return_candles,
        return_median,
        return_mad,
        range_median,
        range_mad,
        case
            when is_enough then block_start
            when previous_is_enough then previous_block_start
        end as reference_block_start,
        case
            when is_enough then return_median
            when previous_is_enough then previous_return_median
        end as reference_return_median,
        1.4826 * case
            when is_enough then return_mad
            when previous_is_enough then previous_return_mad
        end as reference_return_scale,
        -- ranges: the block itself as soon as it has 3 candles (a wick needs
        -- a reference even in short series), else the previous block
        case
            when range_candles >= 3 then range_median
            else previous_range_median
        end as reference_range_median,
        1.4826 * case
            when range_candles >= 3 then range_mad
            else previous_range_mad
        end as reference_range_scale
    from scale_with_previous
)

select * from final
{% endmacro %}
