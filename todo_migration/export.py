"""The way back (--reverse): PostgreSQL into a todo.db the app runs on, built aside and renamed in.

    STEP 1  check the destination: refuse one that exists (unless --force-recreate) or that an app
            has open (a -wal or -journal beside it, or a lock on it)
    STEP 2  connect to PostgreSQL and take one snapshot (REPEATABLE READ, READ ONLY, DEFERRABLE)
    STEP 3  plan from models.py; the target's tables must match the models (or --allow-drift)
    STEP 4  build a temporary file beside the destination: the app's SQLite schema (SQLAlchemy's
            SQLite dialect), then every table's rows, each value put in the app's form by
            PostgreSQL (booleans 0/1, six fractional digits) and bound to one prepared INSERT,
            then the indexes; meanwhile PostgreSQL prints the same rows again, as the forward
            direction's canonical stream, and that is hashed
    STEP 5  verify the new file: counts and the checksum of every value (the forward codecs read
            the file back into the same stream, testing each value's form on the way), foreign
            keys, integrity
    STEP 6  fsync, rename into place (atomic), fsync the directory; report

Any failure before step 6 removes the temporary file and leaves the destination as it was.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import os
import queue
import sqlite3
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from operator import itemgetter
from pathlib import Path

import psycopg2
from psycopg2.extensions import connection as PgConnection
from psycopg2.extensions import cursor as PgCursor
from sqlalchemy import MetaData, Table
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from . import session
from .convert import codec_for
from .errors import INTERRUPTED, MigrationError, UsageError
from .load import CSV_OPTIONS, next_chunk_rows, qualified_table, sqlite_line
from .options import Options
from .output import Console, plural
from .plan import TablePlan, build_plan, target_metadata
from .report import RunReport
from .schema_check import schema_differences
from .source import Source, open_source, quote_ident
from .steps import Run, connect_postgres
from .validate import canonical_row

FETCH_TEXT = 512 * 1024  # characters of text per batch of rows fetched (memory stays flat)
FIRST_FETCH_ROWS = 64  # grows from here, at most MAX_GROWTH times a batch
MAX_FETCH_ROWS = 10_000  # a row costs Python ~1 KB beyond its text: at most ~10 MB a batch
MAX_GROWTH = 4
FIRST_BAD_VALUES = 5  # values shown when some have no form in the app's SQLite
QUEUE_DEPTH = 2
SQLITE = sqlite_dialect.dialect()


@dataclass
class ExportTable:
    """A model table: as the app creates it in SQLite (`table`), where PostgreSQL holds it
    (`qualified`), and the model columns PostgreSQL has (all of them, unless drift is allowed)."""

    table: Table
    qualified: str
    columns: list[str]

    @property
    def name(self) -> str:
        return self.table.name


@dataclass
class Exported:
    table: str
    columns: list[str]
    rows: int  # written to the file


def run_export(options: Options, console: Console, report: RunReport) -> None:
    """The export job. Raises MigrationError with the one line to show."""
    from models import Base  # the app's models: the schema the app creates on SQLite

    started = time.perf_counter()
    run = Run(options, console, report)
    report.start(options)
    dest = options.sqlite_path
    console.step("🚀", f"PostgreSQL → SQLite export ({'dry-run' if options.dry_run else 'export'})")
    console.detail(f"source: {options.target.masked} (schema {options.schema})")
    if dest.is_symlink():  # the file the link names is the app's: it is what gets replaced
        dest = dest.resolve()
        console.detail(f"destination: {options.sqlite_path} → {dest}")
    else:
        console.detail(f"destination: {dest}")
    check_destination(run, dest)  # STEP 1
    replacing = dest.exists()
    conn = connect_snapshot(run)  # STEP 2
    try:
        with conn.cursor() as cur:
            tables = plan_export(run, cur, Base.metadata)  # STEP 3
            refuse_values_without_app_form(cur, tables)
            counts = _row_counts(cur, tables)
            report.source_tables = dict(counts)
            if options.dry_run:
                _remove(_temp_beside(dest))  # the real run's temporary file can be made there
                _print_dry_run(console, dest, counts)
                report.set_tables(
                    {t: {"read": n, "written": n, "rejected": 0, "converted": 0} for t, n in counts.items()}
                )
            else:
                tmp = _temp_beside(dest)
                sent = PostgresChecksums(cur, tables)
                try:
                    exported = build_file(run, cur, tmp, tables, counts, after_rows=sent.start)  # STEP 4
                    verify_file(run, tmp, exported, sent)  # STEP 5
                    record_ledger_in_file(tmp, sent.result(), postgres_named(options))
                    with run.phase("rename"):  # STEP 6
                        _give_mode(tmp, dest)
                        _fsync(tmp)
                        move_into_place(tmp, dest, replacing=replacing)
                        _fsync_directory(dest.parent)
                except BaseException:
                    sent.stop()
                    _remove(tmp)
                    raise
                report.set_tables({e.table: {"read": e.rows, "written": e.rows, "rejected": 0, "converted": 0}
                                   for e in exported})  # fmt: skip
    except psycopg2.Error as exc:
        raise session.explain_failure(
            exc,
            options.target,
            "exporting",
            schema=options.schema,
            lock_timeout=options.lock_timeout,
            tables=[],
        ) from None
    finally:
        session.rollback_quietly(conn)
        conn.close()
    report.duration_s = time.perf_counter() - started
    _print_summary(console, report, dry_run=options.dry_run)


# --- STEP 1 ----------------------------------------------------------------------------------


def check_destination(run: Run, dest: Path) -> None:
    """Never half-write or clobber: an existing file needs --force-recreate (and a yes on a
    terminal); a file an app has open is refused even then."""
    o = run.options
    if dest.is_dir():
        raise UsageError(f"{str(dest)!r} is a directory", "pass --sqlite-path PATH/TO/new.db")
    if not dest.parent.is_dir():
        raise UsageError(
            f"the directory of {str(dest)!r} does not exist", "create it, or pass another --sqlite-path"
        )
    refuse_if_open(dest, "replacing", replacing=True)
    warn_of_leftovers(run, dest)
    if not dest.exists():
        return
    if not o.force_recreate:
        raise UsageError(
            f"{str(dest)!r} already exists",
            "pass another --sqlite-path, or --force-recreate to replace it (only once the new file is verified)",
        )
    run.console.step("🗑️", f"--force-recreate: will replace {dest} once the export is verified")
    if not o.dry_run and not o.yes and os.isatty(0):
        if not run.console.confirm(f"Replace {dest} with the export of {o.target.masked}?"):
            raise MigrationError("not confirmed", "nothing was changed; pass --yes to skip the question")


def warn_of_leftovers(run: Run, dest: Path) -> None:
    """A killed export (kill -9, a power cut) cannot remove its temporary file: say where it is,
    as the next run is when someone looks. Not removed here: another export may be writing it."""
    leftovers = sorted(
        Path(p).name for p in glob.glob(f"{glob.escape(str(dest.parent))}/.{glob.escape(dest.name)}.*.tmp")
    )
    if leftovers:
        run.console.warn(
            f"{len(leftovers)} temporary file(s) of an export that did not finish beside {dest.name} "
            f"({', '.join(leftovers[:3])}{', …' if len(leftovers) > 3 else ''}): delete them when no export is running"
        )
        run.report.warnings.append(f"leftover temporary files beside {dest}: {', '.join(leftovers)}")


def refuse_if_open(dest: Path, doing: str, *, replacing: bool = False) -> None:
    """A todo.db an app has open (a -journal beside it, a WAL-mode connection, a transaction on
    it) is never written: what the app writes meanwhile would be lost. A -wal that no process
    holds is what a closed reader leaves (this tool's own read of a WAL-mode todo.db, say): fine to
    change in place, and fine to replace when empty; one still holding changes would be replayed
    into the new file, so replacing waits until SQLite has put them into this one."""
    journal = Path(f"{dest}-journal")
    if journal.exists() and _lock_held(dest, _DB_LOCK_BYTES):
        raise UsageError(
            f"{str(dest)!r} is open in an app ({journal.name} beside it): {doing} it would lose "
            "what that app writes",
            "stop the app (it removes the file when it closes the database), then re-run",
        )
    if journal.exists():
        raise UsageError(
            f"{str(dest)!r} has a hot rollback journal ({journal.name} beside it, no app holding it: a "
            f"write was interrupted): {doing} it now would leave the journal to be played into it",
            f'let SQLite roll it back first: sqlite3 {dest} "PRAGMA integrity_check", then re-run',
        )
    wal = Path(f"{dest}-wal")
    if wal.exists() and _wal_in_use(dest):
        raise UsageError(
            f"{str(dest)!r} is open in an app (a WAL-mode connection, {wal.name} beside it): {doing} it "
            "would lose what that app writes",
            "stop the app, then re-run",
        )
    if replacing and wal.exists() and wal.stat().st_size > 0:
        raise UsageError(
            f"{str(dest)!r} has changes not yet in the file ({wal.name} beside it, no app holding it): "
            "replacing the file would leave them to be replayed into the new one",
            f'let SQLite fold them in first: sqlite3 {dest} "PRAGMA wal_checkpoint(TRUNCATE)", then re-run',
        )
    if dest.exists() and _locked(dest):
        raise UsageError(
            f"{str(dest)!r} is locked by another process (an app writing to it)", "stop the app, then re-run"
        )
    holders = processes_holding(dest) if replacing and dest.exists() else []
    if holders:
        raise UsageError(
            f"{str(dest)!r} is open in {', '.join(holders[:3])}: replacing it would leave that process on "
            "the old file, and what it writes there would be lost",
            "stop that process, then re-run",
        )


def processes_holding(path: Path) -> list[str]:
    """Other processes with the file open, found in /proc (Linux; elsewhere, and for processes of
    other users when not root, none are seen). An app idle in rollback-journal mode holds no lock
    and leaves no file beside it: its open descriptor is the only sign of it."""
    try:
        target = path.stat()
    except OSError:
        return []
    found = []
    for fd_dir in glob.glob("/proc/[0-9]*/fd"):
        pid = int(fd_dir.split("/")[2])
        if pid == os.getpid():
            continue
        try:
            for fd in os.scandir(fd_dir):
                st = os.stat(fd.path)
                if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                    found.append(f"process {pid} ({_process_name(pid)})")
                    break
        except OSError:  # gone meanwhile, or not ours to look at
            continue
    return found


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


# struct flock, as fcntl(F_GETLK) takes it: Linux (x86-64, arm64) and macOS lay it out differently.
_FLOCK = "qqihh" if sys.platform == "darwin" else "hhqqi4x"
_SHM_DMS = (128, 1)  # SQLite's unix VFS: every WAL-mode connection holds a read lock here while open
_DB_LOCK_BYTES = (0x40000000, 512)  # the database file's PENDING, RESERVED and SHARED lock bytes


def _wal_in_use(db: Path) -> bool:
    """Whether another process has the WAL-mode file open: each of its connections holds a read
    lock on one byte of the -shm file for as long as it is open."""
    shm = Path(f"{db}-shm")
    if not shm.exists():
        return False  # a connection in WAL mode has the -shm: none is open
    return _lock_held(shm, _SHM_DMS)


def _lock_held(path: Path, where: tuple[int, int]) -> bool:
    """Whether another process holds a lock on those bytes of the file (SQLite's POSIX advisory
    locks), as F_GETLK sees it: nothing is taken, no connection opened, so nothing (a hot
    journal, a -wal) is rolled back or folded in by looking. Unsure (unreadable, another OS): held."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True
    start, length = where
    try:
        probe = (
            struct.pack(_FLOCK, start, length, 0, fcntl.F_WRLCK, os.SEEK_SET)
            if sys.platform == "darwin"
            else struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, start, length, 0)
        )
        answer = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, probe))
    except OSError:
        return True
    finally:
        os.close(fd)
    held = answer[3] if sys.platform == "darwin" else answer[0]
    return held != fcntl.F_UNLCK


