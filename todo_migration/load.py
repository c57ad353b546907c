"""Load: bare tables, streamed COPY, then primary keys, indexes, foreign keys and sequences.

DDL comes from SQLAlchemy's PostgreSQL compiler, so names and types are what the app's own
create_all would give. Rows stream from SQLite in chunks sized by bytes (flat memory at any table
size): a reader thread pulls the next chunk while PostgreSQL ingests the last, keeping both
cores busy. The SHA-256 of the stream is kept for verification.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import cursor as PgCursor
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import AddConstraint, CreateColumn, CreateIndex

from .convert import INT32_MAX, csv_line
from .plan import TablePlan
from .source import Source, quote_ident
from .validate import Validation

PART_BITS = 3  # a sync compares parts of 2**PART_BITS = 8 ids (diff.py)
PART_LAST = (1 << PART_BITS) - 1  # the last id of a part, from its first

DIALECT = postgresql.dialect()
# CSV quoted the SQL way, as SQLite's quote() writes it: 'text' with '' inside, NULL bare.
CSV_OPTIONS = sql.SQL("FORMAT csv, QUOTE '''', NULL 'NULL'")
CHUNK_BYTES = 1024 * 1024
FIRST_CHUNK_ROWS = 64  # grows from here: 64 rows of 50 KB descriptions are 3 MB already
MAX_CHUNK_ROWS = 100_000
MAX_GROWTH = 4
QUEUE_DEPTH = 4


@dataclass
class Chunk:
    rows: int
    data: bytes


@dataclass
class ChunkLog:
    """What was sent, without the data: the rows and the SHA-256 of the whole stream."""

    total_rows: int = 0
    digest: Any = field(default_factory=hashlib.sha256, repr=False)  # updated by the reader thread

    @property
    def checksum(self) -> str:
        return self.digest.hexdigest()

    def add(self, chunk: Chunk) -> None:
        self.total_rows += chunk.rows


# --- SQL generation ------------------------------------------------------------------------


def qualified_table(table: Table) -> str:
    """Schema-qualified (when not public) and quoted as PostgreSQL needs."""
    return DIALECT.identifier_preparer.format_table(table)


def qualified(tp: TablePlan) -> str:
    return qualified_table(tp.table)


def create_table_sql(tp: TablePlan) -> str:
    """CREATE TABLE with columns, types, NOT NULLs, defaults and the id sequence; no keys yet."""
    columns = ",\n  ".join(str(CreateColumn(c).compile(dialect=DIALECT)) for c in tp.table.columns)
    return f"CREATE TABLE {qualified(tp)} (\n  {columns}\n)"


def key_and_index_sql(tp: TablePlan) -> list[str]:
    """Primary key, then the models' indexes (unique ones included), in a stable order."""
    statements = [str(AddConstraint(tp.table.primary_key).compile(dialect=DIALECT))]
    for index in sorted(tp.table.indexes, key=lambda ix: ix.name or ""):
        statements.append(str(CreateIndex(index).compile(dialect=DIALECT)))
    return statements


def foreign_key_sql(tp: TablePlan) -> list[str]:
    fks = sorted(tp.table.foreign_key_constraints, key=lambda fk: [c.name for c in fk.columns])
    return [str(AddConstraint(fk).compile(dialect=DIALECT)) for fk in fks]


def copy_sql(tp: TablePlan) -> sql.Composed:
    cols = sql.SQL(", ").join(sql.Identifier(c.name) for c in tp.columns)
    # FREEZE: the table was created in this transaction, so rows can be written frozen (no later
    # vacuum rewrite of 1M rows); COPY rejects it otherwise, which would be a bug here.
    return sql.SQL("COPY {} ({}) FROM STDIN WITH ({}, FREEZE)").format(
        sql.SQL(qualified(tp)), cols, CSV_OPTIONS
    )


