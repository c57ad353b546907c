"""The SQLite side: open todo.db without ever writing to it, and hold one consistent snapshot.

Everything the tool reads (inspection, validation, the copy, verification) runs inside one read
transaction on one connection, or on more that provably see the same snapshot (extra_readers), so
an app still writing to a WAL-mode todo.db cannot give us a pattern without its task. A private
scratch database holds what validation finds.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from .convert import register_sqlite_functions
from .errors import INTERRUPTED, MigrationError, UsageError

SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 5000
SQLITE_CONFIG_MEMSTATUS = 9  # sqlite3.h
# The wal-index header at the start of a WAL database's -shm file: two copies of 48 bytes, which
# SQLite rewrites on every commit (a change counter, the last frame, checksums; new salts when
# the WAL restarts). https://www.sqlite.org/walformat.html
WAL_INDEX_HEADER = 48


@dataclass
class SourceTable:
    """One table as SQLite holds it. `row_key` identifies each row whatever its id holds (NULL,
    text, duplicates): the rowid where the table has one, else the WITHOUT ROWID primary key,
    which SQLite keeps unique and NOT NULL. Every scan, chunk and rejection is keyed by it."""

    name: str  # as spelled in todo.db (SQLite names are case-insensitive)
    columns: list[str]
    row_count: int | None  # None: unreadable
    rowid_pk: str | None  # an INTEGER PRIMARY KEY column: unique and never NULL by construction
    row_key: str = "rowid"  # SQL: a rowid name no column shadows, or the WITHOUT ROWID key column
    without_rowid: bool = False
    sequence: int | None = None  # AUTOINCREMENT's high-water mark (sqlite_sequence)
    declared: dict[str, str] = field(default_factory=dict)  # column (lower case): declared type, upper case
    unreadable: str | None = None  # why its rows cannot be read by id: fatal only for the app's tables
    fix: str = ""
    generated: list[str] = field(default_factory=list)  # GENERATED ALWAYS columns: computed, not stored data

    @property
    def sqlite(self) -> str:
        return f"main.{quote_ident(self.name)}"

    def column(self, name: str) -> str | None:
        """The source's spelling of a column name, matched as SQLite matches it (ignoring case)."""
        return next((c for c in self.columns if c.lower() == name.lower()), None)


@dataclass
class SchemaObject:
    """A view, trigger or index in todo.db that the models do not create: listed, not migrated."""

    kind: str
    name: str
    table: str