def _locked(path: Path) -> bool:
    """Whether another process has the file open in a transaction, reading or writing: only then
    does SQLite refuse us its EXCLUSIVE lock (taken and given back at once; nothing is written)."""
    try:
        conn = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc) or "busy" in str(exc)
    except sqlite3.DatabaseError:
        return False  # not a database (it will be replaced only with --force-recreate)
    return False


# --- STEPS 2 and 3 ---------------------------------------------------------------------------


def connect_snapshot(run: Run) -> PgConnection:
    """One read-only snapshot for the whole export: no pattern without its task, however busy the
    app is. Transaction-scoped settings only (PgBouncer's transaction pooling keeps no session)."""
    conn, _ = connect_postgres(run)
    with conn.cursor() as cur:
        session.begin_snapshot(cur, lock_timeout=run.options.lock_timeout)
    run.console.detail("✅ one read-only snapshot (REPEATABLE READ): nothing is written to PostgreSQL")
    return conn


def plan_export(run: Run, cur: PgCursor, metadata: MetaData) -> list[ExportTable]:
    """The models' tables in foreign-key order, and which of their columns PostgreSQL has. Any
    difference from the models is drift: refused unless --allow-drift, and always listed."""
    o, c = run.options, run.console
    in_schema = target_metadata(metadata, o.schema).tables  # the same tables, in PostgreSQL's schema
    placed = [in_schema[f"{o.schema}.{t.name}"] for t in metadata.sorted_tables]
    cur.execute(
        "SELECT c.relname, a.attname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND c.relname = ANY(%s)",
        (o.schema, [t.name for t in placed]),
    )
    present: dict[str, set[str]] = {}
    for table, column in cur.fetchall():
        present.setdefault(table, set()).add(column)
    missing = [t.name for t in placed if t.name not in present]
    if missing:
        raise MigrationError(
            f"PostgreSQL {o.target.masked} has no {', '.join(missing)} in schema {o.schema}",
            "check --postgres-url and --schema (the app's tables are users, tasks, recurring_patterns)",
        )
    for table in placed:
        for col in table.columns:
            if col.name not in present[table.name] and not col.nullable and col.server_default is None:
                raise MigrationError(
                    f"PostgreSQL's {table.name} has no {col.name}, which the app's SQLite schema needs "
                    "(NOT NULL, no default)",
                    "align the target's tables with models.py",
                )
    differences = schema_differences(cur, placed, o.schema)
    run.report.schema_differences = differences
    if differences:
        c.step("⚠️", f"PostgreSQL's tables and models.py differ in {plural(len(differences), 'place')}:")
        for line in differences:
            c.detail(line)
        if not o.allow_drift:
            raise MigrationError(
                f"PostgreSQL's tables and models.py differ in {plural(len(differences), 'place')} ({c.listed()})",
                "re-run with --allow-drift to export the models' columns as listed, or align the models",
            )
    return [
        ExportTable(
            table,
            qualified_table(pg),
            [col.name for col in table.columns if col.name in present[pg.name]],
        )
        for table, pg in zip(metadata.sorted_tables, placed, strict=True)
    ]


