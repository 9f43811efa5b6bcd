{#-
    price_split_suspects(scored)

    Unknown splits: candles of `scored` (price_scored_candles) that look like
    a split rather than a bad tick or a real move. A candle is a suspect when
    all hold:
      1. its asset class is in `mdq_split_asset_classes` and no known split was
         matched to it, it starts a session, it is an outlier move
         (is_outlier_move), and it does not undo the previous candle's
         outlier move (that is the recovery from a bad print);
      2. ln(open / prev_close) or ln(close / prev_close) lies within
         `mdq_split_log_tolerance` of -ln(k) for some k = p/q, p and q coprime
         integers from 1 to `mdq_split_max_term` (20: 7-for-1, 20-for-1,
         3-for-2, 1-for-3, 1-for-8 ...). Among those, the nearest wins, with
         a small preference for simple ratios: the score is the log distance
         + `mdq_split_simplicity_weight` x ln(p q) (rationals with terms up to
         20 lie as close as 0.026 apart in log near 3/2, and the day's own move
         is of that size: 3/2 must beat 20/13). The reason names it "p-for-q";
      3. its volume on the old share basis (volume / k, in the series' own
         unit, never price x volume) is below `mdq_split_max_volume_ratio` x
         the median of the 4 previous candles (or unknown). A k-for-1 split
         multiplies the shares traded by about k and leaves the value traded
         alone: on the real AAPL splits of 2000-06-21 / 2005-02-28 and MSFT
         2003-02-18 this ratio is about 0.8 / 0.3 / 0.3, while the real AAPL
         crash of 2000-09-29 (-52 %, a close ratio of 0.48, near 1/2) traded
         about 18x its usual shares, 9x on the old basis;
      4. the new level persists: the jump candle and the next
         `mdq_split_persist_candles` candles of the series (sessions for 1d) all
         close nearer prev_close / k than prev_close (in log). When the data
         ends sooner, the candles that exist decide (at least the jump candle
         itself) and persist_candles < split_persist_candles marks the finding
         provisional; a later run re-judges it.

    Returns one row per suspect: symbol, asset_class, timeframe, ts,
    prev_close, close, close_ratio, split_k, split_label ('7-for-1'),
    expected_ratio (1/k), split_fit, volume_ratio (raw), basis_volume_ratio
    (volume_ratio / k), persist_candles, persist_required.

    Raises a compiler error when var mdq_split_max_term is not an integer
    from 2 to 100.
-#}
{% macro price_split_suspects(scored) %}
{%- set max_term = var('mdq_split_max_term', 20) -%}
{%- set classes = mdq_quote_list(
    var('mdq_split_asset_classes', ['stock']), 'mdq_split_asset_classes') -%}
{%- if max_term is boolean or max_term is not number or max_term != max_term | int
    or max_term < 2 or max_term > 100 -%}
    {{ exceptions.raise_compiler_error(
        "mdq: var 'mdq_split_max_term' must be an integer from 2 to 100, got "
        ~ (max_term | string)[:80]) }}
{%- endif -%}
with

-- every ratio p/q in lowest terms, 1 <= p, q <= max_term, p <> q
suspect_ratios as (
    select
        new_shares.p,
        old_shares.q,
        new_shares.p::double precision / old_shares.q as split_k,
        new_shares.p || '-for-' || old_shares.q as split_label
    from generate_series(1, {{ max_term | int }}) as new_shares (p)
    cross join generate_series(1, {{ max_term | int }}) as old_shares (q)
    where
        gcd(new_shares.p, old_shares.q) = 1
        and new_shares.p <> old_shares.q
),

-- the few candidate moves, materialised before any join so that the
-- planner joins small sets (the scored relation may be a view)
suspect_candidates as materialized (
    select
        scored.symbol,
        scored.asset_class,
        scored.timeframe,
        scored.ts,
        scored.prev_ts,
        scored.prev_close,
        scored.close,
        scored.log_return,
        scored.log_open_gap,
        scored.volume_ratio
    from {{ scored }} as scored
    where
        scored.is_outlier_move
        and scored.is_session_start
        and scored.split_log_ratio is null
        and scored.asset_class in (
            {%- for c in classes %}{{ mdq_quote_text(c, 'mdq_split_asset_classes') }}{{ ',' if not loop.last }}{% endfor -%}
        )
),

suspect_prior_outliers as materialized (
    select
        scored.symbol,
        scored.timeframe,
        scored.ts,
        scored.adjusted_log_return
    from {{ scored }} as scored
    where scored.is_outlier_move
),

suspect_moves as (
    select
        candidates.*,
        {{ mdq_setting('mdq_split_log_tolerance', 'candidates.asset_class',
                             'candidates.timeframe', cast='double precision') }} as tolerance,
        {{ mdq_setting('mdq_split_max_volume_ratio',
                             'candidates.asset_class', 'candidates.timeframe', cast='double precision') }}
            as max_volume_ratio,
        {{ mdq_setting('mdq_split_simplicity_weight',
                             'candidates.asset_class', 'candidates.timeframe', cast='double precision') }}
            as simplicity_weight,
        {{ mdq_setting('mdq_split_persist_candles', 'candidates.asset_class',
                             'candidates.timeframe', cast='double precision') }} as persist_required
    from suspect_candidates as candidates
    left join suspect_prior_outliers as prior
        on
            candidates.symbol = prior.symbol
            and candidates.timeframe = prior.timeframe
            and candidates.prev_ts = prior.ts
            -- a move that undoes the previous outlier is its recovery
            and abs(prior.adjusted_log_return + candidates.log_return)
            <= 0.5 * abs(prior.adjusted_log_return)
    where prior.ts is null
),

suspect_distances as (
    select
        moves.*,
        ratios.split_k,
        ratios.split_label,
        ratios.p,
        ratios.q,
        least(
            abs(moves.log_return + ln(ratios.split_k)),
            abs(moves.log_open_gap + ln(ratios.split_k))
        ) as split_fit
    from suspect_moves as moves
    cross join suspect_ratios as ratios
),

suspect_fits as (
    select
        *,
        row_number() over (
            partition by symbol, timeframe, ts
            order by split_fit + simplicity_weight * ln(p * q), p + q
        ) as fit_rank
    from suspect_distances
    where split_fit <= tolerance
),

suspect_shapes as materialized (
    select
        *,
        volume_ratio / split_k as basis_volume_ratio
    from suspect_fits
    where
        fit_rank = 1
        and (
            volume_ratio is null
            or volume_ratio / split_k < max_volume_ratio
        )
),

suspect_followers as (
    select
        shapes.symbol,
        shapes.timeframe,
        shapes.ts,
        later.close,
        row_number() over (
            partition by shapes.symbol, shapes.timeframe, shapes.ts
            order by later.ts
        ) as follower_number
    from suspect_shapes as shapes
    inner join {{ scored }} as later
        on
            shapes.symbol = later.symbol
            and shapes.timeframe = later.timeframe
            and later.ts > shapes.ts
            and later.ts <= shapes.ts
            + (shapes.persist_required * 7 + 7)
            * {{ price_timeframe_interval('shapes.timeframe') }}
            + interval '4 days'
),

suspect_persistence as (
    select
        shapes.symbol,
        shapes.timeframe,
        shapes.ts,
        count(followers.close) as persist_candles,
        -- the jump candle and every follower sit nearer the new level:
        -- ln(close / prev_close) beyond half of -ln(k)
        bool_and(
            abs(ln(followers.close / shapes.prev_close) + ln(shapes.split_k))
            < abs(ln(followers.close / shapes.prev_close))
        ) filter (where followers.close > 0) as followers_hold,
        abs(ln(shapes.close / shapes.prev_close) + ln(shapes.split_k))
        < abs(ln(shapes.close / shapes.prev_close)) as jump_holds
    from suspect_shapes as shapes
    left join suspect_followers as followers
        on
            shapes.symbol = followers.symbol
            and shapes.timeframe = followers.timeframe
            and shapes.ts = followers.ts
            and followers.follower_number <= shapes.persist_required
    group by
        shapes.symbol, shapes.timeframe, shapes.ts, shapes.close,
        shapes.prev_close, shapes.split_k
),

final as (
    select
        shapes.symbol,
        shapes.asset_class,
        shapes.timeframe,
        shapes.ts,
        shapes.prev_close,
        shapes.close,
        shapes.close / shapes.prev_close as close_ratio,
        shapes.split_k,
        shapes.split_label,
        1 / shapes.split_k as expected_ratio,
        shapes.split_fit,
        shapes.volume_ratio,
        shapes.basis_volume_ratio,
        persistence.persist_candles,
        shapes.persist_required
    from suspect_shapes as shapes
    inner join suspect_persistence as persistence
        on
            shapes.symbol = persistence.symbol
            and shapes.timeframe = persistence.timeframe
            and shapes.ts = persistence.ts
    where
        persistence.jump_holds
        and coalesce(persistence.followers_hold, true)
)

select * from final
{% endmacro %}
