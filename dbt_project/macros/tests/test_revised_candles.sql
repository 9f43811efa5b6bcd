{% test revised_candles(
    model,
    severity_var='mdq_revised_candle_severity'
) %}
{#-
    revised_candles: final candles a later backfill changed (a vendor's
    correction), one row per candle not restored since: anomaly_type
    'revised_candle', severity from var `severity_var` (warn) keyed
    '<asset_class>:<timeframe>'. The previous values are in candle_revisions
    (`mdq revisions list`, `mdq revisions restore ID`).

    ts_start/ts_end: the candle's ts. observed_value: the relative change of
    the close, |new / old - 1|; expected_value: 0. Context: revision_id (the
    latest), revisions (how many), execution_id, old and new OHLCV.

    Args:
        model: the revisions model (stg_market__candle_revisions).
-#}
with

revisions as (
    select * from {{ model }}
),

open_revisions as (
    select
        revisions.*,
        count(*) over (
            partition by revisions.symbol, revisions.timeframe, revisions.ts
        ) as revision_count,
        row_number() over (
            partition by revisions.symbol, revisions.timeframe, revisions.ts
            order by revisions.revised_at desc, revisions.revision_id desc
        ) as recency
    from revisions
    where revisions.restored_at is null
),

latest as (
    select *
    from open_revisions
    where recency = 1
),

final as (
    select
        'revised_candles'::text as check_name,
        'revised_candle'::text as anomaly_type,
        {{ mdq_setting(severity_var, "coalesce(asset_class, '*')", 'timeframe') }}::text
            as severity,
        symbol,
        asset_class,
        timeframe,
        ts as ts_start,
        ts as ts_end,
        abs(new_close / nullif(close, 0) - 1)::double precision as observed_value,
        0::double precision as expected_value,
        (
            timeframe || ' candle at '
            || to_char(ts at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            || ' revised by backfill ' || coalesce(execution_id::text, '(restore)')
            || ': close ' || close || ' -> ' || new_close
            || ', volume ' || volume || ' -> ' || new_volume
            || ' (revision ' || revision_id || ', ' || revision_count
            || ' open revision(s)); previous values in candle_revisions'
        )::text as failure_reason,
        revision_id,
        revision_count,
        execution_id,
        open,
        high,
        low,
        close,
        volume,
        new_open,
        new_high,
        new_low,
        new_close,
        new_volume
    from latest
)

select * from final
{% endtest %}
