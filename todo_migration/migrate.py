"""The forward job: todo.db into PostgreSQL, in one transaction, verified.

    STEP 1  inspect todo.db, inside one read snapshot that every later read shares
    STEP 2  plan the target from models.py (every difference from todo.db named)
    STEP 3  connect to PostgreSQL (its encoding joins the plan)
    STEP 4  find todo.db's highest ids, for the sequences (an exhausted one is said now)
    STEP 5  load, by the fast-or-exact policy (load_fast_or_exact): each attempt is one transaction
            that checks the target, creates the tables, COPYs the rows, builds keys, indexes,
            foreign keys and sequences, verifies, and commits
    STEP 6  report: the per-table counts and the one result line

--verify-only takes steps 1-4, then the exact pre-flight and a read-only comparison (check_existing).
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
from psycopg2.extensions import connection as PgConnection

from . import session, steps
from .errors import MigrationError
from .load import ChunkLog, qualified
from .options import Options
from .output import Console, print_dry_run, print_summary
from .plan import Plan
from .report import RunReport
from .source import Source, explain_sqlite_error
from .steps import Run
from .validate import Validation, ValuesCheck, assume_canonical
from .verify import TableCheck

# SQLSTATE classes of a value PostgreSQL refused: data exceptions and integrity violations
# (NOT NULL, unique, foreign key). On the fast path they mean: look at the values exactly.
REFUSED_VALUE_CLASSES = ("22", "23")


@dataclass
class Loaded:
    """What a finished attempt (or a dry run) leaves for the report."""

    validation: Validation
    existing: dict[str, int]
    logs: dict[str, ChunkLog] = field(default_factory=dict)
    checks: list[TableCheck] = field(default_factory=list)


@dataclass
class Doubt:
    """The fast path met something it cannot vouch for; the transaction was rolled back. `error`
    is what to report if the exact pre-flight then finds nothing to explain it."""

    reason: str
    error: MigrationError | None = None

    @classmethod
    def not_canonical(cls, table: str) -> Doubt:
        return cls(f"{table} holds values that need converting or checking")


def run_migration(options: Options, console: Console, report: RunReport) -> None:
    """The pipeline. Raises MigrationError with the one line to show."""
    started = time.perf_counter()
    run = Run(options, console, report)
    report.start(options)
    if options.reverse:  # --reverse --verify-only: the same comparison, PostgreSQL the side kept
        console.step("🚀", f"PostgreSQL → SQLite check ({options.mode}): todo.db against PostgreSQL")
        console.detail(f"source: {options.target.masked} (schema {options.schema})")
        console.detail(f"todo.db: {options.sqlite_path}")
    else:
        console.step("🚀", f"SQLite → PostgreSQL migration ({options.mode})")
        console.detail(f"source: {options.sqlite_path}")
        console.detail(f"target: {options.target.masked} (schema {options.schema})")
    source = steps.inspect_source(run)  # STEP 1
    try:
        plan = steps.plan_from_models(run, source)  # STEP 2
        conn, plan = steps.connect_target(run, plan)  # STEP 3
        try:
            marks = steps.sequence_marks(run, source, plan)  # STEP 4
            if options.verify_only:
                loaded = check_existing(run, conn, source, plan)
            else:
                loaded = load_fast_or_exact(run, conn, source, plan, marks)  # STEP 5
        finally:
            conn.close()
        report.duration_s = time.perf_counter() - started  # STEP 6
        report.set_tables(table_counts(options, plan, loaded))
        print_summary(
            console, report, plan, loaded.validation, mode=options.mode, allow_drift=options.allow_drift
        )
    finally:
        source.close()


# --- STEP 5: the fast path, and the exact path when it has a doubt ---------------------------


def load_fast_or_exact(
    run: Run, conn: PgConnection, source: Source, plan: Plan, marks: dict[str, int]
) -> Loaded:
    """A named retry policy, as pgloader retries a failed batch row by row. The fast path loads
    as if every value were canonical while the values check confirms it, and PostgreSQL's parser
    and the read-back judge the rest. At the first doubt the attempt is rolled back and the exact
    pre-flight decides: it refuses with the list, or converts and sets rows aside; then one more
    attempt loads what it decided. A dry run takes the exact path at once."""
    confirm = ConfirmOnce(run.console)
    check = start_values_check(run, source, plan)
    doubt: Doubt | None = None
    if check is not None:
        try:
            if check.finding_so_far() is None:  # found before anything was loaded: no need to try
                outcome = attempt(run, conn, source, plan, marks, assume_canonical(plan), confirm, check)
                if isinstance(outcome, Loaded):
                    return outcome
                doubt = outcome
                run.console.step("🔁", f"{doubt.reason}: rolled back; checking every value in detail ...")
        finally:
            check.close()
    validation = steps.exact_preflight(run, source, plan)
    if doubt is not None and doubt.error is not None and validation == assume_canonical(plan):
        raise doubt.error  # the exact path would send the very same bytes: the failure stands
    outcome = attempt(run, conn, source, plan, marks, validation, confirm, None)
    assert isinstance(outcome, Loaded)  # without a values check every failure raises
    return outcome


def attempt(
    run: Run,
    conn: PgConnection,
    source: Source,
    plan: Plan,
    marks: dict[str, int],
    validation: Validation,
    confirm: ConfirmOnce,
    check: ValuesCheck | None,
) -> Loaded | Doubt:
    """One transaction: (drop) create, COPY, keys and indexes, verify, COMMIT. With `check` (the
    fast path), a refused value, the check's finding or a differing read-back is a Doubt, rolled
    back; otherwise every failure raises, rolled back."""
    o = run.options
    rejects = None if o.dry_run else steps.prepare_rejects(run, source, plan, validation)
    doing = "checking the target"
    try:
        with conn.cursor() as cur:
            session.begin(cur, read_only=False, lock_timeout=o.lock_timeout, wait=o.wait, schema=o.schema)
            existing = steps.check_target(run, cur, plan, confirm)
            doing = "creating tables"
            steps.create_tables(run, cur, plan, existing)
            if o.dry_run:
                conn.rollback()
                print_dry_run(run.console, plan, validation, existing)
                return Loaded(validation, existing)
            doing = "copying rows"
            if check is not None and check.alongside:
                run.console.step("🧪", "Checking every value against the models, alongside the load ...")
            logs = steps.copy_rows(run, cur, source, plan, validation, lambda: _found(check) is not None)
            if logs is None:  # the values check found a row; no use loading the rest
                return _rolled_back(conn, rejects, Doubt.not_canonical(str(_found(check))))
            doing = "building indexes and keys"
            steps.build_keys_and_indexes(run, cur, plan, marks)
            doing = "verifying"
            checks = steps.verify_loaded(run, cur, source, plan, validation, logs, name_rows=check is None)
            if check is not None:
                doubt = confirm_check(run, plan, check, checks)
                if doubt is not None:
                    return _rolled_back(conn, rejects, doubt)
            steps.record_ledger(run, cur, plan, checks)
            doing = "committing"
            with run.phase("commit"):
                conn.commit()
    except BaseException as exc:
        _discard(rejects)
        session.rollback_quietly(conn)
        if isinstance(exc, sqlite3.Error):  # e.g. a corrupt page met mid-copy
            raise explain_sqlite_error(exc, o.sqlite_path) from None
        if isinstance(exc, psycopg2.Error):
            error = _explain(run, plan, exc, doing)
            if check is not None and (exc.pgcode or "")[:2] in REFUSED_VALUE_CLASSES:
                return Doubt(f"PostgreSQL refused a value while {doing}", error)
            raise error from None
        raise
    if rejects is not None and o.rejects_path is not None:
        os.replace(rejects, o.rejects_path)
        run.report.rejects_path = str(o.rejects_path)
    return Loaded(validation, existing, logs, checks)


def _found(check: ValuesCheck | None) -> str | None:
    return check.finding_so_far() if check is not None else None


def _rolled_back(conn: PgConnection, rejects: Path | None, doubt: Doubt) -> Doubt:
    _discard(rejects)
    session.rollback_quietly(conn)
    return doubt


def _explain(run: Run, plan: Plan, exc: psycopg2.Error, doing: str) -> MigrationError:
    o = run.options
    return session.explain_failure(
        exc,
        o.target,
        doing,
        schema=o.schema,
        lock_timeout=o.lock_timeout,
        tables=[t.name for t in plan.tables],
    )


def start_values_check(run: Run, source: Source, plan: Plan) -> ValuesCheck | None:
    """The fast path's check: alongside the load, on a second connection that sees exactly our
    snapshot; for a WAL source that an app wrote to after our snapshot began (so that no second
    connection can be shown to see it), here and now on this one. None for a dry run, which
    lists every problem and so needs the exact pre-flight. Without the read-back (--no-verify)
    the check is the exact test."""
    o = run.options
    if o.dry_run:
        return None
    try:
        readers = source.extra_readers(1)
        if readers:
            return ValuesCheck(source, plan, shape=o.verify, conn=readers[0])
        run.console.step("🧪", "Checking every value against the models ...")
        with run.phase("validate"):
            return ValuesCheck(source, plan, shape=o.verify)
    except sqlite3.Error as exc:
        raise explain_sqlite_error(exc, o.sqlite_path) from None


def confirm_check(run: Run, plan: Plan, check: ValuesCheck, checks: list[TableCheck]) -> Doubt | None:
    """Wait for the values check: the fast path stands only if it found every value canonical
    and the read-back matched what was sent."""
    try:
        table = check.result()
    except sqlite3.Error as exc:
        raise explain_sqlite_error(exc, run.options.sqlite_path) from None
    if check.alongside:
        run.report.phases["validate (alongside load)"] = check.seconds
    if table is not None:
        return Doubt.not_canonical(table)
    if not all(ch.ok for ch in checks):  # the exact path's own verification names the rows
        return Doubt("the read-back differs from what was sent")
    run.report.set_validation(assume_canonical(plan))
    where = ", alongside the load" if check.alongside else ""
    run.console.step("🧪", f"Checked every value against the models{where}:")
    run.console.detail(
        f"✅ every value is already in PostgreSQL's form; no problems found ({check.seconds:.2f}s)"
    )
    return None


class ConfirmOnce:
    """--force-recreate asks at most once a run, even across two attempts."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._answer: bool | None = None

    def __call__(self, question: str) -> bool:
        if self._answer is None:
            self._answer = self._console.confirm(question)
        return self._answer