def refuse_values_without_app_form(cur: PgCursor, tables: list[ExportTable]) -> None:
    """A value the app could not read back from SQLite (a timestamp outside years 1 to 9999:
    infinity, BC) is named before anything is written, by the dry run as by the real run."""
    found, examples = 0, []
    for et in tables:
        checks = [
            (name, test)
            for name in et.columns
            if (test := codec_for(et.table.c[name]).has_app_form(quote_ident(name))) is not None
        ]
        if not checks:
            continue
        (pk,) = et.table.primary_key.columns
        shown = ", ".join(
            f"CASE WHEN NOT ({test}) THEN {quote_ident(name)}::text END" for name, test in checks
        )
        cur.execute(
            f"SELECT {quote_ident(pk.name)}, count(*) OVER (), {shown} FROM {et.qualified} "
            f"WHERE {' OR '.join(f'NOT ({test})' for _, test in checks)} ORDER BY 1 LIMIT {FIRST_BAD_VALUES}"
        )
        rows = cur.fetchall()
        found += rows[0][1] if rows else 0  # the table's count, on every row
        for row_id, _, *values in rows:
            examples += [
                (et.name, row_id, n, v) for (n, _), v in zip(checks, values, strict=True) if v is not None
            ]
    if found:
        shown = "; ".join(f"{t} id {i} {c} = {v}" for t, i, c, v in examples[:FIRST_BAD_VALUES])
        raise MigrationError(
            f"PostgreSQL holds {plural(found, 'row')} with a timestamp the app cannot keep in SQLite "
            f"(years 1 to 9999 only): {shown}",
            "change them in PostgreSQL to dates within years 1 to 9999 (or NULL where the column "
            "allows it), then re-run; nothing was written",
        )


