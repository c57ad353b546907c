"""The steps the jobs share, each taking what it needs and returning what it found.

A job (migrate.py) calls them in order; each prints its own lines and records its own part of the
report. `Run` holds only what every step may use and nothing a step computes: the options, the
console and the report.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from psycopg2.extensions import connection as PgConnection
from psycopg2.extensions import cursor as PgCursor

from . import ledger, session
from .convert import INT32_MAX
from .errors import MigrationError, UsageError
from .load import (
    ChunkLog,
    copy_table,
    create_table_sql,
    foreign_key_sql,
    hash_source,
    high_water_id,
    key_and_index_sql,
    qualified,
    reset_sequence,
)
from .options import Options
from .output import Console, plural, print_checks, print_problems
from .plan import BOOKKEEPING_TABLES, Plan, build_plan, for_target
from .report import RunReport
from .schema_check import extra_rules, file_schema_differences, schema_differences
from .source import Source, as_text, explain_sqlite_error, open_source, quote_ident, schema_objects
from .target import connect, interruptible
from .validate import Validation, validate, write_rejects
from .verify import TableCheck, verify_all


@dataclass(frozen=True)
class Run:
    options: Options
    console: Console
    report: RunReport

    def phase(self, name: str):
        return self.console.phase(name, self.report.phases)


class VerificationFailed(MigrationError):
    """What PostgreSQL holds differs from what the source meant."""


# --- the source and the plan ----------------------------------------------------------------


def inspect_source(run: Run) -> Source:
    path = run.options.sqlite_path
    run.console.step("🔍", f"Analyzing SQLite database {path} ...")
    with run.phase("inspect"):
        source = open_source(path)
    tables = source.tables.values()
    run.console.detail(
        f"Found {plural(len(tables), 'table')}: "
        + ", ".join(
            f"{t.name} ({'unreadable' if t.row_count is None else plural(t.row_count, 'row')})"
            for t in tables
        )
    )
    run.report.source_tables = {t.name: t.row_count for t in tables}
    return source


def plan_from_models(run: Run, source: Source) -> Plan:
    """The target from models.py; every difference from todo.db named, refused unless allowed."""
    from models import Base  # the app's models: the one source of truth for the target schema

    o, c = run.options, run.console
    with run.phase("plan"):
        plan = build_plan(source, Base.metadata, schema=o.schema, conversions=o.conversions)
        known = {ix.name for t in Base.metadata.sorted_tables for ix in t.indexes}
        source.objects = schema_objects(source, known)
    if not any(t.in_source for t in plan.tables):
        expected = ", ".join(t.name for t in plan.tables)
        raise UsageError(
            f"{str(o.sqlite_path)!r} has none of the app's tables ({expected})",
            "pass --sqlite-path with the Todo app's todo.db",
        )
    _report_not_migrated(run, source)
    _say_bookkeeping(run, source, plan)
    run.report.drift = [vars(d) for d in plan.drift]
    if not plan.drift:
        return plan
    c.step("⚠️", f"todo.db and models.py differ in {plural(len(plan.drift), 'place')}:")
    for d in plan.drift:
        where = f"{d.table}.{d.column}" if d.column else d.table
        c.detail(f"{d.kind:<20} {where}: {d.detail}{'  (cannot be migrated)' if d.fatal else ''}")
    fatal = [d for d in plan.drift if d.fatal]
    if fatal:
        names = ", ".join(f"{d.table}.{d.column}" if d.column else d.table for d in fatal)
        raise MigrationError(
            f"todo.db cannot be mapped onto models.py ({names})",
            "fix the source table or the models; nothing was written",
        )
    if not o.allow_drift:
        raise MigrationError(
            f"todo.db and models.py differ in {plural(len(plan.drift), 'place')} ({run.console.listed()}); "
            f"{'writing to it' if o.reverse else 'migrating'} would leave data out or fill in defaults",
            "re-run with --allow-drift to proceed as listed, or align the models; nothing was written",
        )
    return plan


def _say_bookkeeping(run: Run, source: Source, plan: Plan) -> None:
    """Alembic's alembic_version is not the app's data and is not copied; what it records (the
    schema's revision) is said, with the command that records it in PostgreSQL."""
    for name in plan.ignored_tables:
        tool = BOOKKEEPING_TABLES.get(name.lower())
        if tool is None:
            continue
        try:
            revisions = [
                as_text(r) for (r,) in source.conn.execute(f"SELECT * FROM main.{quote_ident(name)}")
            ]
        except sqlite3.Error:
            revisions = []
        shown = ", ".join(revisions) or "none"
        run.console.step(
            "ℹ️",
            f"{name} ({tool}'s record of the schema revision: {shown}) is not copied; models.py makes the "
            f"target's schema. For {tool} to carry on there: alembic stamp {revisions[0] if revisions else 'head'}, "
            "against PostgreSQL, after the migration",
        )
        run.report.not_migrated.append({"kind": "table", "name": name, "table": name, "revisions": revisions})


def _report_not_migrated(run: Run, source: Source) -> None:
    """Views, triggers and indexes of todo.db that the models do not have: said, not silently lost."""
    run.report.not_migrated = [vars(o) for o in source.objects]
    if not source.objects:
        return
    run.console.step(
        "ℹ️", f"Not migrated (not in models.py): {plural(len(source.objects), 'schema object')} of todo.db:"
    )
    for obj in source.objects:
        on = "" if obj.kind == "view" else f" (on {obj.table})"  # a view's tbl_name is its own name
        run.console.detail(f"{obj.kind:<8} {obj.name}{on}: not migrated")


def connect_postgres(run: Run) -> tuple[PgConnection, session.ServerInfo]:
    """Connect (either direction), say to what and as whom."""
    o, c = run.options, run.console
    origin = "" if o.url_origin == "--postgres-url" else f" (from {o.url_origin})"
    c.step("🐘", f"Connecting to PostgreSQL {o.target.masked}{origin} ...")
    with run.phase("connect"):
        conn = connect(o.target)
        info = session.server_info(conn)
    encoding = "" if info.encoding == "UTF8" else f", encoding {info.encoding}"
    c.detail(f"✅ connected as {info.user}, PostgreSQL {info.version}{encoding}")
    run.report.target_version = info.version
    return conn, info


def connect_target(run: Run, plan: Plan) -> tuple[PgConnection, Plan]:
    """Connect; the plan's codecs then learn the target's encoding, so the pre-flight checks what
    the load will meet."""
    conn, info = connect_postgres(run)
    if info.encoding == "SQL_ASCII" and not run.options.reverse:
        note = (
            "the target database's encoding is SQL_ASCII: PostgreSQL stores text bytes unchecked, and the "
            "app's psycopg2 cannot read non-ASCII text back from it (UnicodeDecodeError); a database "
            "created WITH ENCODING 'UTF8' has none of that"
        )
        run.console.detail(f"⚠️ {note}")
        run.report.warnings.append(note)
    return conn, for_target(plan, replace(plan.conversions, target_encoding=info.encoding))


def sequence_marks(run: Run, source: Source, plan: Plan) -> dict[str, int]:
    """Each table's next id must continue after todo.db's highest (AUTOINCREMENT's mark included);
    where that is past what the models' integer id can hold, say so before anything is written."""
    marks = {tp.name: high_water_id(source, tp) for tp in plan.tables}
    for table, mark in marks.items():
        if mark >= INT32_MAX:
            counter = plan.table(table).source.sequence if plan.table(table).source else None
            reach = (
                f"todo.db's AUTOINCREMENT counter for {table} (sqlite_sequence) is at {counter:,}, past "
                f"{INT32_MAX:,}"
                if isinstance(counter, int) and counter > INT32_MAX
                else f"{table}: ids reach {INT32_MAX:,}"
            )
            line = (f"{reach}, the most the models' integer id holds; the sequence will be exhausted and the "
                    f"app's next insert into {table} will fail (widen the id column)")  # fmt: skip
            run.console.step("⚠️", line)
            run.report.warnings.append(line)
    return marks


def exact_preflight(run: Run, source: Source, plan: Plan) -> Validation:
    """Find and list every value PostgreSQL would refuse or change; refuse, or set rows aside."""
    o, c = run.options, run.console
    c.step("🧪", "Checking every value against the models (pre-flight) ...")
    with run.phase("validate"):
        try:
            validation = validate(source, plan, skip_invalid=o.skip_invalid)
        except sqlite3.Error as exc:
            raise explain_sqlite_error(exc, o.sqlite_path) from None
    run.report.set_validation(validation)
    print_problems(c, validation, rejects_path=o.rejects_path if o.skip_invalid else None, plan=plan)
    if validation.groups and not o.skip_invalid:
        groups = validation.groups
        first = groups[0]
        if o.verify_only:  # nothing to migrate: the check needs the migration's own flags
            raise MigrationError(
                f"{o.sqlite_path.name} has {plural(validation.problem_count, 'value')} a migration without "
                f"--on-invalid skip would refuse ({c.listed()}), e.g. {first.kind} in {first.table}."
                f"{first.column}, {first.example}; nothing was compared",
                "if the migration set rows aside or converted values, repeat its flags with --verify-only "
                "(--on-invalid skip, --epoch-unit, --strip-nul)",
            )
        raise MigrationError(
            f"{o.sqlite_path.name} has {plural(validation.problem_count, 'value')} PostgreSQL would refuse or "
            f"change ({c.listed()}), e.g. {first.kind} in {first.table}.{first.column}, {first.example}; "
            "nothing was written",
            "fix them in todo.db, or re-run with --on-invalid skip to migrate the rest and write those rows "
            "to a rejects file"
            + (" (--strip-nul removes NUL bytes)" if any(g.kind == "nul_byte" for g in groups) else "")
            + (
                " (--epoch-unit converts epoch numbers)"
                if any(g.kind == "epoch_number" for g in groups)
                else ""
            ),
        )
    return validation


def prepare_rejects(run: Run, source: Source, plan: Plan, validation: Validation) -> Path | None:
    """Write rejected rows to a temp file now; it is renamed into place only after COMMIT."""
    path = run.options.rejects_path
    if not run.options.skip_invalid or not sum(validation.rejected.values()) or path is None:
        return None
    try:
        tmp, written = write_rejects(source, plan, validation, path)
    except OSError as exc:
        raise MigrationError(
            f"cannot write the rejects file {path} ({exc.strerror})",
            "pass --rejects PATH in a writable directory; nothing was written",
        ) from None
    short = {t: n for t, n in validation.rejected.items() if written[t] != n}
    if short:
        tmp.unlink()
        raise MigrationError(
            "the rejects file would not hold every rejected row ("
            + ", ".join(f"{t}: {written[t]:,} of {n:,}" for t, n in short.items())
            + ")",
            "this should not happen: please report it with the --report output; nothing was written",
        )
    return tmp


# --- inside the target's transaction --------------------------------------------------------


def check_target(run: Run, cur: PgCursor, plan: Plan, confirm: Callable[[str], bool]) -> dict[str, int]:
    """The app's tables the target already has: refused unless --force-recreate, which asks first
    on a terminal when they hold rows (`confirm` asks at most once a run)."""
    o, c = run.options, run.console
    ledger.refuse_foreign(cur, o.schema)
    existing = session.existing_tables(cur, o.schema, [(tp.name, qualified(tp)) for tp in plan.tables])
    if not existing:
        c.detail(f"✅ schema {o.schema} has none of the app's tables yet")
        return existing
    listing = ", ".join(f"{name} ({n:,} rows)" for name, n in existing.items())
    if not o.force_recreate:
        raise MigrationError(
            f"PostgreSQL {o.target.masked} already has the app's tables: {listing}",
            "re-run with --force-recreate to replace them (one transaction: they survive if anything fails), "
            "or use --verify-only to compare them with todo.db",
        )
    c.step("🗑️", f"--force-recreate: will replace {listing}")
    if any(existing.values()) and not o.dry_run and not o.yes and sys.stdin.isatty():
        if not confirm(f"Replace {listing} in {o.target.masked}?"):
            raise MigrationError("not confirmed", "nothing was changed; pass --yes to skip the question")
    return existing


def create_tables(run: Run, cur: PgCursor, plan: Plan, existing: dict[str, int]) -> None:
    session.ensure_schema(cur, run.options.schema)
    if existing:
        cur.execute("DROP TABLE " + ", ".join(qualified(plan.table(n)) for n in existing))
    run.console.step("🏗️", "Creating PostgreSQL tables from models.py ...")
    with run.phase("create tables"):
        for tp in plan.tables:
            cur.execute(create_table_sql(tp))
            run.console.detail(f"✅ {qualified(tp)}")
        refuse_taken_names(cur, plan, run.options.schema)


def refuse_taken_names(cur: PgCursor, plan: Plan, schema: str) -> None:
    """The names the models give their keys, indexes and sequences must be free in the schema (our
    own tables are new, so whatever holds one belongs to something else). Otherwise the index
    builds fail after the whole copy, which the dry run (no indexes) cannot see, and PostgreSQL
    silently names a primary key or a sequence 'tasks_pkey1' instead. Checked by dry runs too."""
    wanted = {}  # name -> what the models make of it
    for tp in plan.tables:
        wanted[f"{tp.name}_pkey"] = f"the primary key of {tp.name}"
        for index in tp.table.indexes:
            wanted[index.name] = f"an index on {tp.name}"
    cur.execute(
        "SELECT c.relname, CASE c.relkind WHEN 'i' THEN 'an index' WHEN 'S' THEN 'a sequence' "
        "WHEN 'v' THEN 'a view' ELSE 'a table' END, coalesce(t.relname, '') "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_index i ON i.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = i.indrelid "
        "WHERE n.nspname = %s AND c.relname = ANY(%s) ORDER BY 1",
        (schema, list(wanted)),
    )
    taken = [(name, f"{kind}{' on ' + table if table else ''}") for name, kind, table in cur.fetchall()]
    for tp in plan.tables:
        cur.execute("SELECT pg_get_serial_sequence(%s, %s)", (qualified(tp), tp.pk))
        got = (cur.fetchone()[0] or "").rsplit(".", 1)[-1].strip('"')
        if got and got != f"{tp.name}_{tp.pk}_seq":
            taken.append((f"{tp.name}_{tp.pk}_seq", "another relation"))
            wanted[f"{tp.name}_{tp.pk}_seq"] = f"the id sequence of {tp.name}"
    if taken:
        listing = "; ".join(f"{name} is {what}, the name of {wanted[name]}" for name, what in taken)
        raise MigrationError(
            f"schema {schema} already uses names the models give: {listing}",
            "rename or drop those (ALTER INDEX/TABLE/SEQUENCE … RENAME TO …), or use --schema with another schema",
            target_untouched=True,
        )


def copy_rows(
    run: Run,
    cur: PgCursor,
    source: Source,
    plan: Plan,
    validation: Validation,
    should_stop: Callable[[], bool],
) -> dict[str, ChunkLog] | None:
    """COPY every table; None if `should_stop` said to stop (the rows sent so far are rolled back)."""
    c = run.console
    logs: dict[str, ChunkLog] = {}
    with run.phase("copy"):
        for tp in plan.tables:
            if tp.source is None:
                c.step("📦", f"{tp.name}: not in todo.db, created empty")
                logs[tp.name] = ChunkLog()
                continue
            expected = tp.source_rows - validation.rejected[tp.name]
            c.step("📦", f"Migrating {tp.name} ({expected:,} rows) ...")
            with c.progress(tp.name, expected) as bar:
                log = copy_table(
                    cur, source, tp, validation, lambda chunk, bar=bar: bar.update(chunk.rows), should_stop
                )
            if log is None:
                return None
            logs[tp.name] = log
            c.detail(f"✅ {log.total_rows:,} rows copied")
    return logs


def build_keys_and_indexes(run: Run, cur: PgCursor, plan: Plan, high_water: dict[str, int]) -> None:
    """Keys and indexes, then ANALYZE, then the foreign keys: adding one runs a query that looks
    for orphans, and on a table with no statistics the planner takes every child key for non-NULL
    and hashes the whole parent (1M tasks: a 4MB work_mem hash in batches). With statistics it
    probes the parent's new primary key for the keys that are set, which saves about what the
    ANALYZE costs (the statistics are wanted at COMMIT in any case)."""
    run.console.step("🔗", "Building primary keys, indexes, foreign keys and sequences ...")
    with interruptible():
        with run.phase("indexes"):
            for tp in plan.tables:
                for statement in key_and_index_sql(tp):
                    cur.execute(statement)
        with run.phase("analyze"):
            for tp in plan.tables:
                cur.execute(f"ANALYZE {qualified(tp)}")
        with run.phase("foreign keys"):
            for tp in plan.tables:
                for statement in foreign_key_sql(tp):
                    cur.execute(statement)
        with run.phase("sequences"):
            for tp in plan.tables:
                reset_sequence(cur, tp, high_water.get(tp.name, 0))


def _verifying(run: Run) -> None:
    values = ", a checksum of every value" if run.options.verify else ""
    run.console.step("🔍", f"Verifying: row counts{values}, foreign keys, sequences ...")


def verify_loaded(
    run: Run, cur: PgCursor, source: Source, plan: Plan, validation: Validation, logs: dict[str, ChunkLog],
    *, name_rows: bool,
) -> list[TableCheck]:  # fmt: skip
    """What this run loaded, read back. Without `name_rows` (the fast path) a difference is
    returned unprinted: the run starts over the exact way, which names the rows."""
    _verifying(run)
    with run.phase("verify"):
        checks = verify_all(cur, source, plan, validation, logs, values=run.options.verify, diff=name_rows)
    run.report.set_checks(checks)
    if name_rows or all(ch.ok for ch in checks):
        print_checks(run.console, checks, values=run.options.verify)
        _fail_unless_ok(checks, "verification failed in", "this should not happen: please report it with the "
                        "--report output", target_untouched=True)  # fmt: skip
    return checks


def record_ledger(run: Run, cur: PgCursor, plan: Plan, checks: list[TableCheck]) -> None:
    """What this load left, by table (its rows, written by this transaction), so that a later
    --sync can tell whether anyone else has written there since."""
    xid = ledger.this_transaction(cur)
    entries = [ledger.Entry(ch.table, ch.target_rows, [xid]) for ch in checks]
    ledger.record(
        cur,
        run.options.schema,
        entries,
        job=ledger.job_named("migrate", run.options.epoch_unit),
        source=str(run.options.sqlite_path.resolve()),
    )


def verify_existing(
    run: Run, cur: PgCursor, source: Source, plan: Plan, validation: Validation
) -> list[TableCheck]:
    """An existing target against the source: its schema against the models, and every value.
    Differing values are the first thing the failure says, then the schema."""
    differences = _schema_differences(run, cur, plan)
    _verifying(run)
    logs = {}
    with run.phase("verify"):
        for tp in plan.tables:
            with run.console.progress(
                f"{tp.name} (source checksums)", tp.source_rows - validation.rejected[tp.name]
            ) as bar:
                logs[tp.name] = hash_source(source, tp, validation, lambda ch, bar=bar: bar.update(ch.rows))
        checks = verify_all(cur, source, plan, validation, logs, values=True, fresh=False)
    run.report.set_checks(checks)
    print_checks(run.console, checks, values=True)
    if not all(c.ok for c in checks):
        _fail_unless_ok(checks, "PostgreSQL differs from todo.db in", _how_to_make_equal(run, cur, plan))
    if differences:
        raise MigrationError(
            f"PostgreSQL's schema differs from models.py in {plural(len(differences), 'place')} "
            f"({run.console.listed()}), e.g. {differences[0]}",
            "re-run the migration with --force-recreate to rebuild the tables from the models",
        )
    return checks


def refuse_file_schema_differences(run: Run, source: Source) -> None:
    """A todo.db the way back made (or keeps up to date) must have the schema the app creates on
    SQLite: a missing unique index or foreign key would let the app write what it never could."""
    from models import Base

    differences = file_schema_differences(source.conn, list(Base.metadata.sorted_tables))
    if not differences:
        return
    run.report.schema_differences = differences
    run.console.step(
        "⚠️", f"{source.path.name}'s tables and models.py differ in {plural(len(differences), 'place')}:"
    )
    for d in differences:
        run.console.detail(d)
    raise MigrationError(
        f"{source.path}'s schema differs from the one the app creates (models.py) in "
        f"{plural(len(differences), 'place')} ({run.console.listed()}), e.g. {differences[0]}",
        f"export afresh: --reverse --force-recreate --sqlite-path {source.path}; nothing was changed",
    )


def _how_to_make_equal(run: Run, cur: PgCursor, plan: Plan) -> str:
    """Which side is to be kept decides the advice: after --reverse, PostgreSQL is the live one.
    Forward, a --sync would refuse a target someone else wrote to since the last migrate/sync (its
    ledger says so): the advice then says that first, and --overwrite-changes."""
    o = run.options
    if o.reverse:
        return (
            f"to make {o.sqlite_path} equal PostgreSQL: --reverse --sync (or export afresh with "
            "--reverse --force-recreate); PostgreSQL is not changed by either"
        )
    entries, written = ledger.written_since(cur, o.schema, [(tp.name, qualified(tp)) for tp in plan.tables])
    if not entries:
        return (
            "PostgreSQL holds no record of a migrate/sync by this tool (an older version, or by hand), so a "
            "--sync cannot tell its rows from someone else's: --sync --overwrite-changes makes it equal todo.db, "
            "or re-run the migration with --force-recreate"
        )
    if written:
        return (
            f"someone wrote to PostgreSQL since the last migrate/sync ({', '.join(written)}: is the app already "
            "pointed at it?); to make it equal todo.db anyway: --sync --overwrite-changes, or re-run the "
            "migration with --force-recreate"
        )
    return (
        "to catch PostgreSQL up with todo.db: --sync (only the differences, in one transaction); "
        "to rebuild it from todo.db: re-run the migration with --force-recreate"
    )


def _fail_unless_ok(checks: list[TableCheck], what: str, fix: str, *, target_untouched: bool = False) -> None:
    bad = [ch for ch in checks if not ch.ok]
    if bad:
        raise VerificationFailed(
            f"{what} {', '.join(ch.table for ch in bad)}: {bad[0].problem()}",
            fix,
            target_untouched=target_untouched,
        )


def _schema_differences(run: Run, cur: PgCursor, plan: Plan) -> list[str]:
    """A dropped unique index, foreign key, NOT NULL or default, or a changed type, would let the
    app write what the models forbid: --verify-only compares the schema too."""
    c = run.console
    c.step(
        "🔍", "Comparing the target's tables with models.py (types, NOT NULLs, defaults, keys, indexes) ..."
    )
    tables = [tp.table for tp in plan.tables]
    differences = schema_differences(cur, tables, run.options.schema)
    if not run.options.reverse:  # PostgreSQL is the side the app will write to
        differences += extra_rules(cur, tables, run.options.schema)
    run.report.schema_differences = differences
    if not differences:
        c.detail("✅ the schema matches the models")
    for line in differences:
        c.detail(f"❌ {line}")
    return differences
