{#-
    price_known_split_matches(features)

    Matches every split in corporate_actions (stg_market__corporate_actions,
    ratio = new shares per old share) to the session where the price step
    actually happens, per timeframe of the symbol.

    Rule: among the session-start candles of the series whose session_date
    lies within 10 calendar days of the effective date, number the sessions;
    session 0 is the first on or after the effective date. The candidates
    are sessions -1, 0 and +1 (the +-1 session tolerance of field case
    BH-12). A candidate fits when ln(open / prev_close) or
    ln(close / prev_close) is within `split_log_tolerance` of -ln(ratio);
    the best fit wins.

    Returns one row per (symbol, timeframe, effective_date) with data on both
    sides of the effective date: split_ratio, jump_ts (null when no candidate
    fits), session_offset (jump session minus session 0), split_fit (log
    distance), match_status 'matched' or 'not_observed'.
-#}
{% macro price_known_split_matches(features) %}
with

known_splits as (
    select
        symbol,
        effective_date,
        split_ratio
    from {{ ref('stg_market__corporate_actions') }}
    where action_type = 'split' and split_ratio > 0
),

split_sessions as (
    select
        splits.symbol,
        splits.effective_date,
        splits.split_ratio,
        features.asset_class,
        features.timeframe,
        features.ts,
        features.session_date,
        least(
            abs(features.log_return + ln(splits.split_ratio)),
            abs(features.log_open_gap + ln(splits.split_ratio))
        ) as split_fit,
        row_number() over (
            partition by splits.symbol, splits.effective_date, features.timeframe
            order by features.ts
        ) as session_number
    from known_splits as splits
    inner join {{ features }} as features
        on
            splits.symbol = features.symbol
            and features.is_session_start
            and features.session_date
            between splits.effective_date - 10 and splits.effective_date + 10
),

split_anchors as (
    select
        symbol,
        effective_date,
        timeframe,
        min(session_number) filter (
            where session_date >= effective_date
        ) as anchor_number,
        bool_or(session_date < effective_date) as has_before
    from split_sessions
    group by symbol, effective_date, timeframe
),

split_candidates as (
    select
        sessions.*,
        sessions.session_number - anchors.anchor_number as session_offset,
        sessions.split_fit
        <= {{ mdq_setting('mdq_split_log_tolerance', 'sessions.asset_class',
                          'sessions.timeframe', cast='double precision') }} as is_fit
    from split_sessions as sessions
    inner join split_anchors as anchors
        on
            sessions.symbol = anchors.symbol
            and sessions.effective_date = anchors.effective_date
            and sessions.timeframe = anchors.timeframe
    where
        anchors.has_before
        and anchors.anchor_number is not null
        and sessions.session_number
        between anchors.anchor_number - 1 and anchors.anchor_number + 1
),

split_ranked as (
    select
        *,
        row_number() over (
            partition by symbol, effective_date, timeframe
            order by
                coalesce(is_fit, false) desc,
                split_fit asc nulls last,
                abs(session_offset) asc
        ) as fit_rank
    from split_candidates
),

final as (
    select
        symbol,
        asset_class,
        timeframe,
        effective_date,
        split_ratio,
        case when is_fit then ts end as jump_ts,
        case when is_fit then session_offset end as session_offset,
        split_fit,
        case when is_fit then 'matched' else 'not_observed' end as match_status
    from split_ranked
    where fit_rank = 1
)

select * from final
{% endmacro %}