def _row_counts(cur: PgCursor, tables: list[ExportTable]) -> dict[str, int]:
    counts = {}
    for et in tables:
        cur.execute(f"SELECT count(*) FROM {et.qualified}")
        counts[et.name] = cur.fetchone()[0]
    return counts


# --- STEP 4 ----------------------------------------------------------------------------------


def _temp_beside(dest: Path) -> Path:
    """The file the export is built in: beside the destination, so the rename is atomic."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        raise MigrationError(
            f"cannot create a file in {str(dest.parent)!r} ({exc.strerror}); nothing was written",
            "pass a --sqlite-path in a directory you can write to",
        ) from None
    os.close(fd)
    return Path(name)


def build_file(
    run: Run,
    cur: PgCursor,
    path: Path,
    tables: list[ExportTable],
    counts: dict[str, int],
    after_rows: Callable[[], object] = lambda: None,
) -> list[Exported]:
    """The app's schema, every row, then the indexes: one transaction on a file nobody else sees
    yet, so no journal and no syncs until the end (it is verified and fsynced before it is used).
    `after_rows` is called once PostgreSQL has sent every row (its connection is free again)."""
    c = run.console
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.set_progress_handler(lambda: 1 if INTERRUPTED.is_set() else 0, 100_000)
    try:
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("BEGIN")
        c.step("🏗️", "Creating the app's SQLite tables from models.py ...")
        for et in tables:
            db.execute(str(CreateTable(et.table).compile(dialect=SQLITE)))
        exported = []
        with run.phase("copy"):
            for et in tables:
                c.step("📦", f"Exporting {et.name} ({counts[et.name]:,} rows) ...")
                with c.progress(et.name, counts[et.name]) as bar:
                    rows = copy_table_back(cur.connection, db, et, bar.update)
                exported.append(Exported(et.name, et.columns, rows))
                c.detail(f"✅ {rows:,} rows")
        after_rows()
        c.step("🔗", "Building the app's indexes ...")
        with run.phase("indexes"):
            for et in tables:
                for index in sorted(et.table.indexes, key=lambda ix: ix.name or ""):
                    db.execute(str(CreateIndex(index).compile(dialect=SQLITE)))
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise _explain_write_error(exc, path) from None
    finally:
        db.close()
    return exported


def copy_table_back(
    conn: PgConnection, db: sqlite3.Connection, et: ExportTable, progress: Callable[[int], object]
) -> int:
    """PostgreSQL reads the rows in id order with every value already in the app's form (the
    codecs' app_form), through a server-side cursor, a batch at a time; a writer thread binds
    each batch to one prepared INSERT while the next arrives. SQLite parses no SQL and calls no
    function per value (compiling each batch's rows as SQL text was most of the export's time).
    The rows written; what they hold is the verification's to prove."""
    cols = [et.table.c[name] for name in et.columns]
    names = ", ".join(quote_ident(n) for n in et.columns)
    forms = ", ".join(codec_for(col).app_form(quote_ident(col.name)) for col in cols)
    texts = [itemgetter(i) for i, col in enumerate(cols) if codec_for(col).kind == "text"]
    (pk,) = et.table.primary_key.columns
    insert = f"INSERT INTO {quote_ident(et.name)} ({names}) VALUES ({', '.join(['?'] * len(cols))})"
    rows = conn.cursor(name=f"export_{et.name}")
    try:
        with _RowWriter(db, insert, progress) as writer:
            rows.execute(f"SELECT {forms} FROM {et.qualified} ORDER BY {quote_ident(pk.name)}")
            size = FIRST_FETCH_ROWS
            while batch := rows.fetchmany(size):
                writer.put(batch)
                size = next_fetch_rows(len(batch), _text_length(batch, texts))
    finally:
        with contextlib.suppress(psycopg2.Error):
            rows.close()  # an aborted transaction (Ctrl-C, a lost connection) has no cursor to close
    return writer.rows