def readback_sql(tp: TablePlan, *, ordered: bool, parts: list[int] | None = None) -> sql.Composed:
    """The stored rows as the same CSV the copy sent. A table this run loaded with one COPY is read
    in physical order, which is the order sent; an existing table is read in id order. `parts`:
    only the rows whose id is in one of these parts of 2**PART_BITS ids, in id order."""
    cols = sql.SQL(", ").join(sql.Identifier(c.name) for c in tp.columns)
    rows = sql.SQL("{} ({})").format(sql.SQL(qualified(tp)), cols)
    if parts is not None:
        names = ", ".join(quote_ident(c.name) for c in tp.columns)
        # sql.SQL.format would read braces in a schema's name as placeholders: doubled, they stay text
        text = rows_of_parts_sql(tp, names, "\0").replace("{", "{{").replace("}", "}}")
        rows = sql.SQL("(" + text.replace("\0", "{}") + " ORDER BY {})").format(
            sql.Literal(parts), sql.Identifier(tp.pk)
        )
    elif ordered:
        rows = sql.SQL("(SELECT {} FROM {} ORDER BY {})").format(
            cols, sql.SQL(qualified(tp)), sql.Identifier(tp.pk)
        )
    return sql.SQL("COPY {} TO STDOUT WITH ({}, FORCE_QUOTE *)").format(rows, CSV_OPTIONS)


def rows_of_parts_sql(tp: TablePlan, select: str, parts: str) -> str:
    """(PostgreSQL) `select` over the rows whose id lies in one of the parts of 2**PART_BITS ids
    that the array `parts` (SQL) names: one index range scan per part (OFFSET 0 keeps the planner
    from joining the two into a scan of the table per part)."""
    pk = quote_ident(tp.pk)
    return (
        f"SELECT todo_r.* FROM unnest({parts}::bigint[]) AS todo_p(todo_part), LATERAL (SELECT {select} "
        f"FROM {qualified(tp)} WHERE {pk} >= todo_part << {PART_BITS} AND {pk} <= (todo_part << {PART_BITS}) + {PART_LAST} "
        f"OFFSET 0) AS todo_r"
    )


def target_line_sql(tp: TablePlan) -> str:
    """(PostgreSQL) each stored row as the very line `readback_sql` prints for it, built in SQL, so
    a sync can compare rows one by one with the lines SQLite builds (sqlite_line)."""
    quote, doubled = "'" * 4, "'" * 6  # SQL literals of one quote character and of two
    fields = []
    for c in tp.columns:
        value = c.codec.render(quote_ident(c.name))
        fields.append(f"coalesce({quote} || replace({value}, {quote}, {doubled}) || {quote}, 'NULL')")
    return " || ',' || ".join(fields) + " || E'\\n'"


def sqlite_line(tp: TablePlan, *, canonical: bool = False) -> str:
    """One row as a CSV line, built by SQLite; simpler when pre-flight found every value canonical."""
    return csv_line(
        [c.codec.copy_canonical(c.sqlite) if canonical else c.codec.copy(c.sqlite) for c in tp.columns]
    )


def chunk_query(tp: TablePlan, validation: Validation, *, first: bool) -> str:
    """The next rows after a row key, as one CSV string. Rows are read in row-key order (rowid, or
    a WITHOUT ROWID table's key), so every source row is read once whatever its id holds."""
    key = tp.row_key
    where = []
    if not first:
        # The last key comes back as bytes when it is text: bound as a blob it would sort after
        # every text key, so it is cast back to the type it had.
        where.append(f"{key} > iif(:after_type = 'text', CAST(:after AS TEXT), :after)")
    if kept := validation.kept(tp):
        where.append(kept)
    line = sqlite_line(tp, canonical=tp.name in validation.canonical)
    return (
        f"SELECT count(*), max(k), typeof(max(k)), group_concat(line, '') FROM ("
        f"SELECT {key} AS k, {line} AS line FROM {tp.sqlite} "
        f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY {key} LIMIT :limit)"
    )


def next_chunk_rows(rows: int, size: int) -> int:
    """Rows for about CHUNK_BYTES next time, growing at most MAX_GROWTH times a chunk, so that
    memory stays flat whatever the width of the rows."""
    fitting = int(rows * CHUNK_BYTES / max(size, 1))
    return max(1, min(MAX_CHUNK_ROWS, rows * MAX_GROWTH, fitting))


# --- reading the source ----------------------------------------------------------------------


