-- 020: one row per trading calendar with what the SQL needs to map a candle ts to a session
-- date: the calendar's IANA time zone and its day roll-over (a ts belongs to the session dated
-- ((ts at time zone timezone) + day_rollover_hours hours)::date; 7 for FX, whose trading day
-- rolls at 17:00 New York, else 0). Written with trading_sessions by `mdq calendars refresh`.

create table if not exists trading_calendars (
    calendar             text primary key,
    timezone             text not null,
    day_rollover_hours   integer not null default 0
        check (day_rollover_hours between 0 and 23),
    -- library and version that produced the sessions, e.g. 'exchange_calendars 4.13.2'
    calendar_version     text not null,
    -- session dates covered by the last refresh, [first_session_date, last_session_date]
    first_session_date   date,
    last_session_date    date,
    refreshed_at         timestamptz not null default now()
);