def _text_length(batch: list[tuple], texts: list[itemgetter]) -> int:
    """The characters of a batch's text values, counted in C (map and filter, no Python loop)."""
    return sum(sum(map(len, filter(None, map(get, batch)))) for get in texts)


def next_fetch_rows(rows: int, text: int) -> int:
    """Rows for about FETCH_TEXT characters of text next time, growing at most MAX_GROWTH times a
    batch: memory stays flat whatever the width of the rows."""
    fitting = int(rows * FETCH_TEXT / max(text, 1))
    return max(1, min(MAX_FETCH_ROWS, rows * MAX_GROWTH, fitting))


class _RowWriter:
    """Inserts batches of rows on a thread of its own (sqlite3 releases the GIL while SQLite
    works), while the main thread fetches the next batch. A failure is raised in the main
    thread at the next batch or at the end."""

    def __init__(self, db: sqlite3.Connection, insert: str, progress: Callable[[int], object]) -> None:
        self._db = db
        self._insert = insert
        self._progress = progress
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self._thread = threading.Thread(target=self._consume, name="sqlite-writer", daemon=True)
        self.failure: BaseException | None = None
        self.rows = 0

    def __enter__(self) -> _RowWriter:
        self._thread.start()
        return self

    def __exit__(self, exc_type, *rest: object) -> None:
        self._queue.put(None)
        self._thread.join()
        if exc_type is None and self.failure is not None:
            raise self.failure

    def put(self, batch: list[tuple]) -> None:
        if self.failure is not None:
            raise self.failure
        if INTERRUPTED.is_set():
            raise KeyboardInterrupt
        self._queue.put(batch)

    def _consume(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self.failure is not None:
                continue
            try:
                self._db.executemany(self._insert, batch)
                self.rows += len(batch)
                self._progress(len(batch))
            except BaseException as exc:  # raised in the main thread at the next batch or the end
                self.failure = exc


class PostgresChecksums:
    """What PostgreSQL holds, as the forward direction's canonical stream (PostgreSQL's own text
    for every value, quoted the SQL way, in id order), hashed per table: the very stream the
    forward codecs make of the file if every value arrived. Read again in the same snapshot once
    the rows are in the file, on a thread, while SQLite builds the indexes and reads the file
    back: PostgreSQL has nothing else to do then, and the second core is free."""

    def __init__(self, cur: PgCursor, tables: list[ExportTable]) -> None:
        self._cur = cur
        self._tables = tables
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="postgres-checksum", daemon=True)
        self.sums: dict[str, tuple[int, str]] = {}  # table: (rows, SHA-256)
        self.failure: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # psycopg2 echoes a lost connection there too
                for et in self._tables:
                    sink = _HashSink(self._stop)
                    self._cur.copy_expert(canonical_copy_sql(et), sink, size=1 << 20)
                    self.sums[et.name] = (sink.rows, sink.digest.hexdigest())
        except BaseException as exc:  # raised again by result(), in the main thread
            self.failure = exc

    def result(self) -> dict[str, tuple[int, str]]:
        self._thread.join()
        if self.failure is not None:
            raise self.failure
        return self.sums

    def stop(self) -> None:
        """End a COPY under way (its next row raises) and wait, before the connection is closed."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def canonical_copy_sql(et: ExportTable) -> str:
    names = ", ".join(quote_ident(n) for n in et.columns)
    (pk,) = et.table.primary_key.columns
    return (
        f"COPY (SELECT {names} FROM {et.qualified} ORDER BY {quote_ident(pk.name)}) "
        f"TO STDOUT WITH ({CSV_OPTIONS.string}, FORCE_QUOTE *)"
    )


class _HashSink:
    """A file-like sink for COPY TO that only hashes (psycopg2 writes one row per call)."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self.digest = hashlib.sha256()
        self.rows = 0

    def write(self, data: str | bytes) -> None:
        if self._stop.is_set() or INTERRUPTED.is_set():
            raise KeyboardInterrupt
        self.digest.update(data.encode() if isinstance(data, str) else data)
        self.rows += 1


