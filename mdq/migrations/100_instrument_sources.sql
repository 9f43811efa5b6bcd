-- 100: where each instrument's candles come from, so the scheduled backfill can fetch them.
-- instruments.provider: the provider that loads it (yfinance, ccxt, csv, synthetic); null for
--   an instrument nobody schedules (loaded by hand from a file).
-- instruments.provider_symbol: the symbol as the provider spells it (BTC/USDT on ccxt, BRK-B
--   on yfinance); null means the same as symbol.
-- instruments.provider_exchange: ccxt: the exchange id (binance, kraken, ...); null otherwise.
-- instruments.timeframes: the timeframes the scheduled backfill loads, e.g. {1h,1d}.
-- A symbol is still the key: binance:BTC/USDT and kraken:BTC/USDT are two instruments.
-- Idempotent.

alter table instruments add column if not exists provider text;
alter table instruments add column if not exists provider_symbol text;
alter table instruments add column if not exists provider_exchange text;
alter table instruments add column if not exists timeframes text[] not null default '{}';

-- one provider series maps to one instrument
create unique index if not exists uq_instruments_provider_series
    on instruments (provider, coalesce(provider_exchange, ''), coalesce(provider_symbol, symbol))
    where provider is not null;

create index if not exists idx_instruments_scheduled
    on instruments (provider) where active and provider is not null;
