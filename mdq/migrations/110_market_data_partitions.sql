-- 110: market_data range-partitioned by ts, one partition per UTC calendar month (issue 15.2).
--
-- Partitions are named market_data_pYYYY_MM and hold [first instant of the month UTC, first
-- instant of the next month UTC). market_data_default catches a candle of any month that has
-- no partition yet, so no writer ever fails for want of one (a team's own ingest, a restore, a
-- test inserting by hand). The loader calls mdq_ensure_market_data_partitions() with the
-- months of a batch before writing it (mdq.db.partitions), which creates the missing monthly
-- partitions and moves any rows of those months out of the default one, so the default stays
-- empty and checks over recent candles read recent partitions only (partition pruning).
--
-- Converting: a plain (created by 002 or adopted) market_data is renamed, a partitioned table
-- with the same columns, defaults, checks, indexes, constraints, triggers, grants and comments
-- takes its name, every row is copied, and the copy is verified (row count and a checksum of
-- every row's text) before the old table is dropped; views that read market_data are dropped
-- and recreated from their definitions. All in the migration's one transaction: on any error
-- nothing changed. A unique key or index without ts (an adopted table's `id serial primary
-- key`) cannot be kept as is on a partitioned table (PostgreSQL requires the partition key in
-- every unique index); it is kept with ts added to its columns, a notice says so.
-- Refused (SQLSTATE MDQ02, nothing changed): another table's foreign key references
-- market_data, or it has an exclusion constraint.
-- Safe to re-run: an already partitioned market_data is left as it is.

create or replace function mdq_market_data_partition_name(p_month_start timestamptz)
returns text
language sql
immutable
as $fn$
    select 'market_data_p' || to_char(p_month_start at time zone 'UTC', 'YYYY_MM')
$fn$;

comment on function mdq_market_data_partition_name(timestamptz) is
'Name of the market_data partition of the UTC month starting at p_month_start: market_data_pYYYY_MM.';

-- The months of p_ts (UTC) that have no partition get one: created as a table, filled with the
-- rows of that month found in the default partition, then attached (with a check constraint
-- matching the bound, so the attach does not scan it). Months that already have one cost one
-- catalog look-up. Locks: share update exclusive on market_data (readers and writers go on),
-- access exclusive on market_data_default for the move, waited for at most lock_timeout (2 s):
-- on timeout (a long check reading the default partition) the month is 'deferred' and its
-- candles are stored in the default partition until a later call moves them. Call it outside
-- a long transaction: the locks last until the caller's transaction ends.
-- Returns one row per month that had no partition: (month_start, partition_name, action) with
-- action 'created' or 'deferred'. Returns nothing when market_data is not range-partitioned by
-- ts alone (a team's own partitioning is left to the team).
create or replace function mdq_ensure_market_data_partitions(p_ts timestamptz [])
returns table (month_start timestamptz, partition_name text, action text)
language plpgsql
set lock_timeout = '2s'
as $fn$
declare
    parent regclass := to_regclass('market_data');
    parent_schema name;
    default_part oid;
    column_list text;
    month_utc timestamp;
    lo timestamptz;
    hi timestamptz;
    part text;
begin
    if parent is null then
        raise exception 'market_data does not exist';
    end if;
    if not exists (
        select 1
        from pg_partitioned_table as p
        inner join pg_attribute as a
            on a.attrelid = p.partrelid and a.attnum = p.partattrs[0]
        where p.partrelid = parent
            and p.partstrat = 'r'
            and p.partnatts = 1
            and a.attname = 'ts'
    ) then
        return;
    end if;
    select n.nspname into parent_schema
    from pg_class as c
    inner join pg_namespace as n on n.oid = c.relnamespace
    where c.oid = parent;

    for month_utc in
        select distinct date_trunc('month', t at time zone 'UTC')
        from unnest(p_ts) as t
        where t is not null
        order by 1
    loop
        lo := month_utc at time zone 'UTC';
        hi := (month_utc + interval '1 month') at time zone 'UTC';
        part := mdq_market_data_partition_name(lo);
        continue when exists (
            select 1 from pg_inherits as i
            where i.inhparent = parent
                and i.inhrelid = to_regclass(format('%I.%I', parent_schema, part))
        );
        begin
            -- parent first, then the default partition: the order every writer takes them in
            execute format('lock table %s in share update exclusive mode', parent);
            perform pg_advisory_xact_lock(7244019114);
            -- another session may have created it while this one waited
            continue when exists (
                select 1 from pg_inherits as i
                where i.inhparent = parent
                    and i.inhrelid = to_regclass(format('%I.%I', parent_schema, part))
            );
            execute format(
                'create table %I.%I (like %s including defaults including constraints'
                ' including storage including comments)',
                parent_schema, part, parent
            );
            execute format(
                'alter table %I.%I add constraint %I check (ts >= %L and ts < %L)',
                parent_schema, part, part || '_bound', lo, hi
            );
            select p.partdefid into default_part
            from pg_partitioned_table as p
            where p.partrelid = parent;
            if default_part is not null and default_part <> 0 then
                execute format('lock table %s in access exclusive mode', default_part::regclass);
                select string_agg(quote_ident(a.attname), ', ' order by a.attnum)
                into column_list
                from pg_attribute as a
                where a.attrelid = parent and a.attnum > 0 and not a.attisdropped;
                execute format(
                    'with moved as (delete from %s where ts >= $1 and ts < $2 returning %s)'
                    ' insert into %I.%I (%s) select %s from moved',
                    default_part::regclass, column_list, parent_schema, part, column_list,
                    column_list
                ) using lo, hi;
            end if;
            execute format(
                'alter table %s attach partition %I.%I for values from (%L) to (%L)',
                parent, parent_schema, part, lo, hi
            );
            execute format(
                'alter table %I.%I drop constraint %I', parent_schema, part, part || '_bound'
            );
            month_start := lo;
            partition_name := part;
            action := 'created';
            return next;
        exception
            when lock_not_available then
                month_start := lo;
                partition_name := part;
                action := 'deferred';
                return next;
        end;
    end loop;
end
$fn$;

comment on function mdq_ensure_market_data_partitions(timestamptz []) is
'Create the monthly market_data partitions the instants p_ts fall in (UTC months), moving their '
'rows out of market_data_default. Returns (month_start, partition_name, action created|deferred) '
'per month that had none. See migration 110.';

-- Every month found in market_data_default gets its partition (a maintenance call; the loader
-- does this per batch). Returns what mdq_ensure_market_data_partitions returned.
create or replace function mdq_split_market_data_default()
returns table (month_start timestamptz, partition_name text, action text)
language plpgsql
as $fn$
begin
    return query
    select e.month_start, e.partition_name, e.action
    from mdq_ensure_market_data_partitions(
        array(
            select distinct date_trunc('month', d.ts at time zone 'UTC') at time zone 'UTC'
            from market_data_default as d
        )
    ) as e;
end
$fn$;

do $convert$
declare
    old_oid oid := to_regclass('market_data');
    old_schema name;
    old_owner name;
    rec record;
    months timestamptz [];
    rows_before bigint;
    rows_after bigint;
    sum_before numeric;
    sum_after numeric;
    index_defs text [] := '{}';
    constraint_defs text [] := '{}';
    trigger_defs text [] := '{}';
    view_defs text [] := '{}';
    view_owners text [] := '{}';
    def text;
    key_columns text;
    i integer;
begin
    if old_oid is null then
        raise exception 'market_data does not exist (migration 002 creates it)';
    end if;
    if (select c.relkind from pg_class as c where c.oid = old_oid) = 'p' then
        return;  -- already partitioned (this migration ran, or the team partitions it)
    end if;
    select n.nspname, pg_get_userbyid(c.relowner) into old_schema, old_owner
    from pg_class as c
    inner join pg_namespace as n on n.oid = c.relnamespace
    where c.oid = old_oid;

    if exists (
        select 1 from pg_constraint as c
        where c.confrelid = old_oid and c.contype = 'f'
    ) then
        raise exception 'another table has a foreign key to market_data'
            using errcode = 'MDQ02',
            hint = 'drop the foreign key, run the migration, then recreate it referencing '
                || '(symbol, timeframe, ts)';
    end if;
    if exists (
        select 1 from pg_constraint as c
        where c.conrelid = old_oid and c.contype = 'x'
    ) then
        raise exception 'market_data has an exclusion constraint: cannot partition it'
            using errcode = 'MDQ02',
            hint = 'drop the exclusion constraint and run the migration again';
    end if;

    lock table market_data in access exclusive mode;

    -- What to recreate on the new table, read while the names still point at the old one.
    -- Unique and primary keys (with ts added when missing).
    for rec in
        select
            c.conname,
            c.contype,
            pg_get_constraintdef(c.oid) as def,
            exists (
                select 1 from pg_attribute as a
                where a.attrelid = old_oid and a.attname = 'ts' and a.attnum = any (c.conkey)
            ) as has_ts,
            (
                select string_agg(quote_ident(a.attname), ', ' order by k.ord)
                from unnest(c.conkey) with ordinality as k (attnum, ord)
                inner join pg_attribute as a on a.attrelid = old_oid and a.attnum = k.attnum
            ) as columns
        from pg_constraint as c
        where c.conrelid = old_oid and c.contype in ('u', 'p', 'f')
        order by c.contype desc, c.conname
    loop
        if rec.contype = 'f' or rec.has_ts then
            def := rec.def;
        else
            key_columns := rec.columns || ', ts';
            def := case rec.contype when 'p' then 'primary key' else 'unique' end
                || ' (' || key_columns || ')';
            raise notice 'market_data % % becomes % on the partitioned table: every unique key '
                'of a partitioned table must include its partition key ts',
                rec.conname, rec.def, def;
        end if;
        constraint_defs := constraint_defs
            || format('alter table market_data add constraint %I %s', rec.conname, def);
    end loop;
    -- Indexes that back no constraint.
    for rec in
        select
            ic.relname as index_name,
            x.indisunique,
            pg_get_indexdef(x.indexrelid) as def,
            exists (
                select 1 from pg_attribute as a
                where a.attrelid = old_oid and a.attname = 'ts'
                    and a.attnum = any (x.indkey::int2 [])
            ) as has_ts
        from pg_index as x
        inner join pg_class as ic on ic.oid = x.indexrelid
        where x.indrelid = old_oid
            and not exists (select 1 from pg_constraint as c where c.conindid = x.indexrelid)
        order by ic.relname
    loop
        def := rec.def;
        if rec.indisunique and not rec.has_ts then
            if def !~ '\)$' then
                raise exception 'unique index % on market_data does not include ts and cannot '
                    'be kept on the partitioned table: %', rec.index_name, def
                    using errcode = 'MDQ02',
                    hint = 'add ts to it or drop it, then run the migration again';
            end if;
            def := regexp_replace(def, '\)$', ', ts)');
            raise notice 'market_data unique index % gains ts: %', rec.index_name, def;
        end if;
        index_defs := index_defs || def;
    end loop;
    -- User triggers (verbatim; they name market_data).
    for rec in
        select pg_get_triggerdef(t.oid) as def
        from pg_trigger as t
        where t.tgrelid = old_oid and not t.tgisinternal
        order by t.tgname
    loop
        trigger_defs := trigger_defs || rec.def;
    end loop;
    -- Views and materialized views reading market_data, directly or through each other, in
    -- the order they can be recreated (a view after the views it reads).
    for rec in
        with recursive dependents (view_oid, depth) as (
            select distinct r.ev_class, 1
            from pg_depend as d
            inner join pg_rewrite as r on r.oid = d.objid
            where d.classid = 'pg_rewrite'::regclass
                and d.refclassid = 'pg_class'::regclass
                and d.refobjid = old_oid
                and r.ev_class <> old_oid
            union
            select distinct r.ev_class, dependents.depth + 1
            from dependents
            inner join pg_depend as d
                on d.refobjid = dependents.view_oid and d.refclassid = 'pg_class'::regclass
            inner join pg_rewrite as r on r.oid = d.objid and d.classid = 'pg_rewrite'::regclass
            where r.ev_class <> dependents.view_oid and dependents.depth < 50
        ),

        ordered as (
            select view_oid, max(depth) as depth
            from dependents
            group by view_oid
        )

        select
            c.relkind,
            format('%I.%I', n.nspname, c.relname) as qualified,
            pg_get_viewdef(c.oid) as body,
            pg_get_userbyid(c.relowner) as owner
        from ordered
        inner join pg_class as c on c.oid = ordered.view_oid
        inner join pg_namespace as n on n.oid = c.relnamespace
        order by ordered.depth, c.oid
    loop
        view_defs := view_defs || format(
            'create %s %s as %s',
            case rec.relkind when 'm' then 'materialized view' else 'view' end,
            rec.qualified,
            rtrim(rec.body, '; ' || chr(10))
        );
        view_owners := view_owners || format(
            'alter %s %s owner to %I',
            case rec.relkind when 'm' then 'materialized view' else 'view' end,
            rec.qualified,
            rec.owner
        );
    end loop;

    -- Free the names: the old table and its indexes (constraint names follow their index).
    alter table market_data rename to market_data_unpartitioned;
    for rec in
        select ic.relname as index_name
        from pg_index as x
        inner join pg_class as ic on ic.oid = x.indexrelid
        where x.indrelid = old_oid
    loop
        execute format(
            'alter index %I.%I rename to %I',
            old_schema, rec.index_name, left('old_' || rec.index_name, 63)
        );
    end loop;

    -- The new table: same columns in the same order, defaults, not-null and check
    -- constraints, identity, generated columns, storage, column comments, statistics targets.
    execute format(
        'create table %I.market_data (like %I.market_data_unpartitioned including defaults'
        ' including constraints including identity including generated including storage'
        ' including comments including statistics) partition by range (ts)',
        old_schema, old_schema
    );
    execute format(
        'create table %I.market_data_default partition of %I.market_data default',
        old_schema, old_schema
    );
    foreach def in array constraint_defs loop
        execute def;
    end loop;
    foreach def in array index_defs loop
        execute def;
    end loop;
    foreach def in array trigger_defs loop
        execute def;
    end loop;
    execute format(
        'comment on table market_data is %L',
        obj_description(old_oid, 'pg_class')
    );
    if old_owner <> current_user then
        execute format('alter table market_data owner to %I', old_owner);
    end if;
    for rec in
        select
            case when g.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(g.grantee)) end
                as grantee,
            g.privilege_type,
            g.is_grantable
        from pg_class as c
        cross join lateral aclexplode(c.relacl) as g
        where c.oid = old_oid and g.grantee <> c.relowner
    loop
        execute format(
            'grant %s on market_data to %s%s',
            rec.privilege_type, rec.grantee,
            case when rec.is_grantable then ' with grant option' else '' end
        );
    end loop;
    -- a serial column's sequence belongs to its column: move it, else it goes with the table
    for rec in
        select d.objid::regclass as seq, a.attname
        from pg_depend as d
        inner join pg_attribute as a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
        where d.refobjid = old_oid
            and d.classid = 'pg_class'::regclass
            and d.deptype = 'a'
            and (select c.relkind from pg_class as c where c.oid = d.objid) = 'S'
    loop
        execute format('alter sequence %s owned by market_data.%I', rec.seq, rec.attname);
    end loop;

    -- The rows: a partition per month that has any, then one copy, then the proof.
    select count(*), coalesce(sum(hashtextextended(o::text, 0)::numeric), 0)
    into rows_before, sum_before
    from market_data_unpartitioned as o;
    if rows_before > 0 then
        select array_agg(distinct date_trunc('month', o.ts at time zone 'UTC') at time zone 'UTC')
        into months
        from market_data_unpartitioned as o;
        perform mdq_ensure_market_data_partitions(months);
        insert into market_data overriding system value
        select * from market_data_unpartitioned;
        -- identity columns continue after the copied values
        for rec in
            select a.attname
            from pg_attribute as a
            where a.attrelid = 'market_data'::regclass and a.attidentity <> ''
        loop
            execute format(
                'select setval(pg_get_serial_sequence(%L, %L), max(%I)) from market_data',
                'market_data', rec.attname, rec.attname
            );
        end loop;
        select count(*), coalesce(sum(hashtextextended(n::text, 0)::numeric), 0)
        into rows_after, sum_after
        from market_data as n;
        if rows_after <> rows_before or sum_after <> sum_before then
            raise exception 'market_data copy does not match: % rows (checksum %) before, '
                '% rows (checksum %) after', rows_before, sum_before, rows_after, sum_after;
        end if;
        if exists (select 1 from market_data_default) then
            raise exception 'market_data copy left rows in the default partition';
        end if;
    end if;

    drop table market_data_unpartitioned cascade;
    for i in 1 .. coalesce(array_length(view_defs, 1), 0) loop
        execute view_defs[i];
        execute view_owners[i];
    end loop;
    if rows_before > 0 then
        analyze market_data;
    end if;
end
$convert$;
