"""Finding what differs between todo.db and PostgreSQL, for a sync either way.

Nothing is trusted but the two databases: no timestamps, no change log. Both are read in id order,
a range of ids at a time; SQLite builds each row as the line a migration sends (sqlite_line),
PostgreSQL the MD5 of each 64-id part of the same lines as its read-back prints them
(target_line_sql). The two are the same text exactly when the values are equal, so a part whose
digests agree holds equal rows, and only the other parts are compared row by row.
"""

from __future__ import annotations

import hashlib
import queue
import sqlite3
import tempfile
import threading
from array import array
from bisect import bisect_left
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import IO, Any, TypeVar

from psycopg2.extensions import connection as PgConnection

from .load import qualified, sqlite_line, target_line_sql
from .plan import TablePlan
from .source import Source, quote_ident
from .validate import Validation

FIRST_IDS = 5  # ids shown per kind of change
MAX_RANGE_BITS = 12  # ids compared at once: 4,096
PART_BITS = 3  # ids per part whose digests are compared: 8
RANGE_BYTES = 2 * 1024 * 1024  # what one range of todo.db's rows may hold in memory, about
SPOOL_BYTES = 8 * 1024 * 1024  # rows to send stay in memory up to this, then go to a temp file
T = TypeVar("T")


@dataclass
class TableDelta:
    """What the target lacks in one table (rows to send, with their lines, and ids to delete), and
    the SHA-256 of todo.db's rows in id order as the forward verification reads them."""

    table: str
    to_sqlite: bool = False  # the target is todo.db (the way back), not PostgreSQL
    sqlite_rows: int = 0  # todo.db's rows compared (less rejected ones)
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    first: dict[str, list[int]] = field(
        default_factory=lambda: {"inserted": [], "updated": [], "deleted": []}
    )
    sqlite_digest: Any = field(default_factory=hashlib.sha256, repr=False)
    rows_to_send: IO[bytes] = field(
        default_factory=lambda: tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES), repr=False
    )
    sent_keys: array = field(default_factory=lambda: array("q"), repr=False)  # inserted or updated
    sent_lengths: array = field(default_factory=lambda: array("q"), repr=False)  # of each line sent
    deleted_ids: array = field(default_factory=lambda: array("q"), repr=False)

    @property
    def changes(self) -> int:
        return self.inserted + self.updated + self.deleted

    def _note(self, kind: str, row_id: int) -> None:
        if len(self.first[kind]) < FIRST_IDS:
            self.first[kind].append(row_id)

    def send(self, kind: str, row_id: int, line: bytes) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self._note(kind, row_id)
        self.rows_to_send.write(line)
        self.sent_keys.append(row_id)
        self.sent_lengths.append(len(line))

    def delete(self, row_id: int) -> None:
        self.deleted += 1
        self._note("deleted", row_id)
        self.deleted_ids.append(row_id)

    def only_in_sqlite(self, row_id: int, line: bytes) -> None:
        if self.to_sqlite:
            self.delete(row_id)
        else:
            self.send("inserted", row_id, line)

    def only_in_postgres(self, row_id: int, line: bytes) -> None:
        if self.to_sqlite:
            self.send("inserted", row_id, line)
        else:
            self.delete(row_id)

    def differs(self, row_id: int, sqlite_line: bytes, postgres_line: bytes) -> None:
        self.send("updated", row_id, postgres_line if self.to_sqlite else sqlite_line)

    def recordable(self) -> dict[str, object]:
        return {
            "inserted": self.inserted,
            "updated": self.updated,
            "deleted": self.deleted,
            "first_ids": self.first,
        }

    def close(self) -> None:
        self.rows_to_send.close()


