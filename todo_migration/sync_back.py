"""The way back, caught up (--reverse --sync): bring an existing todo.db up to date with
PostgreSQL by applying only the rows that differ, in one SQLite transaction, verified.

    STEP 1  check todo.db: it must exist and no app may have it open (a -wal or -journal, a lock)
    STEP 2  plan from models.py against todo.db (drift refused as in a migration); ids must be
            todo.db's INTEGER PRIMARY KEYs, as the app creates them
    STEP 3  connect to PostgreSQL, one snapshot (REPEATABLE READ, READ ONLY, DEFERRABLE)
    STEP 4  take todo.db's write lock (BEGIN IMMEDIATE) and compare both sides in id order
            (diff.py), PostgreSQL's rows the ones to keep
    STEP 5  refuse if todo.db changed since the last export/sync (its ledger), unless
            --overwrite-changes
    STEP 6  apply: deletes children first, then inserts and updates parents first, each value in
            the app's SQLite form (the codecs' to_sqlite); verify (compare again: no difference,
            every written value in the app's form, foreign keys); record the ledger; COMMIT

PostgreSQL is only read. A failure anywhere rolls the SQLite transaction back: todo.db is as it was.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import IO

import psycopg2

from . import ledger, session, steps
from .convert import register_sqlite_functions
from .diff import TableDelta, compare_table
from .errors import MigrationError, UsageError
from .export import (
    connect_snapshot,
    plan_export,
    postgres_named,
    refuse_if_open,
    refuse_values_without_app_form,
)
from .options import Options
from .output import Console
from .plan import Plan, TablePlan
from .report import RunReport
from .source import Source, explain_sqlite_write_error
from .steps import Run, VerificationFailed
from .sync import DELETE_BATCH, print_delta, print_sync_summary, require_row_ids, unique_text_columns
from .validate import all_canonical, assume_canonical

BATCH_BYTES = 256 * 1024  # rows handed to SQLite in one INSERT


def run_sync_back(options: Options, console: Console, report: RunReport) -> None:
    """The pipeline. Raises MigrationError with the one line to show."""
    from models import Base

    started = time.perf_counter()
    run = Run(options, console, report)
    report.start(options)
    dest = options.sqlite_path
    console.step("🔄", f"Catching todo.db up with PostgreSQL ({options.mode})")
    console.detail(f"source: {options.target.masked} (schema {options.schema})")
    console.detail(f"target: {dest}")
    check_file(run, dest)  # STEP 1
    source = steps.inspect_source(run)  # STEP 2
    try:
        plan = steps.plan_from_models(run, source)
        require_row_ids(plan)
        steps.refuse_file_schema_differences(run, source)
    finally:
        source.close()  # our own read lock would keep our commit waiting
    conn = connect_snapshot(run)  # STEP 3
    try:
        with conn.cursor() as cur:
            refuse_values_without_app_form(cur, plan_export(run, cur, Base.metadata))  # against the models
        deltas = catch_up_file(run, conn, source, plan)  # STEPS 4-6
    except psycopg2.Error as exc:
        raise session.explain_failure(
            exc,
            options.target,
            "comparing",
            schema=options.schema,
            lock_timeout=options.lock_timeout,
            tables=[],
        ) from None
    finally:
        session.rollback_quietly(conn)
        conn.close()
    report.duration_s = time.perf_counter() - started
    print_sync_summary(run, deltas, target="todo.db", source="PostgreSQL")


def check_file(run: Run, dest: Path) -> None:
    if not dest.exists():
        raise UsageError(
            f"{str(dest)!r} does not exist: nothing to catch up",
            f"export first: --reverse --sqlite-path {dest} (then --reverse --sync keeps it up to date)",
        )
    refuse_if_open(dest, "changing")


def catch_up_file(run: Run, conn, source: Source, plan: Plan) -> dict[str, TableDelta]:
    o = run.options
    db = _open_for_writing(o.sqlite_path)
    writer = replace(source, conn=db)
    deltas: dict[str, TableDelta] = {}
    try:
        db.execute("BEGIN IMMEDIATE")  # STEP 4: writers wait until we are done, readers go on
        validation = assume_canonical(plan)
        _warn_if_another_database(run, ledger.file_source(db))
        deltas = _compare(run, conn, writer, plan, validation)
        overwriting = refuse_file_changed(run, db, deltas)  # STEP 5
        run.report.delta = {name: d.recordable() for name, d in deltas.items()}
        print_delta(run, plan, deltas)
        if o.dry_run or not (any(d.changes for d in deltas.values()) or overwriting):
            db.execute("ROLLBACK")  # nothing to do: nothing written
            return deltas
        apply_to_file(run, db, plan, deltas)  # STEP 6
        after = verify_file_synced(run, conn, writer, plan, deltas)
        entries = [ledger.FileEntry(n, d.sqlite_rows, d.sqlite_digest.hexdigest()) for n, d in after.items()]
        ledger.record_in_file(db, entries, job="sync", source=postgres_named(o))
        with run.phase("commit"):
            db.execute("COMMIT")
        run.report.committed = True
    except BaseException as exc:
        rolled_back = roll_back_file(db)
        if isinstance(exc, sqlite3.Error):
            raise explain_sqlite_write_error(exc, o.sqlite_path, rolled_back=rolled_back) from None
        raise
    finally:
        for d in deltas.values():
            d.close()
        db.close()
    return deltas


def roll_back_file(db: sqlite3.Connection) -> bool:
    """Undo this run's writes to todo.db; whether the file is back as it was. After an I/O error
    (a full disk) SQLite has already ended the transaction but left the old pages in the
    -journal: they are written back by the next read, so one is made here, not left to the app."""
    try:
        if db.in_transaction:
            db.execute("ROLLBACK")
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        return False
    return True


def _warn_if_another_database(run: Run, recorded: str | None) -> None:
    """todo.db is made equal to whatever PostgreSQL is given: say so when it is not the one the
    last export/sync read (older ledgers recorded the server and database without the schema)."""
    o = run.options
    if recorded and recorded not in (postgres_named(o), o.target.masked):
        run.console.warn(  # on stderr, even with --quiet
            f"the last export/sync read {recorded}; this one reads {postgres_named(o)}: todo.db is made equal to it",
        )
        run.report.warnings.append(
            f"another PostgreSQL than last time: {recorded} then, {postgres_named(o)} now"
        )


def _open_for_writing(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
    db.text_factory = bytes
    register_sqlite_functions(db)
    return db


def _compare(run: Run, conn, writer: Source, plan: Plan, validation) -> dict[str, TableDelta]:
    run.console.step("🔍", "Comparing PostgreSQL with todo.db, row by row ...")
    deltas = {}
    with run.phase("compare"):
        for tp in plan.tables:
            with run.console.progress(tp.name, tp.source_rows) as bar:
                deltas[tp.name] = compare_table(conn, writer, tp, validation, bar.update, to_sqlite=True)
    return deltas


def refuse_file_changed(run: Run, db: sqlite3.Connection, deltas: dict[str, TableDelta]) -> bool:
    """todo.db must hold what the last export/sync left: otherwise someone wrote to it (the app,
    run on SQLite again?) and catching up would overwrite those rows. True where the ledger is to
    be rewritten anyway (--overwrite-changes), even if the values already agree."""
    now = {n: ledger.FileEntry(n, d.sqlite_rows, d.sqlite_digest.hexdigest()) for n, d in deltas.items()}
    changed = ledger.file_changed(ledger.read_file_entries(db), now)
    if not changed:
        return False
    if run.options.overwrite_changes:
        run.console.step(
            "⚠️", f"--overwrite-changes: todo.db changed since the last export/sync ({'; '.join(changed)})"
        )
        run.report.warnings.append(f"overwrote changes made in todo.db: {'; '.join(changed)}")
        return True
    name = run.options.sqlite_path.name
    if not ledger.read_file_entries(db):  # never exported: the app's own todo.db, say
        raise MigrationError(
            f"{name} was not made by --reverse (it holds no record of an export), so what it holds beyond "
            "PostgreSQL cannot be told from changes; nothing was changed",
            f"export afresh: --reverse --sqlite-path {run.options.sqlite_path.with_name('todo-back.db')}; or, to make "
            f"this file equal PostgreSQL anyway (its own rows are overwritten or deleted), --reverse --sync --overwrite-changes",
        )
    raise MigrationError(
        f"todo.db changed since the last export/sync ({'; '.join(changed)}); catching up would overwrite that; "
        "todo.db was not changed",
        "find out who wrote there (did the app run on SQLite?); to make todo.db equal PostgreSQL anyway, "
        "re-run with --overwrite-changes",
    )


def apply_to_file(run: Run, db: sqlite3.Connection, plan: Plan, deltas: dict[str, TableDelta]) -> None:
    """Deletes children first; then inserts and updates, parents first, as one upsert per batch,
    each value converted to the app's form by SQLite (the codecs' to_sqlite)."""
    run.console.step("✍️", "Applying the changes to todo.db ...")
    with run.phase("apply"):
        for tp in reversed(plan.tables):
            ids = deltas[tp.name].deleted_ids.tolist()
            for start in range(0, len(ids), DELETE_BATCH):
                db.execute(
                    f"DELETE FROM {tp.sqlite} WHERE {tp.row_key} IN (SELECT value FROM json_each(?))",
                    (json.dumps(ids[start : start + DELETE_BATCH]),),
                )
        for tp in plan.tables:
            d = deltas[tp.name]
            if d.updated:
                _free_unique_values(db, tp, d.sent_keys.tolist())
            if d.inserted or d.updated:
                _upsert(db, tp, d.rows_to_send, d.sent_lengths.tolist())


def _free_unique_values(db: sqlite3.Connection, tp: TablePlan, keys: list[int]) -> None:
    """As forward (sync.free_unique_values): SQLite too checks a unique index row by row."""
    unique = unique_text_columns(tp)
    names = [c.sqlite for c in tp.columns if c.name in unique]
    if names:
        sets = ", ".join(f"{n} = char(1) || {tp.row_key}" for n in names)
        db.execute(
            f"UPDATE {tp.sqlite} SET {sets} WHERE {tp.row_key} IN (SELECT value FROM json_each(?))",
            (json.dumps(keys),),
        )


def _upsert(db: sqlite3.Connection, tp: TablePlan, rows: IO[bytes], lengths: list[int]) -> None:
    names = ", ".join(c.sqlite for c in tp.columns)
    convert = ", ".join(c.codec.to_sqlite(f"column{i + 1}") for i, c in enumerate(tp.columns))
    updates = ", ".join(f"{c.sqlite} = excluded.{c.sqlite}" for c in tp.columns if c.name != tp.pk)
    head = f"INSERT INTO {tp.sqlite} ({names}) SELECT {convert} FROM (VALUES "
    tail = f") WHERE true ON CONFLICT ({tp.pk_column.sqlite}) DO UPDATE SET {updates}"
    rows.seek(0)
    batch: list[str] = []
    size = 0
    for length in lengths:  # a line may hold newlines inside its quoted values: read it by length
        line = rows.read(length).decode()
        batch.append(line[:-1])  # each line is a row of SQL literals, its newline dropped
        size += length
        if size >= BATCH_BYTES:
            db.execute(head + "(" + "),(".join(batch) + ")" + tail)
            batch, size = [], 0
    if batch:
        db.execute(head + "(" + "),(".join(batch) + ")" + tail)


def verify_file_synced(
    run: Run, conn, writer: Source, plan: Plan, deltas: dict[str, TableDelta]
) -> dict[str, TableDelta]:
    """Compare every changed table again, inside our transaction: it must now equal PostgreSQL;
    every written value must be in the app's form; no row may lack its parent."""
    c = run.console
    c.step("🔍", "Verifying todo.db: every changed table compared again, the app's form, foreign keys ...")
    after: dict[str, TableDelta] = {}
    problems = []
    with run.phase("verify"):
        validation = assume_canonical(plan)
        for tp in plan.tables:
            d = deltas[tp.name]
            if not d.changes:
                after[tp.name] = d
                continue
            again = compare_table(conn, writer, tp, validation, lambda n: None, to_sqlite=True)
            after[tp.name] = again
            if again.changes:
                problems.append(f"{tp.name}: {again.changes:,} rows still differ (e.g. id {_first(again)})")
            elif not all_canonical(writer, plan, tp, d.sent_keys.tolist()):
                problems.append(f"{tp.name}: a written value is not in the app's form")
            c.detail(f"{'❌' if problems else '✅'} {tp.name}: {again.sqlite_rows:,} rows, values match")
        orphans = writer.conn.execute("SELECT count(*) FROM pragma_foreign_key_check").fetchone()[0]
    if orphans:
        problems.append(f"{orphans} rows without their parent")
    if problems:
        raise VerificationFailed(
            f"verification failed: {problems[0]}; todo.db was not changed",
            "this should not happen: please report it with the --report output",
        )
    return after


def _first(delta: TableDelta) -> int:
    return next(ids[0] for ids in delta.first.values() if ids)
