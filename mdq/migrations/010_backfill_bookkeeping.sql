-- 010: what the backfill flow records beyond 001-003.
-- backfill_state_persistent.records_duplicate: rows dropped because their key repeated inside
--   one fetched batch (overlapping pages, BH-03).
-- quarantined_candles.fingerprint: identity of one rejected input row (provider, source,
--   source row, reason, raw row), so re-running a backfill over the same bad rows quarantines
--   nothing twice.

alter table backfill_state_persistent
    add column if not exists records_duplicate integer not null default 0;

alter table quarantined_candles add column if not exists fingerprint text;
create unique index if not exists uq_quarantined_candles_fingerprint
    on quarantined_candles (fingerprint);

-- get_active_backfill_states and lease takeover look up active rows by lease
create index if not exists idx_backfill_state_active_lease
    on backfill_state_persistent (lease_expires_at)
    where status in ('pending', 'in_progress');
