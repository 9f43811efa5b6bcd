-- 140: the session-date range each calendar's sessions were last written for, so a check can
-- tell that trading_sessions already covers what it needs and skip rebuilding the sessions
-- (building 27 years of XNYS sessions with exchange_calendars cost ~3 s per `mdq check`).
-- [covered_from, covered_until): session dates written by refreshes with the version in
-- calendar_version; NULL until the next refresh (which then writes every session again).
alter table trading_calendars add column if not exists covered_from date;
alter table trading_calendars add column if not exists covered_until date;
