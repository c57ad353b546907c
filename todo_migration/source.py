"""The SQLite side: open todo.db without ever writing to it, and hold one consistent snapshot.

Everything the tool reads (inspection, validation, the copy, verification) runs inside one read
transaction on one connection, so an app still writing to a WAL-mode todo.db cannot give us a
pattern without its task. A private scratch database holds what validation finds.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from .convert import register_sqlite_functions
from .errors import INTERRUPTED, MigrationError, UsageError

SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 5000


@dataclass
class SourceTable:
    name: str
    columns: list[str]
    row_count: int
    rowid_pk: str | None  # an INTEGER PRIMARY KEY column: unique and never NULL by construction


@dataclass
class Source:
    path: Path
    conn: sqlite3.Connection = field(repr=False)
    tables: dict[str, SourceTable]
    journal_mode: str
    immutable: bool = False
    strip_nul: bool = False

    def extra_readers(self, count: int) -> list[sqlite3.Connection]:
        """More connections that see exactly our snapshot, for scanning on both cores.

        Only where that is guaranteed: in rollback-journal mode our open read transaction holds
        a SHARED lock, so no writer can commit until we finish and every reader sees the same
        data. In WAL mode a writer may commit between two connections' snapshots, so there
        we scan on this one connection alone.
        """
        if count < 1 or (self.journal_mode.lower() == "wal" and not self.immutable):
            return []
        readers = [_connect_read_only(self.path, immutable=self.immutable) for _ in range(count)]
        for conn in readers:
            _start_snapshot(conn, strip_nul=self.strip_nul)
        return readers

    def close(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        self.conn.close()


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
    msg = str(exc)
    low = msg.lower()
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
            "check the file and its directory are readable (WAL files need the -shm file or a writable directory)",
        )
    return MigrationError(f"reading {str(path)!r} failed: {msg}", target_untouched=True)


def _start_snapshot(conn: sqlite3.Connection, *, strip_nul: bool) -> None:
    """Begin the read transaction every query of the run sees (the first read takes the snapshot)."""
    register_sqlite_functions(conn, strip_nul=strip_nul)
    conn.text_factory = bytes
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()


def open_source(path: Path, *, strip_nul: bool = False) -> Source:
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
        _start_snapshot(conn, strip_nul=strip_nul)
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
        strip_nul=strip_nul,
    )


def _inspect(conn: sqlite3.Connection) -> dict[str, SourceTable]:
    names = [
        row[0].decode() if isinstance(row[0], bytes) else row[0]
        for row in conn.execute(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        )
    ]
    tables = {}
    for name in names:
        quoted = quote_ident(name)
        info = [
            [v.decode() if isinstance(v, bytes) else v for v in r]
            for r in conn.execute(f"PRAGMA main.table_info({quoted})")
        ]
        columns = [r[1] for r in info]
        pks = [r for r in info if r[5]]
        rowid_pk = pks[0][1] if len(pks) == 1 and str(pks[0][2]).upper() == "INTEGER" else None
        count = conn.execute(f"SELECT count(*) FROM main.{quoted}").fetchone()[0]
        tables[name] = SourceTable(name, columns, count, rowid_pk)
    return tables


def quote_ident(name: str) -> str:
    """SQLite identifier quoting (the same rule as standard SQL)."""
    return '"' + name.replace('"', '""') + '"'
