"""The command line: parse options once, then run the pipeline step by step.

inspect source → plan (from the models) → connect → check the target → load (COPY into bare
tables, the values check alongside) → build keys, indexes, foreign keys and sequences → verify →
commit → report. Everything that writes to PostgreSQL happens inside one transaction; any failure
before COMMIT rolls it back, so the target is exactly as it was. When the values check, PostgreSQL
or the read-back has a doubt, the exact pre-flight (validate) decides and the load starts over;
a dry run and --verify-only take the exact pre-flight first.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sqlite3
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg2
import psycopg2.errors
from dotenv import dotenv_values
from psycopg2 import sql

from . import __version__
from . import target as pg
from .convert import INT32_MAX, Conversions
from .errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    INTERRUPTED,
    MigrationError,
    UsageError,
)
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
from .output import Console, plural
from .plan import Plan, build_plan, for_target
from .report import RunReport
from .schema_check import schema_differences
from .source import Source, explain_sqlite_error, open_source, schema_objects
from .validate import Validation, ValuesCheck, assume_canonical, validate, write_rejects
from .verify import TableCheck, verify_all

DEFAULT_SQLITE_PATH = "./todo.db"
DEFAULT_LOCK_TIMEOUT = "10s"
# One key for "a migration into this database is running": transaction-scoped, so it is released
# by COMMIT/ROLLBACK or a dropped connection, and works through PgBouncer's transaction pooling.
ADVISORY_LOCK_NAMESPACE = 0x70676D69  # 'pgmi'


class VerificationFailed(MigrationError):
    """The read-back differs from what was sent."""


class NeedsExactCheck(Exception):
    """The fast path met something it cannot vouch for: roll back and take the exact path.

    `error` is what to report if the exact pre-flight then finds nothing to explain it."""

    def __init__(self, reason: str, error: MigrationError | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error

    @classmethod
    def not_canonical(cls, table: str) -> NeedsExactCheck:
        return cls(f"{table} holds values that need converting or checking")


# SQLSTATE classes of a value PostgreSQL refused: data exceptions and integrity violations
# (NOT NULL, unique, foreign key). On the fast path they mean: look at the values exactly.
REFUSED_VALUE_CLASSES = ("22", "23")


EXAMPLES = """\
examples:
  check everything, change nothing:    python %(prog)s --dry-run
  ./todo.db into DATABASE_URL:         python %(prog)s
  explicit source and target:          python %(prog)s --sqlite-path /srv/todo.db \\
                                         --postgres-url 'postgresql://todo:PW@db:5432/todo?sslmode=require'
  replace existing tables, no prompt:  python %(prog)s --force-recreate --yes
  set bad rows aside, migrate the rest: python %(prog)s --on-invalid skip --rejects rejects.jsonl
  compare an existing target:          python %(prog)s --verify-only --report check.json

exit codes: 0 success, 1 migration or verification failed (PostgreSQL left as it was),
            2 usage error (bad flag, missing file, bad URL), 130 interrupted (Ctrl-C)
