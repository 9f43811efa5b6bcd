{#-
    split_suspects: corporate actions seen in the prices (field case BH-12).
    Three anomaly types:
      split_suspect        an unknown jump that looks like a split
                           (price_split_suspects: near a ratio p/q with p, q
                           up to 20, named "7-for-1"; volume on the old share
                           basis not abnormal; new level persists);
                           observed_value = close ratio, expected_value = 1/k.
                           persist_candles < persist_required = provisional.
      split_date_mismatch  a split in corporate_actions whose price step
                           happens one session off its effective date
                           (price_known_split_matches); observed_value =
                           session offset, expected_value = 0. The split is
                           still neutralised at the session of the step.
      split_not_observed   a split in corporate_actions with no fitting step
                           within +-1 session although the data covers the
                           date (prices already adjusted, or a wrong entry);
                           observed_value = best log distance, expected_value
                           = split_log_tolerance. Nothing is adjusted.
-#}
{% test split_suspects(model, lookback=none, is_final_column='is_final', scored_model=none) %}

with

{{ price_check_ctes(model, lookback, is_final_column, scored_model) }},

suspect_rows as (
    select
        'split_suspect'::text as anomaly_type,
        {{ mdq_setting('mdq_split_suspect_severity') }}::text as severity,
        symbol,
        asset_class,
        timeframe,
        ts as ts_start,
        ts as ts_end,
        close_ratio as observed_value,
        expected_ratio as expected_value,
        format(
            'close %s -> %s (ratio %s, near %s: a %s split) with %s %sx the previous 4 '
            'candles (%sx on the old share basis); new level held for %s of %s candles%s',
            prev_close,
            close,
            {{ price_round('close_ratio', 3) }},
            {{ price_round('expected_ratio', 3) }},
            split_label,
            {{ price_volume_kind('asset_class') }},
            coalesce({{ price_round('volume_ratio', 2) }}::text, 'n/a'),
            coalesce({{ price_round('basis_volume_ratio', 2) }}::text, 'n/a'),
            persist_candles,
            persist_required,
            case
                when persist_candles < persist_required
                    then ' (provisional: the data ends sooner)'
                else ''
            end
        ) as failure_reason,
        split_k,
        split_label,
        persist_candles::integer as persist_candles
    from price_suspects
),

known_rows as (
    select
        case
            when match_status = 'matched' then 'split_date_mismatch'
            else 'split_not_observed'
        end::text as anomaly_type,
        (case
            when match_status = 'matched'
                then {{ mdq_setting('mdq_split_date_mismatch_severity') }}
            else {{ mdq_setting('mdq_split_not_observed_severity') }}
        end)::text as severity,
        symbol,
        asset_class,
        timeframe,
        coalesce(
            jump_ts, (effective_date::timestamp at time zone 'UTC')
        ) as ts_start,
        coalesce(
            jump_ts, (effective_date::timestamp at time zone 'UTC')
        ) as ts_end,
        (case
            when match_status = 'matched' then session_offset
            else split_fit
        end)::double precision as observed_value,
        (case
            when match_status = 'matched' then 0
            else {{ mdq_setting('mdq_split_log_tolerance', cast='double precision') }}
        end)::double precision as expected_value,
        case
            when match_status = 'matched'
                then format(
                    'split %s effective %s: the price step happens %s session(s) %s',
                    split_ratio, effective_date, abs(session_offset),
                    case when session_offset > 0 then 'later' else 'earlier' end
                )
            else format(
                'split %s effective %s: no price step near 1/%s within 1 session '
                '(best log distance %s); prices not adjusted',
                split_ratio, effective_date, split_ratio,
                coalesce({{ price_round('split_fit', 3) }}::text, 'n/a')
            )
        end as failure_reason,
        split_ratio as split_k,
        null::text as split_label,
        null::integer as persist_candles
    from price_split_matches
    where match_status = 'not_observed' or session_offset <> 0
),

final as (
    select
        'split_suspects'::text as check_name,
        anomaly_type,
        severity,
        symbol,
        asset_class,
        timeframe,
        ts_start,
        ts_end,
        observed_value::double precision as observed_value,
        expected_value::double precision as expected_value,
        failure_reason,
        split_k,
        split_label,
        persist_candles
    from suspect_rows
    union all
    select
        'split_suspects'::text as check_name,
        anomaly_type,
        severity,
        symbol,
        asset_class,
        timeframe,
        ts_start,
        ts_end,
        observed_value,
        expected_value,
        failure_reason,
        split_k,
        split_label,
        persist_candles
    from known_rows
)

select * from final
-- incremental run: only findings inside the re-read range (price_check_ctes)
where true {{ mdq_check_scope_findings('final') }}

{% endtest %}
