"""An independent check of an export (--reverse): a todo.db written from PostgreSQL.

It does not import todo_migration. What the app's todo.db looks like comes from models.py through
SQLAlchemy itself (create_all on an empty SQLite file), and the values' SQLite form from SQLAlchemy's
SQLite dialect as the app stores them:

- Boolean: the integer 0 or 1;
- DateTime: the text 'YYYY-MM-DD HH:MM:SS.ffffff' (four-digit year, always six fractional digits);
- Integer: an integer; String(n) / Text: text, byte for byte the UTF-8 of PostgreSQL's string;
- NULL as NULL.

Rows are compared as (typeof, value) pairs with text as raw bytes, so 1 and 1.0, or '1' and 1, or a
text that only decodes alike, are different values.

    assert_app_schema(path)                               # schema, header, integrity, foreign keys
    assert_same(sqlite_dump(path), pg_as_sqlite(url), "export", "PostgreSQL")
    assert_same(sqlite_dump(a), sqlite_dump(b), "export", "original")
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import psycopg2
from sqlalchemy import create_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models import Base  # noqa: E402

TABLES = ("users", "tasks", "recurring_patterns")
SHOWN = 10  # differences listed per table

Dump = dict[str, dict[int, tuple]]  # table -> id -> ((typeof, value), …) in model column order


def columns(table: str) -> list[str]:
    return [c.name for c in Base.metadata.tables[table].columns]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- schema ----------------------------------------------------------------------------------------


def schema_of(path: Path | str) -> dict[str, tuple[str, str, str | None]]:
    """name -> (type, table, SQL with whitespace runs collapsed) for every table, index, view and
    trigger in sqlite_master (sqlite_stat* statistics tables left out: ANALYZE is not a change)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_stat%'"
        ).fetchall()
    return {name: (typ, tbl, " ".join(sql.split()) if sql else None) for typ, name, tbl, sql in rows}


