"""The catch-up job (--sync): make an existing PostgreSQL target equal to todo.db by applying
only the rows that differ, in one transaction, verified. The cutover's freeze is this job.

    STEP 1  inspect todo.db, inside one read snapshot (a WAL source on this one connection)
    STEP 2  plan the target from models.py (drift refused as in a migration)
    STEP 3  connect to PostgreSQL; find todo.db's highest ids, for the sequences
    STEP 4  in one transaction, the app's tables locked against writers: refuse if anyone else
            wrote to PostgreSQL since the last migrate/sync (the ledger), unless --overwrite-changes
    STEP 5  compare both sides in id order (find_changes), each row as the very line the
            verification reads, so a change of one microsecond is a change and a deleted id used
            again is an update; after a sync, only the parts whose fingerprints changed since (the
            ledger's against todo.db's); the rows to send are checked (the exact pre-flight if one
            is not canonical, then compared again without the rejected rows)
    STEP 6  apply (apply_changes): deletes children first, then inserts and updates parents first;
            sequences; verify as a migration does; record the ledger with todo.db's fingerprints;
            COMMIT
    STEP 7  report the delta

Nothing is trusted but the two databases themselves: no timestamps, no triggers in todo.db.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from typing import IO

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection
from psycopg2.extensions import cursor as PgCursor
from sqlalchemy import String, UniqueConstraint

from . import ledger, session, steps
from .convert import register_sqlite_functions
from .diff import Fingerprints, TableDelta, compare_table, fingerprint_line
from .errors import MigrationError, UsageError
from .load import (
    CSV_OPTIONS,
    ChunkLog,
    qualified,
    reset_sequence,
    sequence_behind,
)
from .options import Options
from .output import Console, plural, print_checks
from .plan import Plan, TablePlan
from .report import RunReport
from .schema_check import extra_rules, schema_differences
from .source import Source, explain_sqlite_error, quote_ident
from .steps import Run, VerificationFailed
from .validate import Validation, all_canonical, assume_canonical
from .verify import TableCheck, verify_table

DELETE_BATCH = 10_000
MANY_DELETES = 4  # deletes from a parent from which its children's key gets an index (see below)


def run_sync(options: Options, console: Console, report: RunReport) -> None:
    """The pipeline. Raises MigrationError with the one line to show."""
    started = time.perf_counter()
    run = Run(options, console, report)
    report.start(options)
    console.step("🔄", f"Catching PostgreSQL up with todo.db ({options.mode})")
    console.detail(f"source: {options.sqlite_path}")
    console.detail(f"target: {options.target.masked} (schema {options.schema})")
    source = steps.inspect_source(run)  # STEP 1
    try:
        plan = steps.plan_from_models(run, source)  # STEP 2
        require_row_ids(plan)
        conn, plan = steps.connect_target(run, plan)  # STEP 3
        try:
            marks = steps.sequence_marks(run, source, plan)
            try:
                deltas = catch_up(run, conn, source, plan, marks, exact=False)  # STEPS 4-6
            except RefusedRow:
                run.console.step(
                    "🔁", "PostgreSQL refused a row to send: rolled back; checking every value ..."
                )
                deltas = catch_up(run, conn, source, plan, marks, exact=True)
        finally:
            conn.close()
        report.duration_s = time.perf_counter() - started  # STEP 7
        print_sync_summary(run, deltas, target="PostgreSQL", source="todo.db")
    finally:
        source.close()


def require_row_ids(plan: Plan) -> None:
    """Rows are matched by id; that id must be todo.db's rowid (INTEGER PRIMARY KEY, as the app's
    create_all makes it), which SQLite keeps unique, never NULL and in order."""
    odd = [tp.name for tp in plan.tables if tp.in_source and not tp.id_is_row_key]
    if odd:
        raise UsageError(
            f"--sync matches rows by id, and in todo.db the id of {', '.join(odd)} is not an INTEGER PRIMARY KEY "
            "(a file made by a tool other than the app)",
            "re-run the full migration with --force-recreate instead",
        )


# --- STEPS 4-6: one transaction ----------------------------------------------------------------


class RefusedRow(Exception):
    """PostgreSQL refused a row the values check passed (a parent missing from todo.db, say): the
    exact pre-flight then decides, as in a migration."""


def catch_up(
    run: Run, conn: PgConnection, source: Source, plan: Plan, marks: dict[str, int], *, exact: bool
) -> dict[str, TableDelta]:
    """One transaction. Without `exact`, rows to send that pass the values check go as they are,
    and a row PostgreSQL refuses raises RefusedRow (rolled back)."""
    o = run.options
    doing = "locking the app's tables"
    deltas: dict[str, TableDelta] = {}
    rejects = None
    try:
        with conn.cursor() as cur:
            session.begin(cur, read_only=False, lock_timeout=o.lock_timeout, wait=o.wait, schema=o.schema)
            check_target_tables(run, cur, plan)
            ledger.refuse_foreign(cur, o.schema)
            refuse_missing_privileges(run, cur, plan)
            lock_tables(cur, plan)
            entries = refuse_changes_behind_back(run, cur, plan)  # STEP 4
            other = another_file(run, {e.source for e in entries.values() if e is not None})
            unit_then = another_epoch_unit(run, {e.job for e in entries.values() if e is not None})
            doing = "comparing todo.db with PostgreSQL"
            validation = steps.exact_preflight(run, source, plan) if exact else assume_canonical(plan)
            deltas = find_changes(run, conn, source, plan, validation, entries)  # STEP 5
            why = None if exact else why_check_every_value(source, plan, deltas)
            if why is not None:
                run.console.step("🔁", f"{why}: checking every value ...")
                exact = True  # the pre-flight has had its say: a refusal now is final
                validation = steps.exact_preflight(run, source, plan)
                _close(deltas)
                deltas = find_changes(run, conn, source, plan, validation, entries)
            run.report.set_validation(validation)
            run.report.delta = {name: d.recordable() for name, d in deltas.items()}
            print_delta(run, plan, deltas)
            behind = sequences_behind(cur, plan, marks)
            overwriting = any(e is None for e in entries.values())
            if o.dry_run:
                if other is not None:
                    warn_of_another_file(run, other)
                if unit_then is not None:
                    warn_of_another_epoch_unit(run, unit_then)
                conn.rollback()
                return deltas
            if other is not None:
                confirm_another_file(run, other, deltas)
            if unit_then is not None:
                confirm_another_epoch_unit(run, unit_then, deltas)
            rejects = steps.prepare_rejects(run, source, plan, validation)  # this run's, even if unchanged
            if not (any(d.changes for d in deltas.values()) or behind or overwriting):
                conn.rollback()  # a sync with nothing to do writes nothing to PostgreSQL
            else:
                doing = "applying the changes"
                apply_changes(run, cur, plan, deltas, marks)  # STEP 6
                doing = "verifying"
                verify_synced(run, cur, source, plan, validation, deltas)
                record_ledger(run, cur, plan, deltas, entries)
                doing = "committing"
                with run.phase("commit"):
                    conn.commit()
                run.report.committed = True
    except BaseException as exc:
        _discard(rejects)
        session.rollback_quietly(conn)
        _close(deltas)
        if isinstance(exc, sqlite3.Error):
            raise explain_sqlite_error(exc, o.sqlite_path) from None
        if isinstance(exc, psycopg2.Error):
            if not exact and doing == "applying the changes" and (exc.pgcode or "")[:2] in ("22", "23"):
                raise RefusedRow from None
            raise session.explain_failure(
                exc,
                o.target,
                doing,
                schema=o.schema,
                lock_timeout=o.lock_timeout,
                tables=[t.name for t in plan.tables],
            ) from None
        raise
    _close(deltas)
    if rejects is not None and o.rejects_path is not None:
        rejects.replace(o.rejects_path)
        run.report.rejects_path = str(o.rejects_path)
    return deltas


def check_target_tables(run: Run, cur: PgCursor, plan: Plan) -> None:
    """A sync needs the app's tables, built as the models say (a changed schema is a migration's job)."""
    o = run.options
    existing = session.existing_tables(cur, o.schema, [(tp.name, qualified(tp)) for tp in plan.tables])
    missing = [tp.name for tp in plan.tables if tp.name not in existing]
    if missing:
        raise MigrationError(
            f"PostgreSQL {o.target.masked} has no {', '.join(missing)} in schema {o.schema}: nothing to catch up",
            "run the migration first (without --sync)",
        )
    differences = schema_differences(cur, [tp.table for tp in plan.tables], o.schema)
    if differences:
        raise MigrationError(
            f"PostgreSQL's tables differ from models.py in {plural(len(differences), 'place')}, e.g. {differences[0]}",
            "re-run the full migration with --force-recreate to rebuild them from the models",
            target_untouched=True,
        )
    extras = extra_rules(cur, [tp.table for tp in plan.tables], o.schema)
    if extras:  # a trigger would change what is written (the verification fails), a rule refuse it
        raise MigrationError(
            f"PostgreSQL enforces on the app's tables what models.py does not make ({'; '.join(extras[:2])}"
            f"{f'; {len(extras) - 2} more' if len(extras) > 2 else ''}): the rows a sync writes would be refused "
            "or changed by it",
            "drop it (who added it, and why?), or re-run the full migration with --force-recreate, which "
            "rebuilds the tables from the models",
            target_untouched=True,
        )


def refuse_missing_privileges(run: Run, cur: PgCursor, plan: Plan) -> None:
    """A sync reads and writes every app table, the ledger and the id sequences: a user the owner
    granted less (the app's own role, often) is told the GRANTs now, by the dry run too, instead of
    failing partway through with PostgreSQL's first refusal."""
    o = run.options
    tables = [qualified(tp) for tp in plan.tables]
    ledger_table = ledger.table_name(cur, o.schema) if ledger.exists(cur, o.schema) else None
    cur.execute(
        "SELECT t, p FROM unnest(%s::text[]) AS x(t), "
        "unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) AS p WHERE NOT has_table_privilege(t, p) "
        "UNION ALL SELECT 'sequence ' || s, p FROM unnest(%s::text[], %s::text[]) AS y(t, c), "
        "LATERAL (SELECT pg_get_serial_sequence(t, c)) AS z(s), unnest(ARRAY['SELECT', 'UPDATE']) AS p "
        "WHERE s IS NOT NULL AND NOT has_sequence_privilege(s, p)",
        (tables + ([ledger_table] if ledger_table else []), tables, [tp.pk for tp in plan.tables]),
    )
    missing: dict[str, list[str]] = {}
    for what, privilege in cur.fetchall():
        missing.setdefault(what, []).append(privilege)
    if missing:
        user, schema = f'"{o.target.user or "YOUR_USER"}"', quote_ident(o.schema)
        raise MigrationError(
            f"user {user} lacks what a sync needs: "
            + "; ".join(f"{', '.join(p)} on {w}" for w, p in missing.items()),
            f"as the tables' owner run: GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {user}; "
            f"GRANT SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {user}",
            target_untouched=True,
        )


def lock_tables(cur: PgCursor, plan: Plan) -> None:
    """Readers go on; writers (the app already pointed at PostgreSQL, say) wait until we commit,
    so what we compare is what we change."""
    cur.execute(f"LOCK TABLE {', '.join(qualified(tp) for tp in plan.tables)} IN EXCLUSIVE MODE")


def find_changes(
    run: Run,
    conn: PgConnection,
    source: Source,
    plan: Plan,
    validation: Validation,
    entries: dict[str, ledger.Entry | None],
) -> dict[str, TableDelta]:
    """Each table compared; where the ledger holds fingerprints of todo.db as PostgreSQL still
    holds it (nobody else wrote there since), todo.db alone is read and only changed parts are
    compared with PostgreSQL. Every table's fingerprints are taken on the way, for the ledger."""
    run.console.step("🔍", "Comparing todo.db with PostgreSQL, row by row ...")
    deltas = {}
    readers = second_reader(source)
    try:
        with run.phase("compare"):
            for tp in plan.tables:
                expected = tp.source_rows - validation.rejected[tp.name]
                fingerprint = fingerprint_line(tp) if tp.source is not None else None
                stored = stored_fingerprints(entries.get(tp.name))
                with run.console.progress(tp.name, expected) as bar:
                    deltas[tp.name] = compare_table(
                        conn,
                        source,
                        tp,
                        validation,
                        bar.update,
                        readers=readers,
                        fingerprint=fingerprint,
                        stored=stored,
                    )
    finally:
        for reader in readers:
            reader.close()
    for name, d in deltas.items():
        if d.compared_parts is None:
            continue
        if d.compared_parts:
            run.console.detail(
                f"{name}: fingerprints unchanged since the last sync except in "
                f"{plural(len(d.compared_parts), 'part')} of 8 ids, compared row by row"
            )
        else:
            run.console.detail(f"{name}: fingerprints unchanged since the last sync: nothing to compare")
    return deltas


def stored_fingerprints(entry: ledger.Entry | None) -> Fingerprints | None:
    """The ledger's fingerprints of a table, if it can be trusted (None: it cannot, or has none)."""
    if entry is None or entry.fingerprints is None or entry.recipe is None:
        return None
    try:
        return Fingerprints.from_bytes(entry.recipe, entry.fingerprints)
    except ValueError:
        return None


def second_reader(source: Source) -> list[sqlite3.Connection]:
    """A second connection in our snapshot, so that SQLite builds the lines on both cores (none
    where that snapshot cannot be shared: a WAL file the app committed to since we began)."""
    readers = source.extra_readers(1)
    for reader in readers:
        reader.text_factory = bytes
        register_sqlite_functions(reader)
    return readers


def refuse_changes_behind_back(run: Run, cur: PgCursor, plan: Plan) -> dict[str, ledger.Entry | None]:
    """What PostgreSQL holds must be what the last migrate/sync left: otherwise someone else
    wrote there (the app, already switched over?) and catching up would overwrite their rows.
    The ledger's entries by table; None where one cannot be trusted (--overwrite-changes)."""
    o = run.options
    with run.phase("check ledger"):
        found, written = ledger.written_since(cur, o.schema, [(tp.name, qualified(tp)) for tp in plan.tables])
    entries: dict[str, ledger.Entry | None] = {**found, **dict.fromkeys(written)}
    changed = [f"{name}: {what}" for name, what in written.items()]
    if not changed:
        return entries
    if o.overwrite_changes:
        run.console.step(
            "⚠️", f"--overwrite-changes: PostgreSQL changed since the last migrate/sync ({'; '.join(changed)})"
        )
        run.report.warnings.append(f"overwrote changes made in PostgreSQL: {'; '.join(changed)}")
        return entries
    raise MigrationError(
        f"PostgreSQL changed since the last migrate/sync ({'; '.join(changed)}); catching up would overwrite that",
        "find out who writes there (is the app already pointed at PostgreSQL?); to make PostgreSQL equal "
        "todo.db anyway, re-run with --overwrite-changes",
        target_untouched=True,
    )


def another_file(run: Run, recorded: set[str | None]) -> str | None:
    """PostgreSQL is made equal to whatever todo.db is given: a backup or a copy given by mistake
    (todo.db.bak at 2 a.m.) would roll it back. The file the last migrate/sync read, if another."""
    current = str(run.options.sqlite_path.resolve())
    others = sorted(s for s in recorded if s and os.path.isabs(s) and s != current)
    if not others:
        return None
    run.report.warnings.append(f"another todo.db than last time: {others[0]} then, {current} now")
    return others[0]


def another_epoch_unit(run: Run, jobs: set[str | None]) -> str | None:
    """The unit the last migrate/sync read epoch numbers with, if this run reads them with
    another: the same number in todo.db then becomes another timestamp, and no row is refused to
    say so. (Without --epoch-unit now, epoch numbers are refused as in a migration; without one
    recorded, they were refused or set aside then, or the ledger is an older tool's.)"""
    then = {ledger.epoch_unit_of(job) for job in jobs if job} - {None}
    now = run.options.epoch_unit
    if now is None or not then or then == {now}:
        return None
    unit = sorted(then - {now})[0]
    run.report.warnings.append(f"--epoch-unit {unit} last time, {now} now")
    return unit


def warn_of_another_epoch_unit(run: Run, then: str) -> None:
    run.console.warn(
        f"the last migrate/sync read epoch numbers as {then} (--epoch-unit {then}); this one as "
        f"{run.options.epoch_unit}: rows holding them are compared, and sent, as this one reads them"
    )


def confirm_another_epoch_unit(run: Run, then: str, deltas: dict[str, TableDelta]) -> None:
    """Changed timestamps from another --epoch-unit are applied only with --yes (or asked on a
    terminal), as changes from another file are: a mistyped unit at the cutover would move every
    such timestamp, and each row looks simply updated."""
    updated = sum(d.updated for d in deltas.values())
    applied_if_confirmed(
        run,
        lambda: warn_of_another_epoch_unit(run, then),
        deltas,
        f"Apply the changes ({updated:,} rows updated) with this unit?",
        UsageError(
            f"the last migrate/sync read epoch numbers as {then} (--epoch-unit {then}), this one as "
            f"{run.options.epoch_unit}: the {updated:,} rows it would update may only be timestamps "
            "read anew; nothing was changed",
            f"re-run with --epoch-unit {then}, as last time; or, if PostgreSQL's timestamps are the wrong ones, "
            "with --yes",
        ),
    )


def applied_if_confirmed(
    run: Run, say: Callable[[], None], deltas: dict[str, TableDelta], question: str, refusal: UsageError
) -> None:
    """Said (on stderr, so even with --quiet), and where there are changes to apply, applied only
    when confirmed: asked on a terminal, --yes in a script, else `refusal` (a warning alone let a
    wrong file empty PostgreSQL)."""
    if not any(d.changes for d in deltas.values()) or run.options.yes:
        say()
        return
    if sys.stdin.isatty():
        say()
        if run.console.confirm(question):
            return
        raise MigrationError("not confirmed", "nothing was changed; pass --yes to skip the question")
    raise refusal


def warn_of_another_file(run: Run, other: str) -> None:
    """Said before any change, dry run included, on stderr (so even with --quiet)."""
    current = run.options.sqlite_path.resolve()
    run.console.warn(
        f"the last migrate/sync read {other}; this one reads {current}: PostgreSQL is made equal to it"
    )


def confirm_another_file(run: Run, other: str, deltas: dict[str, TableDelta]) -> None:
    """Changes from another file than last time are applied only when confirmed (a backup given
    by mistake would roll PostgreSQL back)."""
    o = run.options
    deleted = sum(len(d.deleted_ids) for d in deltas.values())
    applied_if_confirmed(
        run,
        lambda: warn_of_another_file(run, other),
        deltas,
        f"Make PostgreSQL equal to {o.sqlite_path} ({deleted:,} rows deleted), not to {other} as last time?",
        UsageError(
            f"{o.sqlite_path} is not the file the last migrate/sync read ({other}); applying its changes "
            f"({deleted:,} rows deleted) would make PostgreSQL equal to it; nothing was changed",
            "if it is the app's todo.db now, re-run with --yes; if not, pass the app's file with --sqlite-path",
        ),
    )


def record_ledger(
    run: Run,
    cur: PgCursor,
    plan: Plan,
    deltas: dict[str, TableDelta],
    entries: dict[str, ledger.Entry | None],
) -> None:
    """The rows each table now holds, and this transaction among those that wrote them."""
    xid = ledger.this_transaction(cur)
    new = []
    for tp in plan.tables:
        before = entries.get(tp.name)
        # After --overwrite-changes, rows someone else wrote may remain (equal to todo.db's): their
        # transactions become ours to trust.
        xids = [xid] + (before.xids if before is not None else _writers(cur, tp))
        fp = deltas[tp.name].fingerprints
        new.append(
            ledger.Entry(
                tp.name,
                deltas[tp.name].sqlite_rows,
                xids,
                fp.to_bytes() if fp is not None else None,
                fp.recipe if fp is not None else None,
            )
        )
    o = run.options
    ledger.record(
        cur, o.schema, new, job=ledger.job_named("sync", o.epoch_unit), source=str(o.sqlite_path.resolve())
    )


def _writers(cur: PgCursor, tp: TablePlan) -> list[int]:
    cur.execute(f"SELECT DISTINCT xmin::text::bigint FROM {qualified(tp)}")
    return [x for (x,) in cur.fetchall()]


def why_check_every_value(source: Source, plan: Plan, deltas: dict[str, TableDelta]) -> str | None:
    """Why the changes found cannot go as they are, if they cannot: the exact pre-flight then
    decides, as in a migration (converts, refuses or rejects)."""
    if not rows_to_send_are_canonical(source, plan, deltas):
        return "Some rows to send need converting or checking"
    if deletes_leave_orphans(source, plan, deltas):
        return "Rows in todo.db still name rows deleted from it"
    return None


def rows_to_send_are_canonical(source: Source, plan: Plan, deltas: dict[str, TableDelta]) -> bool:
    """Unchanged rows are proved storable: PostgreSQL holds them. The rows to send must be too."""
    return all(
        all_canonical(source, plan, tp, deltas[tp.name].sent_keys.tolist())
        for tp in plan.tables
        if tp.source is not None and deltas[tp.name].sent_keys
    )


def deletes_leave_orphans(source: Source, plan: Plan, deltas: dict[str, TableDelta]) -> bool:
    """Whether a row of todo.db still names, by a foreign key, a row deleted from todo.db (SQLite
    enforces no foreign keys unless told to). PostgreSQL would cascade or set NULL on that row
    when the parent goes, a row todo.db has unchanged, so the compare never looked at it: such a
    row is an orphan, for the pre-flight to refuse or reject as a migration does."""
    for child in plan.tables:
        if child.source is None:
            continue
        for fk in child.table.foreign_keys:
            gone = deltas[fk.column.table.name].deleted_ids.tolist()
            column = child.source.column(fk.parent.name)
            if not gone or column is None:
                continue
            query = (
                f"SELECT EXISTS (SELECT 1 FROM {child.sqlite} WHERE {quote_ident(column)} IN "
                "(SELECT value FROM json_each(?)))"
            )
            for start in range(0, len(gone), 50_000):
                if source.conn.execute(query, (json.dumps(gone[start : start + 50_000]),)).fetchone()[0]:
                    return True
    return False


def sequences_behind(cur: PgCursor, plan: Plan, marks: dict[str, int]) -> list[str]:
    """Tables whose next id would not pass todo.db's high-water mark (AUTOINCREMENT's counter may
    move on with no row left to show it)."""
    return [tp.name for tp in plan.tables if sequence_behind(cur, tp, marks.get(tp.name, 0))]


def apply_changes(
    run: Run, cur: PgCursor, plan: Plan, deltas: dict[str, TableDelta], marks: dict[str, int]
) -> None:
    """Deletes first, children before parents (a cascade then finds nothing left to do); then
    inserts and updates together, parents before children, as one upsert per table (a row a
    cascade did remove comes back; a new task whose parent is also new goes in with it)."""
    run.console.step("✍️", "Applying the changes ...")
    with run.phase("apply"):
        helpers = index_children_of_deletes(cur, plan, deltas)
        for tp in reversed(plan.tables):
            ids = deltas[tp.name].deleted_ids
            for start in range(0, len(ids), DELETE_BATCH):
                cur.execute(
                    f"DELETE FROM {qualified(tp)} WHERE {quote_ident(tp.pk)} = ANY(%s)",
                    (ids[start : start + DELETE_BATCH].tolist(),),
                )
        for name in helpers:
            cur.execute(f"DROP INDEX {name}")
        for tp in plan.tables:
            delta = deltas[tp.name]
            if delta.updated:
                free_unique_values(cur, tp, delta.sent_keys.tolist())
            if delta.inserted or delta.updated:
                upsert(cur, tp, delta.rows_to_send)
        for tp in plan.tables:
            reset_sequence(cur, tp, marks.get(tp.name, 0), forward_only=True)


def index_children_of_deletes(cur: PgCursor, plan: Plan, deltas: dict[str, TableDelta]) -> list[str]:
    """For each row deleted, PostgreSQL finds its children (ON DELETE CASCADE / SET NULL) by the
    foreign key column; where the models give that column no index (tasks.parent_task_id,
    recurring_patterns.task_id), every deleted row costs a read of the whole child table: minutes
    for thousands of deletes at 1M tasks (0.18 s a deleted task). From MANY_DELETES on, a
    temporary index (built in this transaction, dropped before COMMIT: nothing of it is ever seen)
    turns those reads into lookups; building it costs about three or four such reads (measured at
    1M tasks and at 50k patterns alike), so below that the reads are cheaper."""
    made = []
    for child in plan.tables:
        indexed = {next(iter(ix.columns)).name for ix in child.table.indexes} | {child.pk}
        for fk in sorted(child.table.foreign_keys, key=lambda fk: fk.parent.name):
            parent, column = fk.column.table.name, fk.parent.name
            if deltas[parent].deleted < MANY_DELETES or column in indexed:
                continue
            name = f"todo_sync_{child.name}_{column}"
            # Only the rows that name a parent: the lookups are by value, which a NULL never equals
            # (at 1M tasks, a tenth of them subtasks, half the build time).
            partial = f" WHERE {quote_ident(column)} IS NOT NULL" if fk.parent.nullable else ""
            # Only the table's owner may index it: a user granted less deletes without (slower).
            cur.execute("SAVEPOINT todo_index")
            try:
                cur.execute(
                    f"CREATE INDEX {quote_ident(name)} ON {qualified(child)} ({quote_ident(column)}){partial}"
                )
            except psycopg2.errors.InsufficientPrivilege:
                cur.execute("ROLLBACK TO SAVEPOINT todo_index")
                continue
            cur.execute("RELEASE SAVEPOINT todo_index")
            made.append(f"{quote_ident(child.table.schema)}.{quote_ident(name)}")
            indexed.add(column)
    return made


def unique_text_columns(tp: TablePlan) -> list[str]:
    """The model's text columns under a unique index or constraint (users.email, users.username)."""
    unique = [ix.columns for ix in tp.table.indexes if ix.unique] + [
        c.columns for c in tp.table.constraints if isinstance(c, UniqueConstraint)
    ]
    return sorted({c.name for cols in unique for c in cols if isinstance(c.type, String) and c.name != tp.pk})


def free_unique_values(cur: PgCursor, tp: TablePlan, keys: list[int]) -> None:
    """Two users who swapped emails: PostgreSQL checks a unique index row by row, so the upsert
    would find the first new email still held by the second row. The rows to update first take a
    placeholder that no one holds (a \\x01 byte and the id), so that every final value is free when
    it goes in; the upsert then writes todo.db's values (unique there) over them."""
    names = unique_text_columns(tp)
    if not names:
        return
    sets = sql.SQL(", ").join(
        sql.SQL("{} = chr(1) || {}::text").format(sql.Identifier(n), sql.Identifier(tp.pk)) for n in names
    )
    cur.execute(
        sql.SQL("UPDATE {} SET {} WHERE {} = ANY(%s)").format(
            sql.SQL(qualified(tp)), sets, sql.Identifier(tp.pk)
        ),
        (keys,),
    )


def upsert(cur: PgCursor, tp: TablePlan, rows: IO[bytes]) -> None:
    """COPY the rows into a temporary table, then one INSERT ... ON CONFLICT (id) DO UPDATE.

    The temporary table has only the columns todo.db has, and no constraints: a model column
    todo.db lacks (--allow-drift) takes its default on insert, as in a migration, and keeps its
    value on update."""
    staging = sql.Identifier(f"todo_sync_{tp.name}")
    cols = sql.SQL(", ").join(sql.Identifier(c.name) for c in tp.columns)
    cur.execute(
        sql.SQL("CREATE TEMPORARY TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            staging, cols, sql.SQL(qualified(tp))
        )
    )
    rows.seek(0)
    cur.copy_expert(sql.SQL("COPY {} ({}) FROM STDIN WITH ({})").format(staging, cols, CSV_OPTIONS), rows)
    updates = sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c.name)) for c in tp.columns if c.name != tp.pk
    )
    cur.execute(
        sql.SQL(
            "INSERT INTO {t} ({cols}) SELECT {cols} FROM {s} ORDER BY {pk} ON CONFLICT ({pk}) DO UPDATE SET {u}"
        ).format(t=sql.SQL(qualified(tp)), cols=cols, s=staging, pk=sql.Identifier(tp.pk), u=updates)
    )
    cur.execute(sql.SQL("DROP TABLE {}").format(staging))


