{#-
    price_outliers: close-to-close moves judged against the series' own
    volatility. The log return (a known split in corporate_actions
    neutralised, price_known_split_matches) is an outlier when its robust z
    (price_block_scales: block median and 1.4826 x MAD) reaches outlier_z
    AND the simple move reaches outlier_min_move (the seed's 20 % kept as a
    floor; with too little history the floor alone decides). Scales are
    session-aware (price_block_scales): a return across missing candles is
    divided by the square root of the expected candles elapsed, the opening
    gap after a closure is judged against the series' own overnight-gap scale
    (and the daily floor), the first hour against first hours. Split suspects
    (price_split_suspects), unit changes (price_unit_changes), known
    dividends and still-forming candles (before the session close or slot
    end, per the calendar) are not outliers.
    A move the next candle undoes is a bad print: outlier_severity (error)
    whatever the volume (a bad price inflates any price x volume measure,
    and a print is bad however many shares it claims). Otherwise a move on
    >= outlier_confirmed_volume_ratio x the median volume of the 4 previous
    candles (the candle's own volume: shares, contracts, ticks; never price x
    volume) is volume-confirmed, and a move whose new level the next candle
    holds is level-confirmed: both are likely real moves (news, an election)
    and get outlier_confirmed_severity. A move with no next candle yet keeps
    outlier_severity.

    One row per outlier candle (anomaly contract); observed_value = robust z
    (or the simple move when no scale exists), expected_value = the threshold
    it was judged against. A bad print that the next candle undoes (the
    two moves cancel to within half) is one row, not two: the recovery is
    not reported and recovery_ts names it. Extra columns: simple_move,
    volume_ratio, is_volume_confirmed, is_level_held, recovery_ts,
    expected_candles.
-#}
{% test price_outliers(model, lookback=none, is_final_column='is_final', scored_model=none) %}

with

{{ price_check_ctes(model, lookback, is_final_column, scored_model) }},

outlier_moves as materialized (
    select *
    from price_scored
    where is_outlier_move
),

candidates as materialized (
    select moves.*
    from outlier_moves as moves
    left join price_suspects as suspects
        on
            moves.symbol = suspects.symbol
            and moves.timeframe = suspects.timeframe
            and moves.ts = suspects.ts
    left join price_unit_changes as unit_changes
        on
            moves.symbol = unit_changes.symbol
            and moves.timeframe = unit_changes.timeframe
            and moves.ts = unit_changes.ts
    where suspects.ts is null and unit_changes.ts is null
),

-- a bad print and its recovery are two outlier moves: report the print once
recoveries as (
    select
        later.symbol,
        later.timeframe,
        later.ts as recovery_ts,
        earlier.ts as spike_ts
    from candidates as later
    inner join candidates as earlier
        on
            later.symbol = earlier.symbol
            and later.timeframe = earlier.timeframe
            and later.prev_ts = earlier.ts
    where
        abs(later.adjusted_log_return + earlier.adjusted_log_return)
        <= 0.5 * abs(earlier.adjusted_log_return)
),

outliers as (
    select
        scored.*,
        spikes.recovery_ts,
        (
            scored.volume_ratio
            >= {{ mdq_setting('mdq_outlier_confirmed_volume_ratio',
                              'scored.asset_class', 'scored.timeframe', cast='double precision') }}
        ) is true as is_volume_confirmed,
        (
            next_candles.ts is not null and spikes.recovery_ts is null
        ) as is_level_held
    from candidates as scored
    left join price_scored as next_candles
        on
            scored.symbol = next_candles.symbol
            and scored.timeframe = next_candles.timeframe
            and next_candles.prev_ts = scored.ts
    left join recoveries as spikes
        on
            scored.symbol = spikes.symbol
            and scored.timeframe = spikes.timeframe
            and scored.ts = spikes.spike_ts
    left join recoveries as recovered
        on
            scored.symbol = recovered.symbol
            and scored.timeframe = recovered.timeframe
            and scored.ts = recovered.recovery_ts
    where recovered.recovery_ts is null
),

final as (
    select
        'price_outliers'::text as check_name,
        'outlier'::text as anomaly_type,
        (case
            when recovery_ts is not null
                then {{ mdq_setting('mdq_outlier_severity') }}
            when is_volume_confirmed or is_level_held
                then {{ mdq_setting('mdq_outlier_confirmed_severity') }}
            else {{ mdq_setting('mdq_outlier_severity') }}
        end)::text as severity,
        symbol,
        asset_class,
        timeframe,
        ts as ts_start,
        ts as ts_end,
        coalesce(return_z, simple_move)::double precision as observed_value,
        (case
            when return_z is not null then outlier_z_threshold
            else outlier_min_move
        end)::double precision as expected_value,
        format(
            'close %s -> %s (%s%%%s): %s; %s %sx the previous 4 candles%s%s',
            prev_close,
            close,
            {{ price_round('100 * simple_move') }},
            case
                when dividend_cash is not null
                    then format(' after a dividend of %s', dividend_cash)
                else ''
            end
            || case
                when expected_candles > 1
                    then format(' over %s expected candles', expected_candles)
                else ''
            end,
            case
                when return_z is not null
                    then format(
                        'robust z %s against threshold %s (%s scale %s%% per candle), floor %s%%',
                        {{ price_round('return_z', 1) }},
                        outlier_z_threshold,
                        case time_bucket
                            when 'open' then 'overnight-gap'
                            when 'first_hour' then 'first-hour'
                            when 'rest' then 'intraday'
                            else 'daily'
                        end,
                        {{ price_round('100 * reference_return_scale', 3) }},
                        {{ price_round('100 * outlier_min_move') }}
                    )
                else format(
                    'no volatility history yet, above the %s%% floor',
                    {{ price_round('100 * outlier_min_move') }}
                )
            end,
            {{ price_volume_kind('asset_class') }},
            coalesce({{ price_round('volume_ratio', 1) }}::text, 'n/a'),
            case
                when recovery_ts is not null then ''
                when is_volume_confirmed then ' (volume-confirmed: likely a real move)'
                when is_level_held
                    then ' (the next candle held the new level: likely a real move)'
                else ' (no next candle yet)'
            end,
            case
                when recovery_ts is not null
                    then format('; reverted by the next candle (%s): a bad print', recovery_ts)
                else ''
            end
        ) as failure_reason,
        simple_move,
        volume_ratio,
        is_volume_confirmed,
        is_level_held,
        recovery_ts,
        expected_candles
    from outliers
)

select * from final
-- incremental run: only findings inside the re-read range (price_check_ctes)
where true {{ mdq_check_scope_findings('final') }}

{% endtest %}
