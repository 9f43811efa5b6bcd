{#-
    price_outliers: close-to-close moves judged against the series' own
    volatility. The log return (a known split in corporate_actions
    neutralised, price_known_split_matches) is an outlier when its robust z
    (price_block_scales: block median and 1.4826 x MAD) reaches outlier_z
    AND the simple move reaches outlier_min_move (the seed's 20 % kept as a
    floor; with too little history the floor alone decides). Split suspects
    (price_split_suspects) and still-forming candles are not outliers.
    A move on >= outlier_confirmed_volume_ratio x the previous dollar volume
    is volume-confirmed, and a move whose new level the next candle holds
    (not undone) is level-confirmed: both are likely real moves (news, an
    election) and get outlier_confirmed_severity. A move the next candle
    undoes (a bad print), or one with no next candle yet, keeps
    outlier_severity.
    In intraday exchange data the first candle of a session carries the
    overnight move and is judged like any other: the real AAPL 1m opening
    gap of -9.1 % on 2026-07-31 is reported, volume-confirmed (warn).

    One row per outlier candle (anomaly contract); observed_value = robust z
    (or the simple move when no scale exists), expected_value = the threshold
    it was judged against. A bad print that the next candle undoes (the
    two moves cancel to within half) is one row, not two: the recovery is
    not reported and recovery_ts names it. Extra columns: simple_move,
    dollar_volume_ratio, is_volume_confirmed, is_level_held, recovery_ts.
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
    where suspects.ts is null
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
            scored.dollar_volume_ratio
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
            'close %s -> %s (%s%%): %s; dollar volume %sx the previous 4 candles%s%s',
            prev_close,
            close,
            {{ price_round('100 * simple_move') }},
            case
                when return_z is not null
                    then format(
                        'robust z %s against threshold %s (scale %s%% per candle), floor %s%%',
                        {{ price_round('return_z', 1) }},
                        outlier_z_threshold,
                        {{ price_round('100 * reference_return_scale', 3) }},
                        {{ price_round('100 * outlier_min_move') }}
                    )
                else format(
                    'no volatility history yet, above the %s%% floor',
                    {{ price_round('100 * outlier_min_move') }}
                )
            end,
            coalesce({{ price_round('dollar_volume_ratio', 1) }}::text, 'n/a'),
            case
                when is_volume_confirmed then ' (volume-confirmed: likely a real move)'
                when is_level_held
                    then ' (the next candle held the new level: likely a real move)'
                else ''
            end,
            case
                when recovery_ts is not null
                    then format('; reverted by the next candle (%s): a bad print', recovery_ts)
                else ''
            end
        ) as failure_reason,
        simple_move,
        dollar_volume_ratio,
        is_volume_confirmed,
        is_level_held,
        recovery_ts
    from outliers
)

select * from final

{% endtest %}