"""


@dataclass(frozen=True)
class Options:
    """Everything the run needs, parsed once from the command line and the environment."""

    sqlite_path: Path
    postgres_url: str
    url_origin: str
    dry_run: bool = False
    force_recreate: bool = False
    yes: bool = False
    on_invalid: str = "fail"
    rejects_path: Path | None = None
    strip_nul: bool = False
    epoch_unit: str | None = None
    allow_drift: bool = False
    verify: bool = True
    verify_only: bool = False
    report_path: Path | None = None
    schema: str = "public"
    wait: bool = False
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT
    quiet: bool = False
    debug: bool = False

    @property
    def skip_invalid(self) -> bool:
        return self.on_invalid == "skip"

    @property
    def mode(self) -> str:
        return "verify-only" if self.verify_only else "dry-run" if self.dry_run else "migrate"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="migrate_sqlite_to_postgres.py",
        description="Move the Todo app's SQLite database (todo.db) to PostgreSQL in one verified "
        "transaction. The target schema comes from models.py.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # a typo such as --force-recreat must not silently mean something
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    src = p.add_argument_group("source and target")
    src.add_argument("--sqlite-path", metavar="PATH", default=DEFAULT_SQLITE_PATH,
                     help="the SQLite file to read, never modified (default ./todo.db); e.g. --sqlite-path /srv/app/todo.db")  # fmt: skip
    src.add_argument("--postgres-url", metavar="URL",
                     help="target, e.g. postgresql://todo:PW@localhost:5432/todo_phase5?sslmode=require "
                     "(default: DATABASE_URL from the environment, then ./.env)")  # fmt: skip
    src.add_argument("--schema", default="public", metavar="NAME",
                     help="PostgreSQL schema to create the tables in, created if missing (default public); e.g. --schema todo")  # fmt: skip
    run = p.add_argument_group("what to do")
    run.add_argument("--dry-run", action="store_true",
                     help="read the source, check the target, print the plan and every problem; change nothing")  # fmt: skip
    run.add_argument("--force-recreate", action="store_true",
                     help="drop and recreate the app's tables if the target has them (in the same transaction)")  # fmt: skip
    run.add_argument("-y", "--yes", action="store_true",
                     help="do not ask before --force-recreate replaces tables that hold rows")  # fmt: skip
    run.add_argument("--verify-only", action="store_true",
                     help="compare an existing target with the source value by value; write nothing")  # fmt: skip
    run.add_argument("--no-verify", dest="verify", action="store_false",
                     help="skip the value checksums after loading (row counts, orphans and sequences are still checked)")  # fmt: skip
    run.add_argument("--wait", action="store_true",
                     help="if another migration into this database is running, wait for it instead of failing")  # fmt: skip
    run.add_argument("--lock-timeout", default=DEFAULT_LOCK_TIMEOUT, metavar="DURATION",
                     help="how long to wait for locks held by other sessions (default 10s); e.g. --lock-timeout 1min")  # fmt: skip
    data = p.add_argument_group("data that PostgreSQL cannot store as it is")
    data.add_argument("--on-invalid", choices=("fail", "skip"), default="fail",
                      help="fail (default): refuse before writing anything; skip: migrate the rest and write "
                      "bad rows, and rows that depend on them, to the rejects file")  # fmt: skip
    data.add_argument("--rejects", metavar="PATH",
                      help="rejects file for --on-invalid skip (default: next to the source, todo.db.rejects.jsonl)")  # fmt: skip
    data.add_argument("--strip-nul", action="store_true",
                      help="remove NUL bytes from text instead of rejecting those values (counted in the summary)")  # fmt: skip
    data.add_argument("--epoch-unit", choices=("seconds", "milliseconds"),
                      help="read numbers in datetime columns (as other tools write them) as seconds or milliseconds "
                      "since 1970 UTC; without it they are refused, never guessed; e.g. --epoch-unit milliseconds")  # fmt: skip
    data.add_argument("--allow-drift", action="store_true",
                      help="proceed when todo.db and models.py differ (unknown columns or tables are left out, "
                      "missing columns get their default); every difference is reported")  # fmt: skip
    out = p.add_argument_group("output")
    out.add_argument(
        "--report", metavar="PATH", help="write a JSON report of the run, e.g. --report migration.json"
    )
    out.add_argument("-q", "--quiet", action="store_true", help="only errors and the final result line")
    out.add_argument("--debug", action="store_true", help="show the full traceback of an unexpected error")
    return p


def resolve_target_url(cli_url: str | None, environ: dict[str, str], dotenv_path: Path) -> tuple[str, str]:
    """--postgres-url, else DATABASE_URL from the environment, else from ./.env (real env wins)."""
    if cli_url is not None:
        return cli_url, "--postgres-url"
    if environ.get("DATABASE_URL"):
        return environ["DATABASE_URL"], "DATABASE_URL"
    if dotenv_path.is_file():
        value = dotenv_values(dotenv_path).get("DATABASE_URL")
        if value:
            return value, f"DATABASE_URL in {dotenv_path}"
    raise UsageError(
        "no PostgreSQL target given",
        "pass --postgres-url postgresql://USER:PASSWORD@HOST:5432/DBNAME or set DATABASE_URL (environment or ./.env)",
    )


def parse_options(argv: list[str] | None) -> Options:
    args = build_parser().parse_args(argv)
    url, origin = resolve_target_url(args.postgres_url, dict(os.environ), Path.cwd() / ".env")
    if args.dry_run and args.verify_only:
        raise UsageError("--dry-run and --verify-only cannot be combined", "choose one")
    if args.verify_only and args.force_recreate:
        raise UsageError(
            "--verify-only writes nothing, so --force-recreate makes no sense with it", "drop one"
        )
    if not args.verify and args.verify_only:
        raise UsageError("--verify-only with --no-verify would check nothing", "drop --no-verify")
    if not re.fullmatch(r"\s*\d+(\.\d+)?\s*(ms|s|min|h)?\s*", args.lock_timeout):
        raise UsageError(
            f"--lock-timeout {args.lock_timeout!r} is not a duration",
            "use e.g. --lock-timeout 10s, 500ms, 2min",
        )
    if not args.schema.strip():
        raise UsageError("--schema is empty", "pass a schema name, e.g. --schema public")
    sqlite_path = Path(args.sqlite_path).expanduser()
    rejects = Path(args.rejects).expanduser() if args.rejects else None
    if rejects is not None and not args.on_invalid == "skip":
        raise UsageError(
            "--rejects is used only with --on-invalid skip", "add --on-invalid skip or drop --rejects"
        )
    report = Path(args.report).expanduser() if args.report else None
    rejects = rejects or sqlite_path.with_name(sqlite_path.name + ".rejects.jsonl")
    refuse_output_over_source(sqlite_path, {"--rejects": rejects if args.on_invalid == "skip" else None,
                                            "--report": report})  # fmt: skip
    return Options(
        sqlite_path=sqlite_path,
        postgres_url=url,
        url_origin=origin,
        dry_run=args.dry_run,
        force_recreate=args.force_recreate,
        yes=args.yes,
        on_invalid=args.on_invalid,
        rejects_path=rejects,
        strip_nul=args.strip_nul,
        epoch_unit=args.epoch_unit,
        allow_drift=args.allow_drift,
        verify=args.verify,
        verify_only=args.verify_only,
        report_path=report,
        schema=args.schema.strip(),
        wait=args.wait,
        lock_timeout=args.lock_timeout,
        quiet=args.quiet,
        debug=args.debug,
    )


def refuse_output_over_source(source: Path, outputs: dict[str, Path | None]) -> None:
    """The tool never writes to its source: an output path that is todo.db, one of its -wal, -shm
    or -journal companions (through any symlink or hard link), or another output, is refused."""
    bases = {source, source.resolve()}  # SQLite names the companions after the file a symlink points at
    protected = [Path(f"{base}{suffix}") for base in bases for suffix in ("", "-wal", "-shm", "-journal")]
    seen: dict[Path, str] = {}
    for flag, path in outputs.items():
        if path is None:
            continue
        for other in protected:
            if _same_file(path, other):
                raise UsageError(
                    f"{flag} {str(path)!r} is the source database {other.name!r}: writing it would destroy todo.db",
                    f"pass another path, e.g. {flag} {source.with_name(source.name + '.rejects.jsonl' if flag == '--rejects' else 'migration-report.json')}",
                )
        resolved = path.resolve()
        if resolved in seen:
            raise UsageError(
                f"{flag} and {seen[resolved]} name the same file {str(path)!r}", "pass two paths"
            )
        seen[resolved] = flag


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


# --- the pipeline --------------------------------------------------------------------------


@dataclass
class Run:
    """What one run has learned so far; passed from step to step, reported at the end."""

    options: Options
    console: Console
    report: RunReport
    target: pg.Target
    source: Source | None = None
    plan: Plan | None = None
    validation: Validation | None = None
    logs: dict[str, ChunkLog] = field(default_factory=dict)
    checks: list[TableCheck] = field(default_factory=list)
    existing: dict[str, int] = field(default_factory=dict)
    high_water: dict[str, int] = field(default_factory=dict)  # todo.db's highest id per table
    confirmed: bool = False  # the user already said yes to replacing the tables

    def phase(self, name: str):
        return self.console.phase(name, self.report.phases)


def inspect_source(run: Run) -> None:
    o, c = run.options, run.console
    c.step("🔍", f"Analyzing SQLite database {o.sqlite_path} ...")
    with run.phase("inspect"):
        run.source = open_source(o.sqlite_path)
    tables = run.source.tables
    c.detail(
        f"Found {plural(len(tables), 'table')}: "
        + ", ".join(f"{t.name} ({t.row_count:,} rows)" for t in tables.values())
    )
    run.report.source_tables = {t.name: t.row_count for t in tables.values()}


def plan_from_models(run: Run) -> None:
    from models import Base  # the app's models: the one source of truth for the target schema

    assert run.source is not None
    o = run.options
    with run.phase("plan"):
        conversions = Conversions(strip_nul=o.strip_nul, epoch_unit=o.epoch_unit)
        run.plan = build_plan(run.source, Base.metadata, schema=o.schema, conversions=conversions)
        known = {ix.name for t in Base.metadata.sorted_tables for ix in t.indexes}
        run.source.objects = schema_objects(run.source, known)
    plan = run.plan
    report_not_migrated(run)
    if not any(t.in_source for t in plan.tables):
        expected = ", ".join(t.name for t in plan.tables)
        raise UsageError(
            f"{str(run.options.sqlite_path)!r} has none of the app's tables ({expected})",
            "pass --sqlite-path with the Todo app's todo.db",
        )
    run.report.drift = [vars(d) for d in plan.drift]
    if not plan.drift:
        return
    c = run.console
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
    if not run.options.allow_drift:
        raise MigrationError(
            f"todo.db and models.py differ in {plural(len(plan.drift), 'place')} (listed above); "
            "migrating would leave data out or fill in defaults",
            "re-run with --allow-drift to proceed as listed, or align the models; nothing was written",
        )


def report_not_migrated(run: Run) -> None:
    """Views, triggers and indexes of todo.db that the models do not have: said, not silently lost."""
    assert run.source is not None
    objects = run.source.objects
    run.report.not_migrated = [vars(o) for o in objects]
    if not objects:
        return
    run.console.step(
        "ℹ️", f"Not migrated (not in models.py): {plural(len(objects), 'schema object')} of todo.db:"
    )
    for obj in objects:
        run.console.detail(f"{obj.kind:<8} {obj.name} (on {obj.table}): not migrated")


def warn_about_sequences(run: Run) -> dict[str, int]:
    """Each table's next id must continue after todo.db's highest (AUTOINCREMENT's mark included);
    where that is past what the models' integer id can hold, say so before anything is written."""
    assert run.source is not None and run.plan is not None
    marks = {tp.name: high_water_id(run.source, tp) for tp in run.plan.tables}
    for table, mark in marks.items():
        if mark >= INT32_MAX:
            line = (f"{table}: ids reach {INT32_MAX:,}, the most the models' integer id holds; the sequence "
                    f"will be exhausted and the app's next insert into {table} will fail (widen the id column)")  # fmt: skip
            run.console.step("⚠️", line)
            run.report.warnings.append(line)
    return marks


def validate_source(run: Run) -> None:
    assert run.source is not None and run.plan is not None
    o, c = run.options, run.console
    c.step("🧪", "Checking every value against the models (pre-flight) ...")
    with run.phase("validate"):
        try:
            run.validation = validate(run.source, run.plan, skip_invalid=o.skip_invalid)
        except sqlite3.Error as exc:
            raise explain_sqlite_error(exc, o.sqlite_path) from None
    v = run.validation
    run.report.set_validation(v)
    for (table, column, label), n in sorted(v.conversions.items()):
        c.detail(f"converted: {table}.{column}: {label} ({n:,})")
    if not v.groups:
        c.detail("✅ no problems found")
        return
    c.step("⚠️", f"Found {plural(v.problem_count, 'problem')} PostgreSQL would refuse or change:")
    for g in v.groups:
        ids = ", ".join(map(str, g.ids)) + (", …" if g.count > len(g.ids) else "")
        c.detail(f"{g.kind:<22} {g.table}.{g.column}: {g.count:,} (ids {ids}); e.g. {g.example}")
    if o.skip_invalid:
        total = sum(v.rejected.values())
        c.detail(
            f"--on-invalid skip: {plural(total, 'row')} will go to {o.rejects_path} instead of PostgreSQL"
        )
        return
    raise MigrationError(
        f"todo.db has {plural(v.problem_count, 'value')} PostgreSQL would refuse or change (listed above); "
        "nothing was written",
        "fix them in todo.db, or re-run with --on-invalid skip to migrate the rest and write those rows to a "
        "rejects file"
        + (" (--strip-nul removes NUL bytes)" if any(g.kind == "nul_byte" for g in v.groups) else ""),
    )


def connect_target(run: Run):
    o, c = run.options, run.console
    origin = "" if o.url_origin == "--postgres-url" else f" (from {o.url_origin})"
    c.step("🐘", f"Connecting to PostgreSQL {run.target.masked}{origin} ...")
    with run.phase("connect"):
        conn = pg.connect(run.target)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT current_setting('server_version'), current_user, current_setting('server_encoding')"
            )
            version, user, encoding = cur.fetchone()
        conn.commit()  # nothing held between transactions (PgBouncer may hand us another server)
    c.detail(
        f"✅ connected as {user}, PostgreSQL {version}"
        + ("" if encoding == "UTF8" else f", encoding {encoding}")
    )
    run.report.target_version = version
    assert run.plan is not None
    # Text must fit the target's encoding: the pre-flight checks what the load will meet.
    run.plan = for_target(run.plan, replace(run.plan.conversions, target_encoding=encoding))
    return conn


