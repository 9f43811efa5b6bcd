-- grain: one row per symbol, timeframe: the label convention the series was
-- loaded in (its intraday grid is what the calendar checks judge it on)
with

source as (
    select * from {{ source('market', 'series_labels') }}
),

final as (
    select
        -- keys
        symbol::text as symbol,
        timeframe::text as timeframe,
        -- convention
        daily_label::text as daily_label,
        intraday_grid::text as intraday_grid,
        intraday_label::text as intraday_label,
        decided_by::text as decided_by,
        -- timestamps
        updated_at::timestamptz as updated_at
    from source
)

select * from final