def compare_table(
    conn: PgConnection,
    sqlite: Source,
    tp: TablePlan,
    validation: Validation,
    progress: Callable[[int], object],
    *,
    to_sqlite: bool = False,
    readers: Sequence[sqlite3.Connection] = (),
) -> TableDelta:
    """Both sides a range of ids at a time, in id order, each range split into parts: SQLite
    builds the range's rows as the lines a migration sends, PostgreSQL the MD5 of each part's
    rows as its read-back prints them (the same text when the values are equal). Only a part
    whose digests differ is compared row by row. Each side is read on a thread of its own.

    The delta says what the target needs: PostgreSQL's (rows only in todo.db are inserts, with
    todo.db's lines), or with `to_sqlite` todo.db's (rows only in PostgreSQL are inserts, with
    PostgreSQL's lines). `readers`: more connections in the same snapshot, to build todo.db's
    lines on both cores (only where no row is rejected: the rejected rows live on `sqlite`'s)."""
    delta = TableDelta(tp.name, to_sqlite=to_sqlite)
    bits = range_bits(sqlite, tp)
    if readers and validation.kept(tp) is None and tp.source is not None:
        src = _sqlite_ranges_shared(sqlite, tp, bits, [sqlite.conn, *readers])
    else:
        src = _prefetched(_sqlite_ranges(sqlite, tp, validation, bits))
    dst = _prefetched(_postgres_ranges(conn, tp, bits))
    try:
        a, b = next(src, None), next(dst, None)
        while a is not None or b is not None:
            if b is None or (a is not None and a.number < b[0]):
                _compare_rows(conn, tp, bits, delta, a, set(a.parts), in_postgres=False)
                progress(len(a.ids))
                a = next(src, None)
            elif a is None or b[0] < a.number:
                _compare_rows(conn, tp, bits, delta, SqliteRange(b[0]), set(b[1]))
                b = next(dst, None)
            else:
                differing = {p for p in a.parts.keys() | b[1].keys() if a.parts.get(p) != b[1].get(p)}
                _compare_rows(conn, tp, bits, delta, a, differing)
                progress(len(a.ids))
                a, b = next(src, None), next(dst, None)
    finally:
        src.close()
        dst.close()
    return delta


@dataclass
class SqliteRange:
    """One range of ids of todo.db: its rows' lines back to back, where each row's line starts,
    and the MD5 of each part's lines."""

    number: int
    data: bytes = b""
    ids: list[int] = field(default_factory=list)
    bounds: list[int] = field(default_factory=lambda: [0])
    parts: dict[int, str] = field(default_factory=dict)


def range_bits(source: Source, tp: TablePlan) -> int:
    """Ids per range (a power of two): 4,096 rows of the app's usual size are about 1 MB; wide
    rows get narrower ranges, so that memory stays flat. Both sides use the same ranges."""
    if tp.source is None or not tp.source_rows:
        return MAX_RANGE_BITS
    sample = source.conn.execute(
        f"SELECT avg(length(CAST({sqlite_line(tp)} AS BLOB))) FROM (SELECT * FROM {tp.sqlite} LIMIT 1000)"
    ).fetchone()[0]
    bits = MAX_RANGE_BITS
    while bits > PART_BITS and (1 << bits) * (sample or 1) > RANGE_BYTES:
        bits -= 1
    return bits


def _sqlite_ranges(source: Source, tp: TablePlan, validation: Validation, bits: int) -> Iterator[SqliteRange]:
    if tp.source is None:
        return
    kept = validation.kept(tp)
    also = f" AND {kept}" if kept else ""
    rk = tp.row_key
    seek = f"SELECT min({rk}) FROM {tp.sqlite} WHERE {rk} >= ?{also}"
    rows = _range_sql(tp, also)
    start = source.conn.execute(
        f"SELECT min({rk}) FROM {tp.sqlite}{' WHERE ' + kept if kept else ''}"
    ).fetchone()[0]
    while start is not None:
        number = start >> bits
        end = (number + 1) << bits
        data, ids, lengths = source.conn.execute(rows, (start, end)).fetchone()
        yield _split(number, data, ids, lengths)
        start = source.conn.execute(seek, (end,)).fetchone()[0]


def _sqlite_ranges_shared(
    source: Source, tp: TablePlan, bits: int, conns: list[sqlite3.Connection]
) -> Generator[SqliteRange, None, None]:
    """The same ranges, built by several connections in turn, each on a thread of its own."""
    rk = tp.row_key
    numbers = [
        n for (n,) in source.conn.execute(f"SELECT DISTINCT {rk} >> {bits} FROM {tp.sqlite} ORDER BY 1")
    ]
    rows = _range_sql(tp, "")

    def built_by(conn: sqlite3.Connection, mine: list[int]) -> Iterator[SqliteRange]:
        for n in mine:
            yield _split(n, *conn.execute(rows, (n << bits, (n + 1) << bits)).fetchone())

    streams = [_prefetched(built_by(conn, numbers[k :: len(conns)])) for k, conn in enumerate(conns)]
    try:
        for i in range(len(numbers)):
            yield next(streams[i % len(conns)])
    finally:
        for stream in streams:
            stream.close()


def _range_sql(tp: TablePlan, also: str) -> str:
    """One range of ids: the rows' lines back to back, their ids and the length of each line."""
    rk = tp.row_key
    return (
        f"SELECT group_concat(line, ''), group_concat(k, ','), group_concat(length(CAST(line AS BLOB)), ',') "
        f"FROM (SELECT {rk} AS k, {compared_line(tp)} AS line FROM {tp.sqlite} "
        f"WHERE {rk} >= ? AND {rk} < ?{also} ORDER BY {rk})"
    )