def begin_transaction(run: Run, cur, *, read_only: bool) -> None:
    """Session settings for this transaction only (SET LOCAL works through PgBouncer), then the lock."""
    o = run.options
    cur.connection.readonly = read_only  # psycopg2 opens the transaction with BEGIN [READ ONLY]
    cur.execute("SELECT set_config('lock_timeout', %s, true)", (o.lock_timeout,))
    cur.execute("SET LOCAL statement_timeout = 0")
    cur.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
    cur.execute("SET LOCAL DateStyle = 'ISO, MDY'")  # verification reads timestamps back as sent
    cur.execute("SET LOCAL synchronize_seqscans = off")  # a fresh table reads back in the order sent
    if not read_only:
        cur.execute("SET LOCAL synchronous_commit = off")
        cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
    key = (ADVISORY_LOCK_NAMESPACE, abs(hash_text(o.schema)) % 2**31)
    if o.wait:
        cur.execute("SET LOCAL lock_timeout = 0")
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", key)
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (o.lock_timeout,))
        return
    cur.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", key)
    if not cur.fetchone()[0]:
        raise MigrationError(
            f"another migration into this database (schema {o.schema}) is running",
            "wait for it to finish, or re-run with --wait to queue behind it; nothing was changed",
        )


def hash_text(text: str) -> int:
    """A stable small hash (Python's hash() is salted per process)."""
    h = 0
    for ch in text.encode():
        h = (h * 131 + ch) % 2**31
    return h