# --- STEP 5 ----------------------------------------------------------------------------------


def verify_file(run: Run, path: Path, exported: list[Exported], postgres: PostgresChecksums) -> None:
    """Read the new file back the forward way (its codecs, in id order) and compare with what
    PostgreSQL holds, value for value; then foreign keys and integrity. The file is read on three
    connections at once (the values on one, foreign keys and integrity each on another), so the
    two cores share the reading."""
    c = run.console
    c.step("🔍", "Verifying the new file: row counts, a checksum of every value, foreign keys, integrity ...")
    written = {e.table: e for e in exported}
    with run.phase("verify"):
        source = open_source(path)
        stack = contextlib.ExitStack()
        try:
            from models import Base

            plan = build_plan(source, Base.metadata, schema="public", conversions=run.options.conversions)
            checks = stack.enter_context(_FileChecks(source))
            problems = []
            read = {tp.name: read_back(source, tp, written[tp.name].columns) for tp in plan.tables}
            sums = postgres.result()
            for tp in plan.tables:
                e, (rows, checksum, not_app_form) = written[tp.name], read[tp.name]
                ok = sums[tp.name] == (rows, checksum) and rows == e.rows
                c.detail(
                    f"{'✅' if ok else '❌'} {tp.name}: {rows:,} / {sums[tp.name][0]:,} rows, "
                    f"values {'match' if ok else 'DIFFER'}"
                )
                if not_app_form:
                    problems.append(f"{tp.name} (a value not in the app's form)")
                elif not ok:
                    problems.append(tp.name)
                run.report.verification.append(
                    {"table": tp.name, "ok": ok and not not_app_form, "source_rows": sums[tp.name][0],
                     "target_rows": rows, "checksum_ok": sums[tp.name][1] == checksum,
                     "checksum_sha256": checksum, "not_in_app_form": not_app_form}
                )  # fmt: skip
            orphans, integrity = checks.result()
        finally:
            stack.close()
            source.close()
    c.detail(f"{'✅' if not orphans else '❌'} foreign keys: {orphans} orphans; integrity: {integrity}")
    if problems or orphans or integrity != "ok":
        what = (
            f"values differ in {', '.join(problems)}"
            if problems
            else f"{orphans} orphans"
            if orphans
            else integrity
        )
        raise MigrationError(
            f"the new file does not match PostgreSQL ({what}); the destination was not touched",
            "this should not happen: please report it with the --report output",
        )