@dataclass
class Source:
    path: Path
    conn: sqlite3.Connection = field(repr=False)
    tables: dict[str, SourceTable]  # by lower-case name
    journal_mode: str
    immutable: bool = False
    objects: list[SchemaObject] = field(default_factory=list)
    wal_index: WalIndex | None = field(default=None, repr=False)
    wal_header: bytes | None = field(default=None, repr=False)  # read just before our snapshot began

    def table(self, name: str) -> SourceTable | None:
        return self.tables.get(name.lower())

    @property
    def live_wal(self) -> bool:
        """WAL mode, where a writer may commit while we read (not a file opened immutable)."""
        return self.journal_mode.lower() == "wal" and not self.immutable

    def extra_readers(self, count: int) -> list[sqlite3.Connection]:
        """More connections that see exactly our snapshot, for scanning on both cores; none where
        that cannot be shown (then we scan on this one connection alone).

        In rollback-journal mode our open read transaction holds a SHARED lock, so no writer can
        commit until we finish and every reader sees the same data. In WAL mode a writer may
        commit between two connections' snapshots: there the new readers are kept only if the
        wal-index header, read before our snapshot began and again after theirs began, is
        unchanged, i.e. nothing was committed in between (SQLite 3.40's sqlite3_snapshot_open,
        which would say so directly, is neither compiled in nor reachable from Python).
        """
        if count < 1 or (self.live_wal and (self.wal_index is None or self.wal_header is None)):
            return []
        readers = [_connect_read_only(self.path, immutable=self.immutable) for _ in range(count)]
        for conn in readers:
            _start_snapshot(conn)
        if self.live_wal and self.wal_index is not None and self.wal_index.header() != self.wal_header:
            for conn in readers:
                conn.close()
            return []
        return readers

    def close(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        self.conn.close()
        if self.wal_index is not None:  # only now that SQLite holds no lock on the -shm file
            self.wal_index.close()


def _check_file(path: Path) -> None:
    if not path.exists():
        raise UsageError(
            f"SQLite database {str(path)!r} does not exist",
            "pass --sqlite-path PATH/TO/todo.db (the default is ./todo.db)",
        )
    if path.is_dir():
        raise UsageError(
            f"{str(path)!r} is a directory, not a SQLite file", "pass --sqlite-path PATH/TO/todo.db"
        )
    try:
        with path.open("rb") as fh:
            header = fh.read(16)
    except PermissionError:
        raise UsageError(
            f"cannot read {str(path)!r} (permission denied)", "run as a user who can read the file"
        ) from None
    if header != SQLITE_HEADER:
        what = "is empty" if not header else "is not a SQLite database"
        raise UsageError(f"{str(path)!r} {what}", "pass --sqlite-path with the app's todo.db")


def _connect_read_only(path: Path, *, immutable: bool = False) -> sqlite3.Connection:
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    if immutable:
        uri += "&immutable=1"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # A long scan stops within milliseconds of Ctrl-C instead of running to its end.
    conn.set_progress_handler(lambda: 1 if INTERRUPTED.is_set() else 0, 100_000)
    return conn


def explain_sqlite_error(exc: sqlite3.Error, path: Path) -> MigrationError:
    """One line for each way reading todo.db fails, saying what the user's file needs."""
    msg = str(exc)
    low = msg.lower()
    name = getattr(exc, "sqlite_errorname", "") or ""
    real = path.resolve()  # SQLite names the companions after the file a symlink points at
    if name == "SQLITE_READONLY_ROLLBACK" or (
        "readonly" in low and _nonempty(Path(f"{real}-journal")) and not Path(f"{real}-wal").exists()
    ):
        return MigrationError(
            f"{str(path)!r} has a hot rollback journal ({real}-journal): a write to it was interrupted "
            "and must be rolled back before anyone reads it",
            f"let the app (or: sqlite3 {path} 'PRAGMA integrity_check') open it once as a user who can write "
            "the file and its directory, then re-run; keep the -journal file until then",
            target_untouched=True,
        )
    if name.startswith("SQLITE_READONLY") or "readonly" in low:
        return MigrationError(
            f"cannot read {str(path)!r} without writing beside it: a WAL database needs its -shm "
            "file, which SQLite must create or update in the file's directory",
            f"copy {path.name} with its -wal and -shm files to a writable directory and pass that copy "
            "with --sqlite-path",
            target_untouched=True,
        )
    if "locked" in low or "busy" in low:
        return MigrationError(
            f"{str(path)!r} is locked by another process (an app writing in rollback-journal mode?)",
            "stop the app or retry; in WAL mode the app may keep writing while this tool reads",
            target_untouched=True,
        )
    if "malformed" in low or "not a database" in low or "corrupt" in low:
        return MigrationError(
            f"{str(path)!r} is corrupt ({msg})",
            f"check it with: sqlite3 {path} 'PRAGMA integrity_check' and recover it with sqlite3 .recover",
            target_untouched=True,
        )
    if "unable to open" in low:
        return MigrationError(
            f"cannot open {str(path)!r} read-only ({msg})",
            f"check the file and its directory are readable; a WAL database also needs its -shm file or a "
            f"writable directory (copy {path.name} with its -wal and -shm files somewhere writable)",
            target_untouched=True,
        )
    return MigrationError(f"reading {str(path)!r} failed: {msg}", target_untouched=True)


def explain_sqlite_write_error(exc: sqlite3.Error, path: Path, *, rolled_back: bool) -> MigrationError:
    """One line for each way writing to todo.db fails (--reverse --sync), saying whether the change
    was rolled back; when not, its old pages wait in the -journal for the next reader."""
    msg = str(exc)
    low = msg.lower()
    if rolled_back:
        kept = f"{path.name} was left as it was"
    else:
        kept = f"{path.name}-journal holds the pages as they were; SQLite writes them back the next time the file is opened"
    if "interrupt" in low and INTERRUPTED.is_set():
        raise KeyboardInterrupt
    if "full" in low or "disk i/o" in low:
        return MigrationError(
            f"no room to write to {str(path)!r} ({msg}); {kept}",
            f"free space in {path.parent} (the change and its rollback journal need room), then re-run",
        )
    if "readonly" in low or "read-only" in low:
        return MigrationError(
            f"cannot write to {str(path)!r} ({msg}); {kept}",
            "make the file and its directory writable by this user (SQLite writes a journal beside it), then re-run",
        )
    if "locked" in low or "busy" in low:
        return MigrationError(
            f"{str(path)!r} is locked by another process (the app, running on SQLite again?); {kept}",
            "stop whatever has it open, then re-run",
        )
    if "malformed" in low or "not a database" in low or "corrupt" in low:
        return explain_sqlite_error(exc, path)
    return MigrationError(f"writing to {str(path)!r} failed ({msg}); {kept}")


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


class WalIndex:
    """The -shm file of a WAL database, open for reading its wal-index header.

    One descriptor, kept open until the source is closed: closing any descriptor of a file drops
    every POSIX lock the process holds on it, and SQLite's WAL read locks are locks on this very
    file. Opening and closing it for each read would release our snapshot's read mark, and a
    checkpoint could then overwrite the pages we read."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def open(cls, path: Path) -> WalIndex | None:
        try:
            return cls(os.open(f"{path.resolve()}-shm", os.O_RDONLY))
        except OSError:
            return None

    def header(self) -> bytes | None:
        """The header, or None where it cannot be read whole and consistent. SQLite writes its
        two copies one after the other and readers retry until they agree; a copy read
        mid-commit therefore differs from the other and is refused here too."""
        try:
            header = os.pread(self._fd, 2 * WAL_INDEX_HEADER, 0)
        except OSError:
            return None
        first, second = header[:WAL_INDEX_HEADER], header[WAL_INDEX_HEADER:]
        initialized = len(header) == 2 * WAL_INDEX_HEADER and first[12] == 1  # isInit
        return first if initialized and first == second else None

    def close(self) -> None:
        os.close(self._fd)


def _start_snapshot(conn: sqlite3.Connection) -> None:
    """Begin the read transaction every query of the run sees (the first read takes the snapshot)."""
    register_sqlite_functions(conn)
    conn.text_factory = bytes
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()


def _refuse_unless_utf8(conn: sqlite3.Connection, path: Path) -> None:
    """A file that stores text as UTF-16 (PRAGMA encoding; some Windows tools make them) hands
    CAST(text AS BLOB) its UTF-16 bytes, which every byte-level test here reads as UTF-8: its
    ASCII would look full of NUL bytes. Refused with the one-line conversion, never guessed at."""
    encoding = as_text(conn.execute("PRAGMA encoding").fetchone()[0])
    if encoding.upper() == "UTF-8":
        return
    conn.close()
    raise UsageError(
        f"{str(path)!r} stores its text as {encoding}; this tool reads SQLite files in UTF-8, "
        "the encoding the app's SQLAlchemy creates",
        f"make a UTF-8 copy (it holds the same values) and pass that: "
        f"sqlite3 {shlex.quote(str(path))} .dump | sqlite3 {shlex.quote(str(path.with_name(path.stem + '-utf8.db')))}",
    )


def open_source(path: Path) -> Source:
    """Open read-only, start the snapshot, and describe what is inside."""
    path = Path(path).expanduser()
    _check_file(path)
    try:
        conn = _connect_read_only(path)
        immutable = False
        try:
            journal_mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        except sqlite3.OperationalError as exc:
            # A WAL database in a directory we cannot write, with no -wal file: nobody is writing.
            if "unable to open" not in str(exc) or Path(f"{path}-wal").exists():
                raise
            conn.close()
            conn = _connect_read_only(path, immutable=True)
            immutable = True
            journal_mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        wal_index = WalIndex.open(path) if str(journal_mode).lower() == "wal" and not immutable else None
        wal_header = wal_index.header() if wal_index is not None else None
        _start_snapshot(conn)
        _refuse_unless_utf8(conn, path)
        conn.execute("ATTACH DATABASE '' AS scratch")  # private temp file, gone on close
        tables = _inspect(conn)
    except sqlite3.Error as exc:
        raise explain_sqlite_error(exc, path) from None
    return Source(
        path=path,
        conn=conn,
        tables=tables,
        journal_mode=str(journal_mode),
        immutable=immutable,
        wal_index=wal_index,
        wal_header=wal_header,
    )


def as_text(value: object) -> str:
    """A name or value SQLite handed back as bytes (connections here read text as bytes)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _inspect(conn: sqlite3.Connection) -> dict[str, SourceTable]:
    master = [
        tuple(as_text(v) if v is not None else None for v in row)
        for row in conn.execute("SELECT type, name, tbl_name, sql FROM main.sqlite_master")
    ]
    names = sorted(name for kind, name, _, _ in master if kind == "table" and not name.startswith("sqlite_"))
    sequences = {}
    if any(name == "sqlite_sequence" for _, name, _, _ in master):
        sequences = {
            as_text(n).lower(): s for n, s in conn.execute("SELECT name, seq FROM main.sqlite_sequence")
        }
    tables = {}
    for name in names:
        tables[name.lower()] = _inspect_table(conn, name, sequences.get(name.lower()))
    return tables


def _inspect_table(conn: sqlite3.Connection, name: str, sequence: int | None) -> SourceTable:
    """One table's columns, key and rows. A table the app does not have may be anything (a search
    index's internals, a virtual table of an extension not loaded here): what keeps its rows from
    being read by one key is noted on it, to be refused if the models need the table and named
    otherwise, rather than stopping the run."""
    quoted = quote_ident(name)
    try:
        info = [
            [as_text(v) if isinstance(v, bytes) else v for v in r]
            for r in conn.execute(f"PRAGMA main.table_info({quoted})")
        ]
        count = conn.execute(f"SELECT count(*) FROM main.{quoted}").fetchone()[0]
        generated = [  # table_info leaves them out: hidden 2 (VIRTUAL) and 3 (STORED)
            as_text(r[1]) for r in conn.execute(f"PRAGMA main.table_xinfo({quoted})") if r[6] in (2, 3)
        ]
    except sqlite3.OperationalError as exc:
        if "no such module" not in str(exc):
            raise
        return SourceTable(
            name,
            [],
            None,
            None,
            unreadable=f"table {name!r} in todo.db is a virtual table of an SQLite extension not loaded here ({exc})",
            fix="the Todo app's tables are plain tables; rebuild that table as one",
        )
    columns = [r[1] for r in info]
    pks = sorted((r for r in info if r[5]), key=lambda r: r[5])
    without_rowid = _is_without_rowid(conn, name)
    rowid_pk = None
    if (
        not without_rowid
        and len(pks) == 1
        and str(pks[0][2]).upper() == "INTEGER"
        and not _has_pk_index(conn, name)
    ):
        rowid_pk = pks[0][1]
    row_key, unreadable, fix = _row_key(name, columns, pks, without_rowid)
    declared = {r[1].lower(): (r[2] or "").upper() for r in info}
    return SourceTable(
        name, columns, count, rowid_pk, row_key, without_rowid, sequence, declared, unreadable, fix, generated
    )


def _row_key(name: str, columns: list[str], pks: list, without_rowid: bool) -> tuple[str, str | None, str]:
    """(SQL naming each row uniquely, why there is none, what to do about it)."""
    if without_rowid:
        if len(pks) != 1:
            return (
                "",
                (f"table {name!r} in todo.db is WITHOUT ROWID with a primary key of {len(pks)} columns"),
                "the Todo app's tables have one id column; rebuild that table with a plain id key",
            )
        return quote_ident(pks[0][1]), None, ""
    lowered = {c.lower() for c in columns}
    row_key = next((k for k in ("rowid", "_rowid_", "oid") if k not in lowered), None)
    if row_key is None:
        return (
            "",
            (f"table {name!r} in todo.db has columns named rowid, _rowid_ and oid, hiding its row ids"),
            "rename one of those columns in a copy of todo.db",
        )
    return row_key, None, ""


def _is_without_rowid(conn: sqlite3.Connection, name: str) -> bool:
    try:
        row = conn.execute(
            "SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?", (name,)
        ).fetchone()
        return bool(row and row[0])
    except sqlite3.OperationalError:  # SQLite before 3.37: a WITHOUT ROWID table has no rowid to select
        try:
            conn.execute(f"SELECT _rowid_ FROM main.{quote_ident(name)} LIMIT 0")
        except sqlite3.OperationalError:
            return True
        return False


def _has_pk_index(conn: sqlite3.Connection, table: str) -> bool:
    """An INTEGER PRIMARY KEY is the rowid itself, with no index of its own, except when declared
    DESC: then SQLite keeps a separate key that may hold NULLs and duplicates nothing else stops."""
    return (
        conn.execute("SELECT 1 FROM pragma_index_list(?) WHERE origin = 'pk'", (table,)).fetchone()
        is not None
    )


def schema_objects(source: Source, known_indexes: set[str]) -> list[SchemaObject]:
    """Views, triggers and indexes in todo.db that the models do not create."""
    rows = source.conn.execute(
        "SELECT type, name, tbl_name FROM main.sqlite_master WHERE (type IN ('view', 'trigger') "
        "OR (type = 'index' AND sql IS NOT NULL)) ORDER BY type, name"
    ).fetchall()
    found = []
    for kind, name, table in rows:
        kind, name, table = as_text(kind), as_text(name), as_text(table)
        if kind == "index" and name in known_indexes:
            continue
        found.append(SchemaObject(kind, name, table))
    return found


def let_connections_run_in_parallel() -> bool:
    """SQLite counts every allocation under one process-wide mutex (SQLITE_CONFIG_MEMSTATUS, on by
    default), so two connections building lines on two threads mostly take turns: turned off,
    both cores work (the values check alongside the load, a sync's readers). It can only be set
    while the library is shut down, so this runs once, first thing, before any connection exists
    (the entry script, never a library caller). Where the library cannot be reached (another
    platform, a Python with SQLite built in), nothing changes. True if set."""
    try:
        lib = ctypes.CDLL("libsqlite3.so.0")  # the very library the sqlite3 module loaded
        if lib.sqlite3_shutdown() != 0:
            return False
        done = lib.sqlite3_config(SQLITE_CONFIG_MEMSTATUS, ctypes.c_int(0)) == 0
        lib.sqlite3_initialize()
        return done
    except (OSError, AttributeError):
        return False


def quote_ident(name: str) -> str:
    """SQLite identifier quoting (the same rule as standard SQL)."""
    return '"' + name.replace('"', '""') + '"'