def find_existing_tables(run: Run, cur) -> dict[str, int]:
    assert run.plan is not None
    names = [t.name for t in run.plan.tables]
    cur.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = ANY(%s)",
        (run.options.schema, names),
    )
    found = dict(cur.fetchall())
    counts = {}
    for tp in run.plan.tables:
        kind = found.get(tp.name)
        if kind is None:
            continue
        if kind not in ("r", "p"):
            raise MigrationError(
                f"{run.options.schema}.{tp.name} exists in PostgreSQL but is not a table (relkind {kind})",
                "drop or rename it first; --force-recreate only replaces tables",
            )
        cur.execute(f"SELECT count(*) FROM {qualified(tp)}")
        counts[tp.name] = cur.fetchone()[0]
    return counts


def check_target(run: Run, cur) -> None:
    """Refuse a target that already holds the tables, unless --force-recreate; confirm on a terminal."""
    o, c = run.options, run.console
    run.existing = find_existing_tables(run, cur)
    if not run.existing:
        c.detail(f"✅ schema {o.schema} has none of the app's tables yet")
        return
    listing = ", ".join(f"{name} ({n:,} rows)" for name, n in run.existing.items())
    if not o.force_recreate:
        raise MigrationError(
            f"PostgreSQL {run.target.masked} already has the app's tables: {listing}",
            "re-run with --force-recreate to replace them (one transaction: they survive if anything fails), "
            "or use --verify-only to compare them with todo.db",
            exit_code=EXIT_FAILURE,
        )
    c.step("🗑️", f"--force-recreate: will replace {listing}")
    holds_rows = any(run.existing.values())
    if holds_rows and not o.dry_run and not o.yes and not run.confirmed and sys.stdin.isatty():
        if not c.confirm(f"Replace {listing} in {run.target.masked}?"):
            raise MigrationError("not confirmed", "nothing was changed; pass --yes to skip the question")
        run.confirmed = True