def read_back(source: Source, tp: TablePlan, sent: list[str]) -> tuple[int, str, int]:
    """(rows, the SHA-256 of the forward stream of the `sent` columns, rows with a value not in
    the app's form), in one scan of the table, in id order (the file's ids are its rowids).

    Each value's form is tested by its codec's readback_form, which is exact once the checksums
    are equal (and cheaper than the exact canonical test, which would repeat what that equality
    proves: lengths, ranges, calendars). Columns not sent (--allow-drift) hold the app's
    defaults and are tested exactly."""
    stream = replace(tp, columns=[col for col in tp.columns if col.name in sent])
    digest = hashlib.sha256()
    rows = not_app_form = 0
    columns = (
        f"{tp.row_key} AS k, {_in_app_form(tp, sent)} AS ok, {sqlite_line(stream, canonical=True)} AS line"
    )
    query = (
        f"SELECT count(*), max(k), sum(NOT ok), group_concat(line, '') FROM ("
        f"SELECT {columns} FROM {tp.sqlite} WHERE {tp.row_key} > :after ORDER BY {tp.row_key} LIMIT :limit)"
    )
    # Below every rowid there is (a rowid is a signed 64-bit integer), so the first chunk is a range too.
    params: dict[str, object] = {"after": -(2**63), "limit": FIRST_FETCH_ROWS}
    while True:
        n, last, bad, data = source.conn.execute(query, params).fetchone()
        if not n:
            return rows, digest.hexdigest(), not_app_form
        digest.update(data)
        rows += n
        not_app_form += bad
        params = {"after": last, "limit": next_chunk_rows(n, len(data))}


def _in_app_form(tp: TablePlan, sent: list[str]) -> str:
    """SQLite: true when every value of a row is in the app's form (given the equal checksums)."""
    tests = []
    for col in tp.columns:
        if col.name not in sent:
            tests.append(canonical_row(replace(tp, columns=[col])))
        elif (test := col.codec.readback_form(col.sqlite)) is not None:
            tests.append(f"({col.sqlite} IS NULL OR coalesce(({test}), 0))")
    return " AND ".join(tests) or "1"


class _FileChecks:
    """PRAGMA foreign_key_check and integrity_check, each on a connection and a thread of its own
    (SQLite releases the GIL), alongside the read-back of the values."""

    def __init__(self, source: Source) -> None:
        self._conns = source.extra_readers(2)
        if len(self._conns) < 2:  # not the file this export wrote (it is in rollback mode)
            raise MigrationError(f"cannot open {source.path} twice for reading")
        self._results: dict[str, object] = {}
        self._threads = [
            threading.Thread(target=self._run, args=(name, conn, sql), name=f"sqlite-{name}", daemon=True)
            for (name, sql), conn in zip(
                [
                    ("orphans", "SELECT count(*) FROM pragma_foreign_key_check"),
                    ("integrity", "PRAGMA integrity_check"),
                ],
                self._conns,
                strict=True,
            )
        ]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> _FileChecks:
        return self

    def __exit__(self, *exc: object) -> None:
        """Wait for both checks (a Ctrl-C stops them within milliseconds) and close their connections."""
        for thread in self._threads:
            thread.join()
        for conn in self._conns:
            conn.close()

    def _run(self, name: str, conn: sqlite3.Connection, sql: str) -> None:
        try:
            self._results[name] = conn.execute(sql).fetchone()[0]
        except BaseException as exc:  # raised again by result(), in the main thread
            self._results[name] = exc

    def result(self) -> tuple[int, str]:
        """(orphans, integrity_check's first line: 'ok' or the first problem)."""
        self.__exit__()
        for value in self._results.values():
            if isinstance(value, BaseException):
                raise value
        integrity = self._results["integrity"]
        return self._results["orphans"], integrity.decode() if isinstance(integrity, bytes) else integrity


