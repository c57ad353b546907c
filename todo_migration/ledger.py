"""The ledger: what the last migration or sync left in PostgreSQL, so a sync can tell whether
anyone else has written there since (the app, already switched over?).

One small table of the tool's own, `todo_migration_ledger`, beside the app's tables in the target
schema: per app table, the rows it held and the transactions of ours that wrote them. PostgreSQL
stamps every row version with the transaction that wrote it (the `xmin` system column), so any
INSERT or UPDATE by someone else leaves a row stamped with another transaction, and a DELETE
changes the count: one scan of the table, without reading its values, tells. It is written in
the same transaction as the data, after the verification. The drift and schema checks look at
the app's tables only.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import cursor as PgCursor

from . import __version__
from .errors import MigrationError
from .source import as_text

LEDGER_TABLE = "todo_migration_ledger"
FINGERPRINT_SLICE = 1024 * 1024  # bytes of fingerprints written or read in one statement


@dataclass(frozen=True)
class Entry:
    table: str
    rows: int
    xids: list[int] = field(default_factory=list)  # 32-bit transaction ids, as xmin shows them
    # todo.db's fingerprints in the snapshot these rows were verified equal to (diff.Fingerprints,
    # as bytes, with how they were printed); None after a migration, which takes none
    fingerprints: bytes | None = field(default=None, repr=False)
    recipe: str | None = None
    source: str | None = None  # the todo.db it was taken from, as recorded
    job: str | None = None  # as recorded: "migrate" or "sync", and how epoch numbers were read


def job_named(job: str, epoch_unit: str | None) -> str:
    """The ledger's `job`: what ran, and the one flag that changes what the same todo.db becomes
    in PostgreSQL without any row being refused (--epoch-unit)."""
    return f"{job} --epoch-unit {epoch_unit}" if epoch_unit else job


def epoch_unit_of(job: str | None) -> str | None:
    """The --epoch-unit a recorded job ran with (None: none, or not known)."""
    words = (job or "").split()
    return words[words.index("--epoch-unit") + 1] if "--epoch-unit" in words[:-1] else None


def _ledger(schema: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(LEDGER_TABLE))


def exists(cur: PgCursor, schema: str) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table_name(cur, schema),))
    return bool(cur.fetchone()[0])


def table_name(cur: PgCursor, schema: str) -> str:
    """The ledger's schema-qualified name, quoted, as SQL text."""
    return _ledger(schema).as_string(cur)


LEDGER_COLUMNS = {"table_name", "rows", "xids", "job", "source", "tool_version", "written_at"}


def refuse_foreign(cur: PgCursor, schema: str) -> None:
    """A relation of the ledger's name that is not this tool's ledger (another tool's table, a view)
    would fail the run only at its end, after the whole load: said before anything is written."""
    cur.execute(
        "SELECT c.relkind, array(SELECT attname::text FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0 "
        "AND NOT attisdropped) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema, LEDGER_TABLE),
    )
    row = cur.fetchone()
    if row is None:
        return
    kind, columns = row
    missing = sorted(LEDGER_COLUMNS - set(columns))
    if kind in ("r", "p") and not missing:
        return
    what = "is not a table" if kind not in ("r", "p") else f"has no {', '.join(missing)}"
    raise MigrationError(
        f"{schema}.{LEDGER_TABLE} exists but is not this tool's ledger (it {what}); the run records what it "
        "wrote there",
        f"rename or drop it (ALTER TABLE {schema}.{LEDGER_TABLE} RENAME TO …), or use --schema with another schema",
        target_untouched=True,
    )


def read(cur: PgCursor, schema: str) -> dict[str, Entry]:
    """The ledger's entries by table; empty when there is no ledger (an older tool, or by hand)."""
    if not exists(cur, schema):
        return {}
    extra = ", recipe, length(fingerprints)" if _has_fingerprints(cur, schema) else ", NULL, NULL"
    cur.execute(
        sql.SQL("SELECT table_name, rows, xids, source, job" + extra + " FROM {}").format(_ledger(schema))
    )
    entries = {}
    for name, rows, xids, source, job, recipe, size in cur.fetchall():
        fingerprints = _read_fingerprints(cur, schema, name, size) if size is not None else None
        entries[name] = Entry(name, rows, list(xids), fingerprints, recipe, source, job)
    return entries


def _read_fingerprints(cur: PgCursor, schema: str, table: str, size: int) -> bytes:
    """A slice at a time, so that memory holds the fingerprints once, not their text form too."""
    data = bytearray()
    query = sql.SQL("SELECT substring(fingerprints FROM %s FOR %s) FROM {} WHERE table_name = %s").format(
        _ledger(schema)
    )
    while len(data) < size:
        cur.execute(query, (len(data) + 1, FINGERPRINT_SLICE, table))
        data += cur.fetchone()[0]
    return bytes(data)


def _has_fingerprints(cur: PgCursor, schema: str) -> bool:
    """Whether the ledger has the fingerprint columns (one an older version of the tool made has not)."""
    cur.execute(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'recipe'",
        (_ledger(schema).as_string(cur),),
    )
    return bool(cur.fetchone()[0])


def this_transaction(cur: PgCursor) -> int:
    """Our transaction's id as the rows we write will carry it (xmin is the low 32 bits)."""
    cur.execute("SELECT txid_current() % 4294967296")
    return int(cur.fetchone()[0])