def create_schema_and_tables(run: Run, cur) -> None:
    assert run.plan is not None
    o, c = run.options, run.console
    cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (o.schema,))
    if cur.fetchone() is None:  # IF NOT EXISTS would still need CREATE on the database
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(o.schema)))
    if run.existing:
        cur.execute("DROP TABLE " + ", ".join(qualified(run.plan.table(n)) for n in run.existing))
    c.step("🏗️", "Creating PostgreSQL tables from models.py ...")
    with run.phase("create tables"):
        for tp in run.plan.tables:
            cur.execute(create_table_sql(tp))
            c.detail(f"✅ {qualified(tp)}")


def copy_rows(run: Run, cur, check: ValuesCheck | None) -> None:
    assert run.plan is not None and run.source is not None and run.validation is not None
    c = run.console

    def on_chunk(bar, chunk) -> None:
        bar.update(chunk.rows)
        table = check.finding_so_far() if check is not None else None
        if table is not None:  # no use loading the rest
            raise NeedsExactCheck.not_canonical(table)

    if check is not None and check.alongside:
        c.step("🧪", "Checking every value against the models, alongside the load ...")
    with run.phase("copy"):
        for tp in run.plan.tables:
            expected = tp.source_rows - run.validation.rejected[tp.name]
            if tp.source is None:
                c.step("📦", f"{tp.name}: not in todo.db, created empty")
                run.logs[tp.name] = ChunkLog()
                continue
            c.step("📦", f"Migrating {tp.name} ({expected:,} rows) ...")
            with c.progress(tp.name, expected) as bar:
                run.logs[tp.name] = copy_table(
                    cur, run.source, tp, run.validation, lambda ch, bar=bar: on_chunk(bar, ch)
                )
            c.detail(f"✅ {run.logs[tp.name].total_rows:,} rows copied")


def build_keys_and_indexes(run: Run, cur) -> None:
    assert run.plan is not None
    c = run.console
    c.step("🔗", "Building primary keys, indexes, foreign keys and sequences ...")
    with pg.interruptible():
        with run.phase("indexes"):
            for tp in run.plan.tables:
                for statement in key_and_index_sql(tp):
                    cur.execute(statement)
        with run.phase("foreign keys"):
            for tp in run.plan.tables:
                for statement in foreign_key_sql(tp):
                    cur.execute(statement)
        with run.phase("sequences"):
            for tp in run.plan.tables:
                reset_sequence(cur, tp, run.high_water.get(tp.name, 0))
        with run.phase("analyze"):
            for tp in run.plan.tables:
                cur.execute(f"ANALYZE {qualified(tp)}")


def verify_target(run: Run, cur, *, diff: bool = True) -> None:
    assert run.plan is not None and run.source is not None and run.validation is not None
    o, c = run.options, run.console
    c.step(
        "🔍",
        "Verifying: row counts"
        + (", a checksum of every value" if o.verify else "")
        + ", foreign keys, sequences ...",
    )
    with run.phase("verify"):
        if o.verify_only:
            for tp in run.plan.tables:
                with c.progress(
                    f"{tp.name} (source checksums)", tp.source_rows - run.validation.rejected[tp.name]
                ) as bar:
                    run.logs[tp.name] = hash_source(
                        run.source, tp, run.validation, lambda ch: bar.update(ch.rows)
                    )
        run.checks = verify_all(
            cur, run.source, run.plan, run.validation, run.logs,
            values=o.verify, fresh=not o.verify_only, diff=diff,
        )  # fmt: skip
    run.report.set_checks(run.checks)
    bad = [ch for ch in run.checks if not ch.ok]
    if bad and not diff:  # the fast path: no rows named, no alarm; it starts over the exact way
        raise VerificationFailed(
            f"the read-back of {', '.join(ch.table for ch in bad)} differs from what was sent"
        )
    for check in run.checks:
        mark = "❌" if not check.ok else "⚠️" if check.sequence_exhausted else "✅"
        orphans = sum(check.orphans.values())
        values = f", values {'match' if check.checksum_ok else 'DIFFER'}" if o.verify else ""
        rejected = f" (+ {check.rejected_rows:,} rejected)" if check.rejected_rows else ""
        c.detail(
            f"{mark} {check.table}: {check.target_rows:,} / {check.source_rows - check.rejected_rows:,} rows"
            f"{rejected}{values}, {orphans} orphans, sequence {check.sequence_detail}"
        )
        if not check.rows_add_up:
            c.detail(f"   ❌ {check.problem()}")
        for m in check.mismatches:
            c.detail(f"   ❌ {m.describe()}")
    if bad:
        detail = bad[0].problem()
        if o.verify_only:
            raise VerificationFailed(f"PostgreSQL differs from todo.db in {', '.join(ch.table for ch in bad)}: {detail}",
                                 "re-run the migration with --force-recreate to replace the target")  # fmt: skip
        raise VerificationFailed(
            f"verification failed in {', '.join(ch.table for ch in bad)}: {detail}",
            "this should not happen: please report it with the --report output",
            target_untouched=True,
        )