def postgres_named(o: Options) -> str:
    """The PostgreSQL database and schema a todo.db is kept equal to, as its ledger records it."""
    return f"{o.target.masked} (schema {o.schema})"


def record_ledger_in_file(path: Path, sums: dict[str, tuple[int, str]], source: str) -> None:
    """What the export left, by table (rows, and the SHA-256 the file was just verified with), so
    that a later --reverse --sync can tell whether anyone has written to the file since."""
    from . import ledger

    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN")
        entries = [ledger.FileEntry(table, rows, digest) for table, (rows, digest) in sums.items()]
        ledger.record_in_file(db, entries, job="export", source=source)
        db.execute("COMMIT")
    finally:
        db.close()


# --- STEP 6 and helpers ----------------------------------------------------------------------


def move_into_place(tmp: Path, dest: Path, *, replacing: bool) -> None:
    """The atomic rename. A destination that did not exist when the run began must not exist now
    either (another export to the same path, finished meanwhile): linking, unlike renaming, refuses
    to replace it. Where the file system has no hard links, the rename does, after one last look."""
    if replacing:
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise _appeared(dest) from None
    except OSError:
        if dest.exists():
            raise _appeared(dest) from None
        os.replace(tmp, dest)
        return
    tmp.unlink()


def _appeared(dest: Path) -> UsageError:
    return UsageError(
        f"{str(dest)!r} appeared while the export ran (another export to the same path?); it was left as it is "
        "and this export was discarded",
        "re-run with --force-recreate to replace it, or pass another --sqlite-path",
    )


def _give_mode(tmp: Path, dest: Path) -> None:
    """The permissions and owner the file would have had: those of the file it replaces (an app
    running as another user must still open it), else the umask's (mkstemp makes files private)."""
    try:
        old = dest.stat()
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        return
    os.chmod(tmp, old.st_mode & 0o777)
    with contextlib.suppress(OSError):  # the owner too, where we may (root, or the owner already)
        os.chown(tmp, old.st_uid, old.st_gid)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    for p in (path, Path(f"{path}-journal")):
        with contextlib.suppress(OSError):
            p.unlink()


def _explain_write_error(exc: sqlite3.Error, path: Path) -> MigrationError:
    msg = str(exc)
    if "full" in msg.lower() or "disk i/o" in msg.lower():
        return MigrationError(
            f"no room to write the export beside the destination ({msg}); the destination was not touched",
            f"free space in {path.parent} (the export needs about the size of the data), then re-run",
        )
    if "interrupt" in msg.lower() and INTERRUPTED.is_set():
        raise KeyboardInterrupt
    return MigrationError(f"writing the export failed ({msg}); the destination was not touched")


def _print_dry_run(console: Console, dest: Path, counts: dict[str, int]) -> None:
    console.step("📋", "Dry run: this is what the export would do (nothing was written):")
    for table, n in counts.items():
        console.detail(f"export {table}: {n:,} rows")
    console.detail(f"into a temporary file beside {dest}, verified, then renamed to {dest.name}")


def _print_summary(console: Console, report: RunReport, *, dry_run: bool) -> None:
    console.step("📊", "Summary:")
    for table, counts in report.tables.items():
        console.detail(
            f"{table:<20} read {counts['read']:>10,}  {'would write' if dry_run else 'written'} {counts['written']:>10,}"
        )
    phases = ", ".join(f"{k} {s:.2f}s" for k, s in report.phases.items())
    console.detail(f"phases: {phases}")
    verb = "Dry run passed: the export would succeed" if dry_run else "Export completed and verified"
    console.result("🎉", f"{verb} in {report.duration_s or 0:.2f}s")