def verify_synced(
    run: Run, cur: PgCursor, source: Source, plan: Plan, validation: Validation, deltas: dict[str, TableDelta]
) -> list[TableCheck]:
    """As after a migration: a changed table is read back whole, in id order, and its SHA-256
    must equal that of todo.db's rows; every table's counts add up, no orphans, sequences ahead.
    An unchanged table was just compared row by row; its values are not read a second time.
    Where fingerprints spared the unchanged parts, the compared parts are what is read back (the
    rest is what the last sync verified, and the ledger proved nobody wrote there since)."""
    run.console.step(
        "🔍", "Verifying: row counts, a checksum of every changed table's values, foreign keys, sequences ..."
    )
    checks = []
    with run.phase("verify"):
        for tp in plan.tables:
            d = deltas[tp.name]
            log = ChunkLog(total_rows=d.sqlite_rows, digest=d.sqlite_digest)
            checks.append(
                verify_table(
                    cur,
                    source,
                    tp,
                    validation,
                    log,
                    values=d.changes > 0,
                    fresh=False,
                    parts=d.compared_parts,
                )
            )
    run.report.set_checks(checks)
    for v in run.report.verification:  # a sync's own terms: what it sent, and how values were proved
        d = deltas[v["table"]]
        v["sent_rows"] = d.inserted + d.updated
        v["values"] = "read back" if d.changes else "compared row by row (unchanged, not read back)"
        v["checksum_sha256"] = v["checksum_sha256"] or None
    print_checks(run.console, checks, values=True)
    spared = [
        tp.name
        for tp in plan.tables
        if deltas[tp.name].compared_parts is not None and deltas[tp.name].changes
    ]
    if spared:
        run.console.detail(
            f"values of {', '.join(spared)}: the changed parts read back; the rest is what the last sync "
            "verified, and the ledger shows nobody wrote there since"
        )
    bad = [ch for ch in checks if not ch.ok]
    if bad:
        raise VerificationFailed(
            f"verification failed in {', '.join(ch.table for ch in bad)}: {bad[0].problem()}",
            "this should not happen: please report it with the --report output",
            target_untouched=True,
        )
    return checks