def record(cur: PgCursor, schema: str, entries: list[Entry], *, job: str, source: str) -> None:
    """Write (or replace) the entries, inside the caller's transaction. The table is created only
    where it is missing: even IF NOT EXISTS needs CREATE on the schema, which the app's own role,
    granted only the tables, lacks."""
    if not exists(cur, schema):
        cur.execute(
            sql.SQL(
                "CREATE TABLE {} (table_name text PRIMARY KEY, rows bigint NOT NULL, "
                "xids bigint[] NOT NULL, job text NOT NULL, source text NOT NULL, tool_version text NOT NULL, "
                "written_at timestamptz NOT NULL DEFAULT now(), fingerprints bytea, recipe text)"
            ).format(_ledger(schema))
        )
    elif not _has_fingerprints(cur, schema):
        cur.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN fingerprints bytea, ADD COLUMN recipe text").format(
                _ledger(schema)
            )
        )
    for e in entries:
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (table_name, rows, xids, job, source, tool_version, fingerprints, recipe) "
                "VALUES (%s, %s, %s::bigint[], %s, %s, %s, %s, %s) "
                "ON CONFLICT (table_name) DO UPDATE SET rows = EXCLUDED.rows, xids = EXCLUDED.xids, "
                "job = EXCLUDED.job, source = EXCLUDED.source, tool_version = EXCLUDED.tool_version, "
                "written_at = now(), fingerprints = EXCLUDED.fingerprints, recipe = EXCLUDED.recipe"
            ).format(_ledger(schema)),
            (
                e.table,
                e.rows,
                sorted(set(e.xids)),
                job,
                source,
                __version__,
                b"" if e.fingerprints else None,
                e.recipe,
            ),
        )
        for start in range(0, len(e.fingerprints or b""), FINGERPRINT_SLICE):  # flat memory
            cur.execute(
                sql.SQL("UPDATE {} SET fingerprints = fingerprints || %s WHERE table_name = %s").format(
                    _ledger(schema)
                ),
                (psycopg2.Binary(e.fingerprints[start : start + FINGERPRINT_SLICE]), e.table),
            )


def written_since(
    cur: PgCursor, schema: str, tables: list[tuple[str, str]]
) -> tuple[dict[str, Entry], dict[str, str]]:
    """The ledger's entries, and for each of the (name, qualified name) tables that changed since
    its entry was written (or has none), what changed, in words."""
    entries = read(cur, schema)
    changed = {}
    for name, table_sql in tables:
        what = written_by_others(cur, table_sql, entries.get(name))
        if what is not None:
            changed[name] = what
    return entries, changed


def written_by_others(cur: PgCursor, table_sql: str, entry: Entry | None) -> str | None:
    """What changed in one table since the entry was written, in words; None if nothing did."""
    if entry is None:
        return "no record of what the last migrate/sync left"
    cur.execute(  # xmin compared as xid: a third cheaper than printing 1M of them as text
        f"SELECT count(*), count(*) FILTER (WHERE NOT (xmin = ANY(%s::text[]::xid[]))) FROM {table_sql}",
        ([str(x) for x in entry.xids],),
    )
    rows, foreign = cur.fetchone()
    if rows == entry.rows and not foreign:
        return None
    parts = [f"{entry.rows:,} rows left, {rows:,} now"] if rows != entry.rows else []
    if foreign:
        parts.append(f"{foreign:,} {'row' if foreign == 1 else 'rows'} inserted or updated by someone else")
    gone = entry.rows - (rows - foreign)  # of the rows left: deleted, or updated (a new xmin)
    if gone > 0:
        parts.append(f"{gone:,} of the rows left deleted or updated")
    return ", ".join(parts)


# --- in todo.db: what the last export (--reverse) or --reverse --sync left there ---------------
#
# SQLite stamps no row with its writer, so the entry is a checksum: the rows, and the SHA-256 of
# the table's rows in id order as the forward direction reads them (the stream the export was
# verified with). The app ignores the table; the forward migration does not copy it.


@dataclass(frozen=True)
class FileEntry:
    table: str
    rows: int
    sha256: str


def _in_file(db: sqlite3.Connection) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return db.execute(query, (LEDGER_TABLE,)).fetchone() is not None


def read_file_entries(db: sqlite3.Connection) -> dict[str, FileEntry]:
    if not _in_file(db):
        return {}
    rows = db.execute(f"SELECT table_name, rows, sha256 FROM {LEDGER_TABLE}").fetchall()
    return {as_text(t): FileEntry(as_text(t), n, as_text(h)) for t, n, h in rows}


def record_in_file(db: sqlite3.Connection, entries: list[FileEntry], *, job: str, source: str) -> None:
    """Write (or replace) the entries, inside the caller's transaction on todo.db."""
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (table_name TEXT PRIMARY KEY, rows INTEGER NOT NULL, "
        "sha256 TEXT NOT NULL, job TEXT NOT NULL, source TEXT NOT NULL, tool_version TEXT NOT NULL, "
        "written_at TEXT NOT NULL)"
    )
    written = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    db.executemany(
        f"INSERT OR REPLACE INTO {LEDGER_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(e.table, e.rows, e.sha256, job, source, __version__, written) for e in entries],
    )


def file_source(db: sqlite3.Connection) -> str | None:
    """The PostgreSQL database the last export/sync of this todo.db read, as recorded."""
    row = db.execute(f"SELECT source FROM {LEDGER_TABLE} LIMIT 1").fetchone() if _in_file(db) else None
    return as_text(row[0]) if row else None


def file_changed(entries: dict[str, FileEntry], now: dict[str, FileEntry]) -> list[str]:
    """The tables of todo.db that differ from what the ledger says was left, each in words."""
    changed = []
    for table, current in now.items():
        left = entries.get(table)
        if left is None:
            changed.append(f"{table}: no record of what the last export/sync left")
        elif (left.rows, left.sha256) != (current.rows, current.sha256):
            rows = (
                f"{left.rows:,} rows left, {current.rows:,} now"
                if left.rows != current.rows
                else "values changed"
            )
            changed.append(f"{table}: {rows}")
    return changed
