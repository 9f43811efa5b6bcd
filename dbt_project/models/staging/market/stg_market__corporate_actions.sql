-- grain: one row per symbol, action_type, effective_date
with

source as (
    select * from {{ source('market', 'corporate_actions') }}
),

final as (
    select
        -- keys
        corporate_action_id::bigint as corporate_action_id,
        symbol::text as symbol,
        action_type::text as action_type,
        -- dates (exchange-local session date of the ex-date)
        effective_date::date as effective_date,
        -- amounts
        ratio::double precision as split_ratio,
        cash_amount::double precision as cash_amount,
        currency::text as currency
    from source
)

select * from final