def iter_chunks(source: Source, tp: TablePlan, validation: Validation, digest: Any) -> Iterator[Chunk]:
    """Every row not rejected, in row-key order, as CSV about CHUNK_BYTES at a time; each chunk is
    added to `digest` here, on the reader thread, while PostgreSQL ingests the last one.

    One connection builds every chunk: two building at once were slower, not faster (SQLite's
    allocator serializes the string building that dominates here)."""
    if tp.source is None or not tp.columns:
        return
    query = chunk_query(tp, validation, first=True)
    params: dict[str, Any] = {"limit": FIRST_CHUNK_ROWS}
    while True:
        rows, last, last_type, data = source.conn.execute(query, params).fetchone()
        if not rows:
            return
        digest.update(data)
        yield Chunk(rows, data)
        query = chunk_query(tp, validation, first=False)
        params = {"after": last, "after_type": last_type, "limit": next_chunk_rows(rows, len(data))}


def iter_chunks_by_id(source: Source, tp: TablePlan, validation: Validation, digest: Any) -> Iterator[Chunk]:
    """The same rows in the order of their (converted) ids, as PostgreSQL reads an existing table
    back: for --verify-only of a table whose ids are not SQLite's rowids (one sorted scan)."""
    if tp.source is None or not tp.columns:
        return
    kept = validation.kept(tp)
    where = f" WHERE {kept}" if kept else ""
    cur = source.conn.execute(
        f"SELECT {sqlite_line(tp, canonical=tp.name in validation.canonical)} FROM {tp.sqlite}{where} "
        f"ORDER BY CAST({tp.pk_column.sqlite} AS INTEGER)"
    )
    while batch := cur.fetchmany(FIRST_CHUNK_ROWS):
        data = b"".join(line for (line,) in batch)
        digest.update(data)
        yield Chunk(len(batch), data)


class ChunkReader:
    """Runs iter_chunks on a thread, a few chunks ahead; a file-like object for copy_expert.

    `should_stop` is asked before each chunk: once it says so, the COPY ends there (the caller
    rolls the transaction back), rather than an exception travelling through psycopg2's C code."""

    def __init__(
        self, chunks: Iterator[Chunk], on_chunk: Callable[[Chunk], None], should_stop: Callable[[], bool]
    ) -> None:
        self._chunks = chunks
        self._on_chunk = on_chunk
        self._should_stop = should_stop
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="sqlite-reader", daemon=True)
        self._done = False
        self.stopped = False
        self.failure: BaseException | None = None  # psycopg2 hides read() errors as QueryCanceled

    def __enter__(self) -> ChunkReader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(0.05)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for chunk in self._chunks:
                if not self._put(chunk):
                    return
            self._put(None)
        except BaseException as exc:  # handed to the consumer, raised in the main thread
            self._put(exc)

    def read(self, size: int = -1) -> bytes:
        try:
            if self._done:
                return b""
            if self._should_stop():
                self._done = self.stopped = True
                return b""
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            if item is None:
                self._done = True
                return b""
            self._on_chunk(item)
            return item.data
        except BaseException as exc:  # Ctrl-C lands here too, mid-COPY
            self._done = True
            self.failure = exc
            raise


def copy_table(
    cur: PgCursor,
    source: Source,
    tp: TablePlan,
    validation: Validation,
    on_chunk: Callable[[Chunk], None],
    should_stop: Callable[[], bool] = lambda: False,
) -> ChunkLog | None:
    """Stream the table into COPY; the log of what was sent, or None if `should_stop` ended it."""
    log = ChunkLog()
    if tp.source is None:  # not in todo.db (an older app version): created empty
        return log

    def record(chunk: Chunk) -> None:
        log.add(chunk)
        on_chunk(chunk)

    echo = io.StringIO()
    with ChunkReader(iter_chunks(source, tp, validation, log.digest), record, should_stop) as reader:
        try:
            # psycopg2 prints a connection lost mid-COPY to stderr as well as raising it; the
            # raised error is explained in one line, so its echo is kept out of the way.
            with contextlib.redirect_stderr(echo):
                cur.copy_expert(copy_sql(tp), reader, size=CHUNK_BYTES)
        except psycopg2.Error:
            if reader.failure is not None:
                raise reader.failure from None
            raise
    return None if reader.stopped else log