def pragmas_of(path: Path | str) -> dict[str, tuple]:
    """Per table: PRAGMA table_info, index_list with each index's columns, foreign_key_list."""
    out: dict[str, tuple] = {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        for table in TABLES:
            info = conn.execute(f"PRAGMA table_info({_q(table)})").fetchall()
            indexes = sorted(
                (
                    name,
                    unique,
                    origin,
                    partial,
                    tuple(r[2] for r in conn.execute(f"PRAGMA index_info({_q(name)})")),
                )
                for _, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({_q(table)})")
            )
            fks = sorted(conn.execute(f"PRAGMA foreign_key_list({_q(table)})").fetchall())
            out[table] = (tuple(info), tuple(indexes), tuple(fks))
    return out


_APP: list[tuple] = []


def app_facts() -> tuple[dict, dict, dict]:
    """(schema_of, pragmas_of, header) of an empty todo.db as the app creates it
    (models.Base.metadata.create_all on SQLite); made once, in a folder removed at once."""
    if not _APP:
        with tempfile.TemporaryDirectory(prefix="app-schema-") as folder:
            path = Path(folder) / "app.db"
            engine = create_engine(f"sqlite:///{path}")
            Base.metadata.create_all(engine)
            engine.dispose()
            _APP.append((schema_of(path), pragmas_of(path), header(path)))
    return _APP[0]


def header(path: Path | str) -> dict[str, int]:
    """The database header's journal format (1 rollback, 2 WAL) and text encoding (1 = UTF-8)."""
    with open(path, "rb") as f:
        data = f.read(100)
    assert data[:16] == b"SQLite format 3\x00", f"{path} is not an SQLite database"
    return {
        "write_version": data[18],
        "read_version": data[19],
        "text_encoding": int.from_bytes(data[56:60], "big"),
        "user_version": int.from_bytes(data[60:64], "big"),
        "application_id": int.from_bytes(data[68:72], "big"),
    }


def assert_app_schema(path: Path | str) -> None:
    """`path` is a todo.db as the app makes it: the same tables, indexes, columns, NOT NULLs,
    defaults and foreign keys as create_all gives; a rollback-journal, UTF-8 file; whole and with
    every foreign key satisfied; no -wal/-journal/-shm beside it."""
    path = Path(path)
    want, want_pragmas, want_header = app_facts()
    got = schema_of(path)
    # The tool's record of what it left (README: the cutover), which the app never reads.
    ledger = got.pop("todo_migration_ledger", None)
    assert ledger is not None and ledger[0] == "table", f"{path.name} has no todo_migration_ledger"
    got.pop("sqlite_autoindex_todo_migration_ledger_1", None)
    problems = []
    for name in sorted(set(got) | set(want)):
        if name not in got:
            problems.append(f"missing {want[name][0]} {name}: {want[name][2]}")
        elif name not in want:
            problems.append(f"extra {got[name][0]} {name}: {got[name][2]}")
        elif got[name] != want[name]:
            problems.append(f"{name} differs:\n  export: {got[name]}\n  app:    {want[name]}")
    assert not problems, f"{path.name}'s schema is not the app's:\n" + "\n".join(problems)
    assert pragmas_of(path) == want_pragmas
    got_header = header(path)
    assert got_header == want_header, f"header {got_header}, the app's file has {want_header}"
    for suffix in ("-wal", "-journal", "-shm"):
        assert not Path(f"{path}{suffix}").exists(), f"{path.name}{suffix} beside the export"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


# --- values ----------------------------------------------------------------------------------------


def sqlite_dump(path: Path | str) -> Dump:
    """Every row of the app's tables as (typeof, value) pairs, text as raw bytes, keyed by id."""
    out: Dump = {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        conn.text_factory = bytes
        for table in TABLES:
            cols = columns(table)
            select = ", ".join(f"typeof({_q(c)}), {_q(c)}" for c in cols)
            rows: dict[int, tuple] = {}
            for row in conn.execute(f"SELECT {select} FROM {_q(table)} ORDER BY id"):
                pairs = tuple((row[i].decode(), row[i + 1]) for i in range(0, len(row), 2))
                key = pairs[0][1]
                assert key not in rows, f"{table}: id {key!r} twice"
                rows[key] = pairs
            out[table] = rows
    return out


def sqlite_timestamp(value: datetime) -> str:
    """SQLAlchemy's SQLite DateTime storage format."""
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
    )


def sqlite_form(value: object) -> tuple[str, object]:
    """A PostgreSQL value (as psycopg2 returns it) in the form the app stores it in SQLite."""
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("integer", int(value))
    if isinstance(value, int):
        return ("integer", value)
    if isinstance(value, datetime):
        assert value.tzinfo is None, f"a timestamp with a time zone: {value!r}"
        return ("text", sqlite_timestamp(value).encode())
    if isinstance(value, str):
        return ("text", value.encode("utf-8"))
    raise TypeError(f"no SQLite form for {type(value).__name__} {value!r}")


def pg_rows(url: str, schema: str = "public") -> dict[str, dict[int, tuple]]:
    """Every row of the app's tables in PostgreSQL, model columns only, as psycopg2 returns them."""
    out: dict[str, dict[int, tuple]] = {}
    conn = psycopg2.connect(url)
    try:
        conn.set_session(readonly=True, isolation_level="REPEATABLE READ")
        with conn.cursor() as cur:
            for table in TABLES:
                cols = ", ".join(_q(c) for c in columns(table))
                cur.execute(f"SELECT {cols} FROM {_q(schema)}.{_q(table)} ORDER BY id")
                out[table] = {row[0]: row for row in cur}
    finally:
        conn.rollback()
        conn.close()
    return out


def pg_as_sqlite(url: str, schema: str = "public") -> Dump:
    """What an export of PostgreSQL must hold: every value in the app's SQLite form."""
    return {
        table: {key: tuple(sqlite_form(v) for v in row) for key, row in rows.items()}
        for table, rows in pg_rows(url, schema).items()
    }


def counts(dump: Dump) -> dict[str, int]:
    return {table: len(rows) for table, rows in dump.items()}


def differences(got: Dump, want: Dump, got_name: str = "got", want_name: str = "expected") -> list[str]:
    """Each way `got` differs from `want`, naming table, id and column."""
    problems: list[str] = []
    for table in TABLES:
        g, w = got.get(table, {}), want.get(table, {})
        cols = columns(table)
        shown = 0
        for key in sorted(
            set(g) | set(w), key=lambda k: (not isinstance(k, int), k if isinstance(k, int) else 0, repr(k))
        ):
            if shown >= SHOWN:
                problems.append(f"{table}: … and more")
                break
            if key not in g:
                problems.append(f"{table} id {key!r}: missing from {got_name}")
            elif key not in w:
                problems.append(f"{table} id {key!r}: in {got_name} only")
            elif g[key] != w[key]:
                for col, a, b in zip(cols, g[key], w[key], strict=True):
                    if a != b:
                        problems.append(f"{table} id {key!r} {col}: {got_name} {a!r}, {want_name} {b!r}")
            else:
                continue
            shown += 1
    return problems


def assert_same(got: Dump, want: Dump, got_name: str = "got", want_name: str = "expected") -> None:
    problems = differences(got, want, got_name, want_name)
    assert not problems, f"{got_name} and {want_name} differ:\n" + "\n".join(problems)
