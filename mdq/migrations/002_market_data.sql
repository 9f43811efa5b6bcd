-- 002: market_data, created or adopted.
-- A team adopting the project may already have market_data: add what is missing, never delete
-- a row. If duplicate (symbol, timeframe, ts) keys block the unique key, stop with SQLSTATE
-- MDQ01 (detail: "<duplicate keys> <extra rows>") so the caller can point to `mdq dedupe`.

create table if not exists market_data (
    symbol        text not null,
    asset_class   text not null,
    timeframe     text not null,
    -- candle open time, UTC
    ts            timestamptz not null,
    open          double precision not null,
    high          double precision not null,
    low           double precision not null,
    close         double precision not null,
    volume        double precision not null,
    source        text,
    -- false while the candle had not closed when it was fetched
    is_final      boolean not null default true,
    ingested_at   timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);

alter table market_data add column if not exists asset_class text;
alter table market_data add column if not exists source text;
alter table market_data add column if not exists is_final boolean not null default true;
alter table market_data add column if not exists ingested_at timestamptz not null default now();
alter table market_data add column if not exists updated_at timestamptz not null default now();

-- An adopted ts stored as timestamp without time zone is taken to be UTC wall-clock time.
do $$
begin
    if exists (
        select 1
        from information_schema.columns
        where table_schema = current_schema()
            and table_name = 'market_data'
            and column_name = 'ts'
            and data_type = 'timestamp without time zone'
    ) then
        raise notice 'market_data.ts is timestamp without time zone: converting, read as UTC';
        alter table market_data alter column ts type timestamptz using ts at time zone 'UTC';
    end if;
end
$$;

do $$
declare
    has_key boolean;
    duplicate_keys bigint;
    excess_rows bigint;
begin
    select exists (
        select 1
        from pg_index as i
        where i.indrelid = 'market_data'::regclass
            and i.indisunique
            and i.indnkeyatts = 3
            and (
                select array_agg(a.attname::text order by a.attname)
                from pg_attribute as a
                where a.attrelid = i.indrelid and a.attnum = any (i.indkey)
            ) = array['symbol', 'timeframe', 'ts']
    ) into has_key;

    if not has_key then
        select count(*), coalesce(sum(n - 1), 0)
        into duplicate_keys, excess_rows
        from (
            select count(*) as n
            from market_data
            group by symbol, timeframe, ts
            having count(*) > 1
        ) as d;
        if duplicate_keys > 0 then
            raise exception 'market_data has duplicate (symbol, timeframe, ts) keys'
                using errcode = 'MDQ01',
                detail = duplicate_keys::text || ' ' || excess_rows::text,
                hint = 'run `mdq dedupe` to preview and `mdq dedupe --apply` to remove them';
        end if;
        alter table market_data
            add constraint market_data_symbol_timeframe_ts_key unique (symbol, timeframe, ts);
    end if;
end
$$;

create index if not exists idx_market_data_ts on market_data (ts);
