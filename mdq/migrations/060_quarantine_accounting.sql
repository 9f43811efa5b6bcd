-- 060: every input row accounted for (issue 10 / 16).
-- quarantined_candles.reason_code: the kind of the first failed check (naive_timestamp,
--   off_grid, out_of_bounds, ... see mdq.validation.REASON_CODES), so that the quarantine check
--   reports one finding per series, run and reason.
-- backfill_state_persistent.records_out_of_window: valid rows of the series the source holds
--   outside the requested window (not fetched). With it the state row accounts for its input:
--   records_fetched = inserted + updated + unchanged + quarantined + duplicate.

alter table quarantined_candles add column if not exists reason_code text;
update quarantined_candles set reason_code = 'invalid_row' where reason_code is null;

alter table backfill_state_persistent
    add column if not exists records_out_of_window integer not null default 0;

create index if not exists idx_quarantined_candles_reason
    on quarantined_candles (execution_id, reason_code);