def start_values_check(run: Run) -> ValuesCheck | None:
    """The fast path's check: alongside the load, on a second connection that sees exactly our
    snapshot; for a WAL source (whose snapshot only this connection holds), here and now on this
    one. None for a dry run, which lists every problem and so needs the exact pre-flight. Without
    the read-back (--no-verify) the check is the exact test."""
    assert run.source is not None and run.plan is not None
    o = run.options
    if o.dry_run:
        return None
    try:
        readers = run.source.extra_readers(1)
        if readers:
            return ValuesCheck(run.source, run.plan, shape=o.verify, conn=readers[0])
        run.console.step("🧪", "Checking every value against the models ...")
        with run.phase("validate"):
            check = ValuesCheck(run.source, run.plan, shape=o.verify)
            check.result()
        return check
    except sqlite3.Error as exc:
        raise explain_sqlite_error(exc, o.sqlite_path) from None


def _check_result(run: Run, check: ValuesCheck) -> str | None:
    try:
        return check.result()
    except sqlite3.Error as exc:
        raise explain_sqlite_error(exc, run.options.sqlite_path) from None


def confirm_check(run: Run, check: ValuesCheck) -> None:
    """Wait for the values check; the fast path stands only if it found every value canonical."""
    table = _check_result(run, check)
    if check.alongside:
        run.report.phases["validate (alongside load)"] = check.seconds
    if table is not None:
        raise NeedsExactCheck.not_canonical(table)
    assert run.validation is not None
    run.report.set_validation(run.validation)
    where = ", alongside the load" if check.alongside else ""
    run.console.step("🧪", f"Checked every value against the models{where}:")
    run.console.detail(
        f"✅ every value is already in PostgreSQL's form; no problems found ({check.seconds:.2f}s)"
    )


def load_fast_or_exact(run: Run, conn) -> None:
    """The fast path first: load as if every value were canonical while the values check confirms
    it (alongside, or for a WAL source just before), and let PostgreSQL's parser and the read-back
    judge the rest. At the first doubt, roll back and take the exact path: the full pre-flight,
    then the load."""
    check = start_values_check(run)
    if check is None or check.finding_so_far():  # found before anything was loaded: no need to try
        validate_source(run)
        migrate(run, conn)
        return
    assert run.plan is not None
    c = run.console
    run.validation = assume_canonical(run.plan)
    try:
        migrate(run, conn, check)
        return
    except NeedsExactCheck as doubt:
        c.step("🔁", f"{doubt.reason}: rolled back; checking every value in detail ...")
        original = doubt.error
    finally:
        check.close()
    validate_source(run)
    assert run.validation is not None
    if original is not None and run.validation == assume_canonical(run.plan):
        raise original  # the exact path would send the very same bytes: the failure stands
    migrate(run, conn)


def prepare_rejects(run: Run) -> Path | None:
    """Write rejected rows to a temp file now; it is renamed into place only after COMMIT."""
    assert run.validation is not None and run.source is not None and run.plan is not None
    if not run.options.skip_invalid or not sum(run.validation.rejected.values()):
        return None
    path = run.options.rejects_path
    assert path is not None
    try:
        tmp, written = write_rejects(run.source, run.plan, run.validation, path)
    except OSError as exc:
        raise MigrationError(
            f"cannot write the rejects file next to {path} ({exc.strerror})",
            "pass --rejects PATH in a writable directory; nothing was written",
        ) from None
    short = {t: n for t, n in run.validation.rejected.items() if written[t] != n}
    if short:
        _discard(tmp)
        raise MigrationError(
            "the rejects file would not hold every rejected row ("
            + ", ".join(f"{t}: {written[t]:,} of {n:,}" for t, n in short.items())
            + ")",
            "this should not happen: please report it with the --report output; nothing was written",
        )
    return tmp


def migrate(run: Run, conn, check: ValuesCheck | None = None) -> None:
    """One transaction: (drop) create, COPY, keys and indexes, verify, COMMIT. With `check` (the
    fast path), a refused value or a differing read-back raises NeedsExactCheck instead."""
    o = run.options
    tmp_rejects = None if o.dry_run else prepare_rejects(run)
    try:
        with conn.cursor() as cur:
            doing = "checking the target"
            begin_transaction(run, cur, read_only=False)
            check_target(run, cur)
            doing = "creating tables"
            create_schema_and_tables(run, cur)
            if o.dry_run:
                conn.rollback()
                report_dry_run(run)
                return
            doing = "copying rows"
            copy_rows(run, cur, check)
            doing = "building indexes and keys"
            build_keys_and_indexes(run, cur)
            doing = "verifying"
            verify_target(run, cur, diff=check is None)
            if check is not None:
                confirm_check(run, check)
            doing = "committing"
            with run.phase("commit"):
                conn.commit()
    except BaseException as exc:
        _discard(tmp_rejects)
        _rollback_quietly(conn)
        if isinstance(exc, sqlite3.Error):  # e.g. a corrupt page met mid-copy
            raise explain_sqlite_error(exc, o.sqlite_path) from None
        if isinstance(exc, psycopg2.Error):
            error = explain_failure(run, exc, doing)
            if check is not None and (exc.pgcode or "")[:2] in REFUSED_VALUE_CLASSES:
                raise NeedsExactCheck(f"PostgreSQL refused a value while {doing}", error) from None
            raise error from None
        if check is not None and isinstance(exc, VerificationFailed):
            table = _check_result(run, check)  # the likelier reason, if the check has one
            if table is not None:
                raise NeedsExactCheck.not_canonical(table) from None
            # No error to fall back on: if the values are fine, the exact path's own verification
            # names the differing rows.
            raise NeedsExactCheck("the read-back differs from what was sent") from None
        raise
    if tmp_rejects is not None:
        assert o.rejects_path is not None
        os.replace(tmp_rejects, o.rejects_path)
        run.report.rejects_path = str(o.rejects_path)


