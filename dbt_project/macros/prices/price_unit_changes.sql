{#-
    price_unit_changes(scored)

    Quote-unit switches (pence <-> pounds, cents <-> dollars, a 1000x
    rescaling): a step of the whole price level by a factor near 100 or 1000,
    up or down, that persists. From `scored` (price_scored_candles).

    A unit step is a final, valid candle (any asset class, no known split)
    whose ln(open / prev_close) or ln(close / prev_close) lies within
    `mdq_unit_change_log_tolerance` of +-ln(100) or +-ln(1000). It is a unit
    change when:
      1. it does not undo a unit step fewer than `mdq_unit_change_persist_candles`
         candles before it (that is the recovery of a bad print), and
      2. the new level persists: at least `mdq_unit_change_persist_candles`
         candles follow before the next unit step, or, when the data ends
         sooner without another step, at least one (provisional).
    A step the next candle undoes is therefore never a unit change: it is a
    bad print, reported by price_outliers.

    Returns one row per unit change: symbol, asset_class, timeframe, ts (the
    first candle on the new unit), prev_close, close, close_ratio,
    unit_factor (100, 1000, 0.01 or 0.001: new price / old price),
    unit_fit (log distance), candles_after (candles after ts on the new
    unit, up to the next unit step or the end of the data), persist_required,
    next_step_ts.
-#}
{% macro price_unit_changes(scored) %}
with

unit_factors as (
    select factor::double precision as unit_factor
    from unnest(array[100, 1000, 0.01, 0.001]) as factors (factor)
),

-- the few candidate steps, materialised before any join (the scored
-- relation may be a view)
unit_candidates as materialized (
    select
        scored.symbol,
        scored.asset_class,
        scored.timeframe,
        scored.ts,
        scored.prev_close,
        scored.close,
        scored.log_return,
        scored.log_open_gap
    from {{ scored }} as scored
    where
        scored.is_valid
        and not scored.is_forming
        and scored.split_log_ratio is null
        and greatest(abs(scored.log_return), abs(scored.log_open_gap)) > 3.5
),

unit_fitted as (
    select
        candidates.*,
        factors.unit_factor,
        least(
            abs(candidates.log_return - ln(factors.unit_factor)),
            abs(candidates.log_open_gap - ln(factors.unit_factor))
        ) as unit_fit,
        {{ mdq_setting('mdq_unit_change_log_tolerance', 'candidates.asset_class',
                       'candidates.timeframe', cast='double precision') }} as tolerance,
        {{ mdq_setting('mdq_unit_change_persist_candles', 'candidates.asset_class',
                       'candidates.timeframe', cast='double precision') }} as persist_required
    from unit_candidates as candidates
    cross join unit_factors as factors
),

unit_steps as materialized (
    select
        *,
        lead(ts) over series as next_step_ts,
        lag(ts) over series as previous_step_ts,
        lag(unit_factor) over series as previous_unit_factor
    from unit_fitted
    where unit_fit <= tolerance
    window series as (partition by symbol, timeframe order by ts)
),

unit_counted as (
    select
        steps.*,
        after_step.candles_after,
        before_step.candles_since_previous
    from unit_steps as steps
    left join lateral (
        select count(*) as candles_after
        from {{ scored }} as later
        where
            later.symbol = steps.symbol
            and later.timeframe = steps.timeframe
            and later.ts > steps.ts
            and (steps.next_step_ts is null or later.ts < steps.next_step_ts)
    ) as after_step on true
    left join lateral (
        select count(*) as candles_since_previous
        from {{ scored }} as earlier
        where
            earlier.symbol = steps.symbol
            and earlier.timeframe = steps.timeframe
            and earlier.ts >= steps.previous_step_ts
            and earlier.ts < steps.ts
    ) as before_step on steps.previous_step_ts is not null
),

final as (
    select
        symbol,
        asset_class,
        timeframe,
        ts,
        prev_close,
        close,
        close / prev_close as close_ratio,
        unit_factor,
        unit_fit,
        candles_after::integer as candles_after,
        persist_required::integer as persist_required,
        next_step_ts
    from unit_counted
    where
        -- not the recovery of a step shortly before it
        not coalesce(
            abs(ln(previous_unit_factor) + ln(unit_factor)) < 0.5
            and candles_since_previous < persist_required,
            false
        )
        and (
            candles_after >= persist_required
            or (next_step_ts is null and candles_after >= 1)
        )
)

select * from final
{% endmacro %}