def compared_line(tp: TablePlan) -> str:
    """The line a migration sends (sqlite_line), marked where text holds a NUL byte: printf stops
    there, so the line would hide what follows. A marked line matches no line of PostgreSQL's (it
    can hold no NUL): the row is compared and sent, and the check of the rows to send finds it,
    as a migration's pre-flight would. One test per row, over its text values joined."""
    texts = [c.sqlite for c in tp.columns if c.codec.kind in ("text", "timestamp")]
    line = sqlite_line(tp)
    if not texts:
        return line
    joined = " || ".join(f"coalesce({c}, '')" for c in texts)
    return f"iif(instr(CAST({joined} AS BLOB), x'00'), {line} || 'NUL', {line})"


def _split(number: int, data: bytes, ids: bytes, lengths: bytes) -> SqliteRange:
    """Where each row starts (from the lengths SQLite gave), and each part's MD5: a part's rows
    are found by bisecting the sorted ids, not by a loop over the rows."""
    r = SqliteRange(number, data, list(map(int, ids.split(b","))))
    r.bounds = list(accumulate(map(int, lengths.split(b",")), initial=0))
    first, last = r.ids[0] >> PART_BITS, r.ids[-1] >> PART_BITS
    i = 0
    for part in range(first, last + 1):
        j = bisect_left(r.ids, (part + 1) << PART_BITS, i)
        if j > i:
            r.parts[part] = hashlib.md5(data[r.bounds[i] : r.bounds[j]]).hexdigest()
        i = j
    return r


def _postgres_ranges(conn: PgConnection, tp: TablePlan, bits: int) -> Iterator[tuple[int, dict[int, str]]]:
    """(range number, {part: MD5 of its rows' lines}), computed by PostgreSQL."""
    t, pk = qualified(tp), quote_ident(tp.pk)
    parts = (
        f"SELECT {pk} >> {PART_BITS}, md5(convert_to(string_agg(line, '' ORDER BY {pk}), 'UTF8')) "
        f"FROM (SELECT {pk}, {target_line_sql(tp)} AS line FROM {t} WHERE {pk} >= %s AND {pk} < %s) s GROUP BY 1"
    )
    with conn.cursor() as cur:
        cur.execute(f"SELECT min({pk}) FROM {t}")
        start = cur.fetchone()[0]
        while start is not None:
            number = start >> bits
            end = (number + 1) << bits
            cur.execute(parts, (start, end))
            yield number, dict(cur.fetchall())
            cur.execute(f"SELECT min({pk}) FROM {t} WHERE {pk} >= %s", (end,))
            start = cur.fetchone()[0]


def _compare_rows(
    conn: PgConnection,
    tp: TablePlan,
    bits: int,
    delta: TableDelta,
    r: SqliteRange,
    parts: set[int],
    *,
    in_postgres: bool = True,
) -> None:
    """Row by row, within the given parts of one range (all of todo.db's rows count for its
    digest). Without `in_postgres`, PostgreSQL is known to hold no row of the range."""
    delta.sqlite_digest.update(r.data)
    delta.sqlite_rows += len(r.ids)
    if not parts:
        return
    pg = _postgres_lines(conn, tp, r.number << bits, (r.number + 1) << bits, parts) if in_postgres else {}
    for i, row_id in enumerate(r.ids):
        if row_id >> PART_BITS not in parts:
            continue
        line = r.data[r.bounds[i] : r.bounds[i + 1]]
        stored = pg.pop(row_id, None)
        if stored is None:
            delta.only_in_sqlite(row_id, line)
        elif stored != line:
            delta.differs(row_id, line, stored)
    for row_id in sorted(pg):
        delta.only_in_postgres(row_id, pg[row_id])


def _postgres_lines(
    conn: PgConnection, tp: TablePlan, start: int, end: int, parts: set[int]
) -> dict[int, bytes]:
    pk = quote_ident(tp.pk)
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {pk}, {target_line_sql(tp)} FROM {qualified(tp)} "
            f"WHERE {pk} >= %s AND {pk} < %s AND {pk} >> {PART_BITS} = ANY(%s)",
            (start, end, sorted(parts)),
        )
        return {row_id: line.encode() for row_id, line in cur}


def _prefetched(items: Iterator[T]) -> Generator[T, None, None]:
    """The items, produced on a thread a few ahead: SQLite and PostgreSQL both work in C with the
    GIL released, so the two sides and the comparison overlap."""
    box: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(done)
        except BaseException as exc:  # raised in the consuming thread
            box.put(exc)

    worker = threading.Thread(target=produce, name="sync-reader", daemon=True)
    worker.start()
    try:
        while True:
            item = box.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                box.get_nowait()
            except queue.Empty:
                worker.join(0.05)