def hash_source(source: Source, tp: TablePlan, validation: Validation,
                on_chunk: Callable[[Chunk], None]) -> ChunkLog:  # fmt: skip
    """The chunks a copy would send, in the order PostgreSQL reads the table back by id, hashed
    only (for --verify-only)."""
    log = ChunkLog()
    chunks = iter_chunks if tp.id_is_row_key else iter_chunks_by_id
    for chunk in chunks(source, tp, validation, log.digest):
        log.add(chunk)
        on_chunk(chunk)
    return log


# --- after the data --------------------------------------------------------------------------


def high_water_id(source: Source, tp: TablePlan) -> int:
    """The highest id the app has handed out in todo.db: the largest id, or AUTOINCREMENT's
    sqlite_sequence where rows were deleted after it (PostgreSQL must not hand those out again).
    Capped at what the models' integer id can hold."""
    if tp.source is None or tp.pk not in {c.name for c in tp.columns}:
        return 0
    pk = tp.pk_column.sqlite
    if tp.id_is_row_key:  # an id past the models' range is refused, so it does not count
        top = source.conn.execute(f"SELECT max({pk}) FROM {tp.sqlite} WHERE {pk} <= {INT32_MAX}").fetchone()[
            0
        ]
    else:
        top = source.conn.execute(
            f"SELECT max(CAST({pk} AS INTEGER)) FROM {tp.sqlite} WHERE (typeof({pk}) = 'integer' "
            f"OR (typeof({pk}) = 'text' AND CAST(CAST({pk} AS INTEGER) AS TEXT) = {pk})) "
            f"AND CAST({pk} AS INTEGER) <= {INT32_MAX}"
        ).fetchone()[0]
    candidates = [v for v in (top, tp.source.sequence) if isinstance(v, int)]
    return min(max(candidates, default=0), INT32_MAX)


def reset_sequence(
    cur: PgCursor, tp: TablePlan, high_water: int, *, forward_only: bool = False
) -> int | None:
    """Set the id sequence past max(id) and todo.db's high-water mark, so the app's next insert
    gets a fresh id; where every id is 0 or below, the sequence starts at 1.

    `forward_only` (a sync, into a table that was in use): a sequence already past both is left
    alone. setval is not undone by ROLLBACK, so moving one back in a run that then fails would
    leave PostgreSQL handing out ids its rows already hold."""
    if forward_only and _sequence_past(cur, tp, high_water):
        return None
    cur.execute(
        sql.SQL(
            "SELECT setval(pg_get_serial_sequence(%s, %s), greatest(coalesce(max({pk}), 0), %s, 1), "
            "greatest(coalesce(max({pk}), 0), %s) >= 1) FROM {t}"
        ).format(pk=sql.Identifier(tp.pk), t=sql.SQL(qualified(tp))),
        (qualified(tp), tp.pk, high_water, high_water),
    )
    return cur.fetchone()[0]


def _last_handed_out(cur: PgCursor, tp: TablePlan) -> int | None:
    """The last id the table's sequence handed out (one below its next); None without a sequence."""
    cur.execute("SELECT pg_get_serial_sequence(%s, %s)", (qualified(tp), tp.pk))
    seq = cur.fetchone()[0]
    if seq is None:
        return None
    cur.execute(
        sql.SQL("SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM {}").format(
            sql.SQL(seq)
        )
    )
    return cur.fetchone()[0]


def _sequence_past(cur: PgCursor, tp: TablePlan, high_water: int) -> bool:
    """Whether the last id the sequence handed out is at or past max(id) and the high-water mark."""
    last = _last_handed_out(cur, tp)
    if last is None:
        return False
    cur.execute(sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(tp.pk), sql.SQL(qualified(tp))))
    top = cur.fetchone()[0]
    return last >= max(high_water, top if top is not None else high_water)


def sequence_behind(cur: PgCursor, tp: TablePlan, high_water: int) -> bool:
    """Whether the app's next id in PostgreSQL would not pass todo.db's high-water mark."""
    if high_water <= 0:
        return False
    last = _last_handed_out(cur, tp)
    return last is not None and last + 1 <= high_water