def explain_failure(run: Run, exc: psycopg2.Error, doing: str) -> MigrationError:
    if doing == "committing" and isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return MigrationError(
            f"the connection dropped during COMMIT ({run.target.scrub(str(exc).strip().splitlines()[0])})",
            "the outcome is unknown: run with --verify-only to see whether the target holds the data",
        )
    if isinstance(exc, psycopg2.errors.LockNotAvailable):
        blockers = describe_lock_holders(run)
        return MigrationError(
            f"timed out after {run.options.lock_timeout} waiting for a lock on the target tables"
            + (f", held by {blockers}" if blockers else ""),
            "stop that session (or the app) and re-run, or raise --lock-timeout",
            target_untouched=True,
        )
    return pg.explain_run_error(exc, run.target, doing, run.options.schema)


def describe_lock_holders(run: Run) -> str:
    """Who holds locks on the app's tables in the target schema, by application name."""
    assert run.plan is not None
    try:
        conn = pg.connect(run.target, autocommit=True)
    except MigrationError:
        return ""
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT DISTINCT coalesce(nullif(a.application_name, ''), 'an unnamed client'), a.pid, "
                "left(regexp_replace(a.query, '\\s+', ' ', 'g'), 60) FROM pg_locks l "
                "JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE n.nspname = %s AND c.relname = ANY(%s) AND l.granted AND a.pid <> pg_backend_pid()",
                (run.options.schema, [t.name for t in run.plan.tables]),
            )
            rows = cur.fetchall()
    except psycopg2.Error:
        return ""
    finally:
        conn.close()
    return "; ".join(f"{app!r} (pid {pid}: {query})" for app, pid, query in rows[:3])