# --- --verify-only ---------------------------------------------------------------------------


def check_existing(run: Run, conn: PgConnection, source: Source, plan: Plan) -> Loaded:
    """An existing target against todo.db, in a read-only transaction: the exact pre-flight (so
    rejected rows are expected to be absent), the schema, then every value."""
    o = run.options
    validation = steps.exact_preflight(run, source, plan)
    try:
        with conn.cursor() as cur:
            session.begin(cur, read_only=True, lock_timeout=o.lock_timeout, wait=o.wait, schema=o.schema)
            existing = session.existing_tables(
                cur, o.schema, [(tp.name, qualified(tp)) for tp in plan.tables]
            )
            missing = [t.name for t in plan.tables if t.name not in existing]
            if missing:
                raise MigrationError(
                    f"PostgreSQL {o.target.masked} has no {', '.join(missing)} in schema {o.schema}",
                    "run the migration first (without --verify-only)",
                )
            checks = steps.verify_existing(run, cur, source, plan, validation)
            if o.reverse:  # the file is the side checked: its schema too, as the app creates it
                steps.refuse_file_schema_differences(run, source)
    except psycopg2.Error as exc:
        raise _explain(run, plan, exc, "verifying") from None
    finally:
        session.rollback_quietly(conn)
    return Loaded(validation, existing, checks=checks)


# --- STEP 6 ----------------------------------------------------------------------------------


def table_counts(options: Options, plan: Plan, loaded: Loaded) -> dict[str, dict[str, int]]:
    """Read, written (or checked), rejected and converted per table; read = written + rejected,
    as the verification proved."""
    v = loaded.validation
    sent = {ch.table: ch.sent_rows for ch in loaded.checks}
    counts = {}
    for tp in plan.tables:
        rejected = v.rejected[tp.name]
        written = tp.source_rows - rejected if options.dry_run else sent.get(tp.name, 0)
        counts[tp.name] = {
            "read": tp.source_rows,
            "written": written,
            "rejected": rejected,
            "converted": sum(n for (t, _, _), n in v.conversions.items() if t == tp.name),
        }
    return counts


def _discard(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink()
        except OSError:
            pass