# --- STEP 7 ----------------------------------------------------------------------------------


def print_delta(run: Run, plan: Plan, deltas: dict[str, TableDelta]) -> None:
    c = run.console
    total = sum(d.changes for d in deltas.values())
    c.step("📋", f"{'Would change' if run.options.dry_run else 'To change'}: {plural(total, 'row')}")
    for tp in plan.tables:
        d = deltas[tp.name]
        parts = []
        for kind in ("inserted", "updated", "deleted"):
            n = getattr(d, kind)
            if n:
                ids = ", ".join(map(str, d.first[kind])) + (", …" if n > len(d.first[kind]) else "")
                parts.append(f"{n:,} {kind} (ids {ids})")
        c.detail(f"{tp.name:<20} {'; '.join(parts) if parts else 'no change'}")


def print_sync_summary(run: Run, deltas: dict[str, TableDelta], *, target: str, source: str) -> None:
    """The per-table counts for the report, the phases, and the one result line (either way)."""
    r, c = run.report, run.console
    r.set_tables(
        {
            name: {"read": d.sqlite_rows, "written": d.inserted + d.updated, "deleted": d.deleted}
            for name, d in deltas.items()
        }
    )
    c.detail("phases: " + ", ".join(f"{k} {s:.2f}s" for k, s in r.phases.items()))
    total = sum(d.changes for d in deltas.values())
    counts = ", ".join(
        f"{sum(getattr(d, k) for d in deltas.values()):,} {k}" for k in ("inserted", "updated", "deleted")
    )
    seconds = f"{r.duration_s or 0:.2f}s"
    rejected = sum(r.rejected.values())
    if rejected and not run.options.dry_run:  # equal but for the rows set aside (--on-invalid skip)
        where = f", in {r.rejects_path}" if r.rejects_path else ""
        source = f"{source} less {plural(rejected, 'rejected row')}{where}"
    if run.options.dry_run:
        line = f"Dry run passed: a sync would apply {plural(total, 'change')} ({counts}); nothing was written ({seconds})"
    elif total == 0 and r.committed:  # equal rows, but a sequence behind or a ledger rewritten
        line = f"{target} already held {source}'s rows; its id sequences and the ledger were brought up to date, verified in {seconds}"
    elif total == 0:
        line = f"{target} already equals {source}: nothing to do, nothing written ({seconds})"
    else:
        line = f"{target} now equals {source}: {counts}, verified in {seconds}"
    c.result("🎉", line)


def _close(deltas: dict[str, TableDelta]) -> None:
    for d in deltas.values():
        d.close()


def _discard(path) -> None:
    if path is not None:
        try:
            path.unlink()
        except OSError:
            pass