def _discard(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink()
        except OSError:
            pass


def _rollback_quietly(conn) -> None:
    try:
        conn.rollback()
    except psycopg2.Error:
        pass


def verify_existing(run: Run, conn) -> None:
    try:
        with conn.cursor() as cur:
            begin_transaction(run, cur, read_only=True)
            run.existing = find_existing_tables(run, cur)
            assert run.plan is not None
            missing = [t.name for t in run.plan.tables if t.name not in run.existing]
            if missing:
                raise MigrationError(
                    f"PostgreSQL {run.target.masked} has no {', '.join(missing)} in schema {run.options.schema}",
                    "run the migration first (without --verify-only)",
                )
            differences = check_schema(run, cur)
            verify_target(run, cur)  # differing values are the first thing to say, then the schema
            fail_on_schema_differences(differences)
    except psycopg2.Error as exc:
        raise explain_failure(run, exc, "verifying") from None
    finally:
        _rollback_quietly(conn)


def check_schema(run: Run, cur) -> list[str]:
    """--verify-only compares the schema too: a dropped unique index, foreign key, NOT NULL or
    default, or a changed type, would let the app write what the models forbid."""
    assert run.plan is not None
    c = run.console
    c.step(
        "🔍", "Comparing the target's tables with models.py (types, NOT NULLs, defaults, keys, indexes) ..."
    )
    differences = schema_differences(cur, [tp.table for tp in run.plan.tables], run.options.schema)
    run.report.schema_differences = differences
    if not differences:
        c.detail("✅ the schema matches the models")
    for line in differences:
        c.detail(f"❌ {line}")
    return differences


def fail_on_schema_differences(differences: list[str]) -> None:
    if not differences:
        return
    raise MigrationError(
        f"PostgreSQL's schema differs from models.py in {plural(len(differences), 'place')} "
        f"(listed above), e.g. {differences[0]}",
        "re-run the migration with --force-recreate to rebuild the tables from the models",
    )


def report_dry_run(run: Run) -> None:
    assert run.plan is not None and run.validation is not None
    c = run.console
    c.step("📋", "Dry run: this is what the migration would do (nothing was changed):")
    if run.existing:
        c.detail("drop " + ", ".join(run.existing))
    for tp in run.plan.tables:
        rejected = run.validation.rejected[tp.name]
        extra = f", {rejected:,} to the rejects file" if rejected else ""
        c.detail(f"create {qualified(tp)} and copy {tp.source_rows - rejected:,} rows{extra}")
    c.detail("then build primary keys, indexes, foreign keys, set sequences, ANALYZE, verify, COMMIT")


def print_summary(run: Run, started: float) -> None:
    o, c = run.options, run.console
    v = run.validation
    elapsed = time.perf_counter() - started
    run.report.duration_s = elapsed
    c.step("📊", "Summary:")
    if run.plan is not None and v is not None:
        written_label = "would write" if o.dry_run else "written" if not o.verify_only else "checked"
        counts = {}
        for tp in run.plan.tables:
            log = run.logs.get(tp.name)
            rej = v.rejected[tp.name]
            written = tp.source_rows - rej if o.dry_run else log.total_rows if log else 0
            converted = sum(n for (t, _, _), n in v.conversions.items() if t == tp.name)
            counts[tp.name] = {"read": tp.source_rows, "written": 0 if o.dry_run or o.verify_only else written,
                               "rejected": rej, "converted": converted}  # fmt: skip
            c.detail(
                f"{tp.name:<20} read {tp.source_rows:>10,}  {written_label} {written:>10,}  rejected {rej:>8,}"
            )
        run.report.set_tables(counts)
        conversions = sum(v.conversions.values())
        if conversions:
            c.detail(f"lossless conversions applied: {conversions:,} values (listed above)")
        if run.report.rejects_path:
            reasons = ", ".join(f"{t} {k}: {n:,}" for (t, k), n in sorted(v.reject_reasons.items()))
            c.detail(f"rejects file: {run.report.rejects_path} ({reasons})")
        if run.plan.drift and o.allow_drift:
            c.detail(
                f"schema drift allowed (--allow-drift): {plural(len(run.plan.drift), 'difference')}, listed above"
            )
    phases = ", ".join(f"{k} {s:.2f}s" for k, s in run.report.phases.items())
    c.detail(f"phases: {phases}")
    verb = {"migrate": "Migration completed and verified", "dry-run": "Dry run passed: the migration would succeed",
            "verify-only": "Verified: PostgreSQL matches todo.db"}[o.mode]  # fmt: skip
    c.result("🎉", f"{verb} in {elapsed:.2f}s")


def execute(options: Options, console: Console, report: RunReport) -> None:
    """The pipeline. Raises MigrationError with the one line to show."""
    started = time.perf_counter()
    target = pg.parse_target_url(options.postgres_url)
    run = Run(options, console, report, target)
    report.start(options, target)
    console.step("🚀", f"SQLite → PostgreSQL migration ({options.mode})")
    console.detail(f"source: {options.sqlite_path}")
    console.detail(f"target: {target.masked} (schema {options.schema})")
    try:
        inspect_source(run)
        plan_from_models(run)
        conn = connect_target(run)
        run.high_water = warn_about_sequences(run)
        try:
            if options.verify_only:
                validate_source(run)
                verify_existing(run, conn)
            else:
                load_fast_or_exact(run, conn)
        finally:
            conn.close()
        print_summary(run, started)
    finally:
        if run.source is not None:
            run.source.close()


def main(argv: list[str] | None = None) -> int:
    """Run the tool; every failure becomes one line on stderr and a documented exit code."""
    INTERRUPTED.clear()
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _main(argv)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


INTERRUPTED_LINE = "interrupted; the transaction was rolled back, nothing was changed in PostgreSQL"


def _main(argv: list[str] | None) -> int:
    console = Console()
    report = RunReport()
    options: Options | None = None
    code = EXIT_OK
    try:
        options = parse_options(argv)
        console = Console(quiet=options.quiet)
        execute(options, console, report)
    except KeyboardInterrupt:
        console.error(INTERRUPTED_LINE)
        report.fail(INTERRUPTED_LINE)
        code = EXIT_INTERRUPTED
    except MigrationError as exc:
        line = INTERRUPTED_LINE if INTERRUPTED.is_set() else exc.one_line()  # e.g. a cancelled query
        console.error(line)
        report.fail(line)
        code = EXIT_INTERRUPTED if INTERRUPTED.is_set() else exc.exit_code
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except Exception as exc:
        if INTERRUPTED.is_set():
            console.error(INTERRUPTED_LINE)
            report.fail(INTERRUPTED_LINE)
            return _write_report(console, report, options, EXIT_INTERRUPTED)
        if options is not None and options.debug:
            traceback.print_exc()
        line = scrub_unexpected(exc, options)
        console.error(
            f"unexpected error: {line}; nothing was committed. Re-run with --debug for the traceback and report it"
        )
        report.fail(line)
        code = EXIT_FAILURE
    return _write_report(console, report, options, code)


def _write_report(console: Console, report: RunReport, options: Options | None, code: int) -> int:
    if options is not None and options.report_path is not None:
        try:
            report.write(options.report_path)
        except OSError as exc:
            console.error(f"cannot write the report {options.report_path} ({exc.strerror})")
            code = code or EXIT_FAILURE
    return code


def scrub_unexpected(exc: BaseException, options: Options | None) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    if options is not None:
        try:
            return pg.parse_target_url(options.postgres_url).scrub(text)
        except MigrationError:
            pass
    return text


def _interrupt(signum, frame) -> None:
    """Ctrl-C, or SIGTERM (docker stop, kill): stop where we are and roll back."""
    INTERRUPTED.set()
    raise KeyboardInterrupt


__all__ = ["main", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_INTERRUPTED"]
