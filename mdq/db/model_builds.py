"""Whether dbt's models can be re-used as built: the record of mdq's last complete build of a
dbt schema, and the change log of the tables the models read (migration 150).

A repeat ``mdq check`` with no new data spent about half its time rebuilding models whose
inputs had not changed (two dbt invocations, each with dbt's fixed start-up cost; issue 9).
:func:`mdq.dbt_runner.build` now skips its models step when :func:`reusable` says the models
are as a build would leave them:

* ``dbt_model_builds`` holds, per dbt schema, the last successful build of every model by mdq
  (:func:`record`): a fingerprint of what the models' SQL is compiled from (computed by the
  caller: project files, profile, vars, the models' per-run environment, dbt's version), the
  oldest transaction still running when the build started (``changes_xmin``), the source
  tables upstream of a table or incremental model, and every model relation. The project's
  on-run-start hook (macro ``mdq_forget_model_build``) deletes it whenever a dbt command that
  builds relations starts in that schema: an analyst's ``dbt build --vars ...`` too.
* ``model_input_changes`` gets one row per watched table and writing transaction that changed
  a row (statement triggers ``trg_mdq_model_inputs_*``: insert, update, delete, truncate).
  A change from ``changes_xmin`` on may be missing from the build (it committed after dbt's
  snapshot or was still running), so it means: build.

Every doubt means build: no record, another fingerprint, a source table without the trigger
(a table added to the models later, or recreated), a model relation that no longer exists, any
change to a source since the build.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

#: The statement triggers of migration 150 on every watched table.
INPUT_TRIGGERS = (
    "trg_mdq_model_inputs_insert",
    "trg_mdq_model_inputs_update",
    "trg_mdq_model_inputs_delete",
    "trg_mdq_model_inputs_truncate",
)


def reusable(conn: psycopg.Connection, schema: str, fingerprint: str) -> str | None:
    """Why the models of ``schema`` must be built, or None when the last build can be re-used.

    Args:
        conn: an open connection to the project's database.
        schema: the dbt schema (``MDQ_DBT_SCHEMA``).
        fingerprint: this run's fingerprint (:func:`mdq.dbt_runner.models_fingerprint`).

    Returns:
        None: no input changed since mdq's last complete build with the same fingerprint,
        every source read by a table or incremental model is watched and every model relation
        exists. Otherwise a short reason, e.g. ``"market_data changed"``.
    """
    ready = conn.execute(
        "select to_regclass('dbt_model_builds') is not null"
        " and to_regclass('model_input_changes') is not null"
    ).fetchone()
    if not ready or not ready[0]:
        return "no build record (migration 150)"
    row = conn.execute(
        "select fingerprint, changes_xmin, sources, relations from dbt_model_builds"
        " where dbt_schema = %s",
        (schema,),
    ).fetchone()
    if row is None:
        return "no complete build by mdq recorded"
    recorded, xmin, sources, relations = row
    if recorded != fingerprint:
        return "project, vars or reference time changed"
    state = conn.execute(
        """
        with sources as (
            select name, to_regclass(name) as relid from unnest(%(sources)s::text[]) as s (name)
        )
        select
            (
                select string_agg(name, ', ' order by name) from sources
                where (
                    select count(*) from pg_trigger as t
                    where t.tgrelid = sources.relid and t.tgname = any(%(triggers)s)
                        and t.tgenabled <> 'D'
                ) < cardinality(%(triggers)s::text[])
            ) as unwatched,
            (
                select string_agg(name, ', ' order by name)
                from unnest(%(relations)s::text[]) as r (name)
                where to_regclass(name) is null
            ) as missing,
            (
                select string_agg(distinct sources.name, ', ')
                from model_input_changes as c
                inner join sources on c.relid = sources.relid
                where c.xid >= %(xmin)s
            ) as changed
        """,
        {
            "sources": list(sources),
            "relations": list(relations),
            "xmin": xmin,
            "triggers": list(INPUT_TRIGGERS),
        },
    ).fetchone()
    assert state is not None
    unwatched, missing, changed = state
    if unwatched:
        return f"no change log on {unwatched}"
    if missing:
        return f"missing relation {missing.split(', ')[0]}"
    if changed:
        return f"{changed} changed"
    return None


def record(
    conn: psycopg.Connection,
    schema: str,
    *,
    fingerprint: str,
    changes_xmin: int,
    sources: Sequence[tuple[str, str]],
    relations: Sequence[tuple[str, str]],
) -> None:
    """Record a successful build of every model of ``schema``, and prune the change log.

    Args:
        conn: an open connection (the caller commits; autocommit is fine).
        schema: the dbt schema.
        fingerprint: what the build was compiled from.
        changes_xmin: ``pg_snapshot_xmin`` taken before dbt read anything
            (:func:`mdq.db.check_scope.current_xmin`).
        sources: (schema, table) of every source upstream of a table or incremental model.
        relations: (schema, name) of every model relation.

    The change log keeps the rows from the oldest ``changes_xmin`` of any schema's record on.
    """
    conn.execute(
        """
        insert into dbt_model_builds
            (dbt_schema, fingerprint, changes_xmin, sources, relations, built_at)
        select
            %(schema)s, %(fingerprint)s, %(xmin)s,
            array(
                select format('%%I.%%I', s, n) from unnest(%(src_s)s::text[], %(src_n)s::text[])
                    as u (s, n) order by 1
            ),
            array(
                select format('%%I.%%I', s, n) from unnest(%(rel_s)s::text[], %(rel_n)s::text[])
                    as u (s, n) order by 1
            ),
            now()
        on conflict (dbt_schema) do update set
            fingerprint = excluded.fingerprint,
            changes_xmin = excluded.changes_xmin,
            sources = excluded.sources,
            relations = excluded.relations,
            built_at = excluded.built_at
        """,
        {
            "schema": schema,
            "fingerprint": fingerprint,
            "xmin": changes_xmin,
            "src_s": [s for s, _ in sources],
            "src_n": [n for _, n in sources],
            "rel_s": [s for s, _ in relations],
            "rel_n": [n for _, n in relations],
        },
    )
    conn.execute(
        "delete from model_input_changes"
        " where xid < (select min(changes_xmin) from dbt_model_builds)"
    )
