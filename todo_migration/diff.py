"""Finding what differs between todo.db and PostgreSQL, for a sync either way.

Nothing is trusted but the two databases: no timestamps, no change log. Both are read in id order,
a range of ids at a time; SQLite builds each row as the line a migration sends (sqlite_line),
PostgreSQL the MD5 of each 8-id part of the same lines as its read-back prints them
(target_line_sql). The two are the same text exactly when the values are equal, so a part whose
digests agree holds equal rows, and only the other parts are compared row by row.

A forward sync also leaves fingerprints in the ledger: per part, a digest of todo.db's rows as
SQLite stores them (json_array, far cheaper to build than the exact lines), taken in the snapshot
PostgreSQL was just verified equal to. The next sync, once the ledger proves nobody else wrote to
PostgreSQL since, needs to read only todo.db: a part whose fingerprint is unchanged still equals
what PostgreSQL holds, and only the other parts are compared (compare_by_fingerprints).
"""

from __future__ import annotations

import hashlib
import json
import queue
import sqlite3
import sys
import tempfile
import threading
from array import array
from bisect import bisect_left
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import IO, Any, TypeVar

from psycopg2.extensions import connection as PgConnection

from .load import PART_BITS, PART_LAST, qualified, rows_of_parts_sql, sqlite_line, target_line_sql
from .plan import TablePlan
from .source import Source, quote_ident
from .validate import Validation

FIRST_IDS = 5  # ids shown per kind of change
MAX_RANGE_BITS = 12  # ids compared at once: 4,096
RANGE_BYTES = 2 * 1024 * 1024  # what one range of todo.db's rows may hold in memory, about
SPOOL_BYTES = 8 * 1024 * 1024  # rows to send stay in memory up to this, then go to a temp file
DIGEST_BYTES = 8  # per part's fingerprint: the first 8 bytes of its SHA-256
FINGERPRINT_HASH = hashlib.sha256  # faster than MD5 where the CPU has SHA instructions
PARTS_AT_ONCE = 512  # differing parts compared row by row in one query
T = TypeVar("T")


@dataclass
class Fingerprints:
    """Per part of 8 ids (in part order), an 8-byte digest of todo.db's rows there as SQLite
    stores them; the parts as runs of consecutive numbers (ids are mostly dense), so that 1M rows
    take about 1 MB. And per range of ids (2**range_bits), the digest of all its rows, so that an
    unchanged range is known from one cheap query. `recipe` names how the rows were printed:
    fingerprints taken another way (another tool version, columns, declared types, conversions)
    are not compared, only taken afresh."""

    recipe: str
    runs: array = field(default_factory=lambda: array("q"))  # first part, parts: pairs, flat
    digests: bytearray = field(default_factory=bytearray)
    range_bits: int = 0
    ranges: array = field(default_factory=lambda: array("q"))
    range_digests: bytearray = field(default_factory=bytearray)

    def add(self, part: int, digest: bytes) -> None:
        if self.runs and self.runs[-2] + self.runs[-1] == part:
            self.runs[-1] += 1
        else:
            self.runs.extend((part, 1))
        self.digests += digest[:DIGEST_BYTES]

    def add_parts(self, parts: Sequence[int], digests: bytes) -> None:
        """Many parts at once, in order, after those already added: `digests` back to back."""
        for part in parts:
            if self.runs and self.runs[-2] + self.runs[-1] == part:
                self.runs[-1] += 1
            else:
                self.runs.extend((part, 1))
        self.digests += digests

    def parts(self) -> array:
        """Every part's number, in order (8 bytes a part: the digests' size)."""
        out = array("q")
        for k in range(0, len(self.runs), 2):
            out.extend(range(self.runs[k], self.runs[k] + self.runs[k + 1]))
        return out

    def add_range(self, number: int, digest: bytes) -> None:
        self.ranges.append(number)
        self.range_digests += digest[:DIGEST_BYTES]

    def range_map(self, bits: int) -> dict[int, bytes]:
        """{range number: digest}, if taken with ranges of this size."""
        if bits != self.range_bits:
            return {}
        d = DIGEST_BYTES
        return {n: bytes(self.range_digests[d * i : d * (i + 1)]) for i, n in enumerate(self.ranges)}

    def __len__(self) -> int:
        return len(self.digests) // DIGEST_BYTES

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                _int64s([len(self.runs)]),
                _int64s(self.runs),
                bytes(self.digests),
                _int64s([self.range_bits, len(self.ranges)]),
                _int64s(self.ranges),
                bytes(self.range_digests),
            )
        )

    @classmethod
    def from_bytes(cls, recipe: str, data: bytes) -> Fingerprints:
        view = memoryview(data)
        (n,) = _read_int64s(view, 0, 1)
        runs = _read_int64s(view, 8, n)
        at = 8 + 8 * n
        parts = sum(runs[1::2])
        digests = bytearray(view[at : at + DIGEST_BYTES * parts])
        at += DIGEST_BYTES * parts
        bits, m = _read_int64s(view, at, 2)
        ranges = _read_int64s(view, at + 16, m)
        at += 16 + 8 * m
        range_digests = bytearray(view[at:])
        if n % 2 or len(digests) != DIGEST_BYTES * parts or len(range_digests) != DIGEST_BYTES * m:
            raise ValueError("fingerprints cut short")
        return cls(recipe, runs, digests, bits, ranges, range_digests)


def _int64s(values: Sequence[int]) -> bytes:
    a = array("q", values)
    if sys.byteorder == "big":
        a.byteswap()
    return a.tobytes()


def _read_int64s(view: memoryview, at: int, count: int) -> array:
    a = array("q")
    chunk = view[at : at + 8 * count]
    if len(chunk) != 8 * count:
        raise ValueError("fingerprints cut short")
    a.frombytes(chunk)
    if sys.byteorder == "big":
        a.byteswap()
    return a


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
    # todo.db's fingerprints in this snapshot (None where not taken: the way back, rejected rows)
    fingerprints: Fingerprints | None = field(default=None, repr=False)
    # Parts compared row by row, when fingerprints spared the rest (None: the whole table was
    # compared); sqlite_digest then covers these parts' rows only.
    compared_parts: array | None = field(default=None, repr=False)

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
            # parts of 8 ids compared row by row where fingerprints spared the rest; None: all
            "parts_compared": len(self.compared_parts) if self.compared_parts is not None else None,
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
    fingerprint: str | None = None,
    stored: Fingerprints | None = None,
) -> TableDelta:
    """What the target lacks in one table. `fingerprint` (fingerprint_line): take todo.db's
    fingerprints on the way, where every row counts (none rejected); with `stored` ones of the
    same recipe, compare only the parts whose fingerprints changed. A table holding a BLOB (which
    json_array cannot print) is compared without fingerprints."""
    if fingerprint is not None and (validation.kept(tp) is not None or tp.source is None):
        fingerprint = None
    try:
        if fingerprint is not None and stored is not None and stored.recipe == recipe_of(fingerprint, tp):
            return compare_by_fingerprints(conn, sqlite, tp, fingerprint, stored, progress, readers=readers)
        return compare_all(
            conn,
            sqlite,
            tp,
            validation,
            progress,
            to_sqlite=to_sqlite,
            readers=readers,
            fingerprint=fingerprint,
        )
    except sqlite3.OperationalError as exc:
        if fingerprint is None or "BLOB" not in str(exc):
            raise
        return compare_all(conn, sqlite, tp, validation, progress, to_sqlite=to_sqlite, readers=readers)


def compare_all(
    conn: PgConnection,
    sqlite: Source,
    tp: TablePlan,
    validation: Validation,
    progress: Callable[[int], object],
    *,
    to_sqlite: bool = False,
    readers: Sequence[sqlite3.Connection] = (),
    fingerprint: str | None = None,
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
    if fingerprint is not None:
        delta.fingerprints = Fingerprints(recipe_of(fingerprint, tp), range_bits=bits)
    rows = _range_sql(tp, validation, fingerprint)
    if readers and validation.kept(tp) is None and tp.source is not None:
        src = _sqlite_ranges_shared(sqlite, tp, bits, [sqlite.conn, *readers], rows)
    else:
        src = _prefetched(_sqlite_ranges(sqlite, tp, validation, bits, rows))
    dst = _prefetched(_postgres_ranges(conn, tp, bits))
    try:
        a, b = _next_range(src, delta), next(dst, None)
        while a is not None or b is not None:
            if b is None or (a is not None and a.number < b[0]):
                _compare_rows(conn, tp, delta, a, set(a.parts), in_postgres=False)
                progress(len(a.ids))
                a = _next_range(src, delta)
            elif a is None or b[0] < a.number:
                _compare_rows(conn, tp, delta, SqliteRange(b[0]), set(b[1]))
                b = next(dst, None)
            else:
                differing = {p for p in a.parts.keys() | b[1].keys() if a.parts.get(p) != b[1].get(p)}
                _compare_rows(conn, tp, delta, a, differing)
                progress(len(a.ids))
                a, b = _next_range(src, delta), next(dst, None)
    finally:
        src.close()
        dst.close()
    return delta


def _next_range(ranges: Iterator[tuple], delta: TableDelta) -> SqliteRange | None:
    """The next range of todo.db's rows, its fingerprints (if taken) added to the delta's."""
    item = next(ranges, None)
    if item is None:
        return None
    number, data, ids, lengths, *fp = item
    r = _split(number, data, ids, lengths)
    if delta.fingerprints is not None and r.ids:
        for part, digest in _part_digests(r.ids, fp[0], fp[1], FINGERPRINT_HASH):
            delta.fingerprints.add(part, digest)
        delta.fingerprints.add_range(number, FINGERPRINT_HASH(fp[0]).digest()[:DIGEST_BYTES])
    return r


def compare_by_fingerprints(
    conn: PgConnection,
    sqlite: Source,
    tp: TablePlan,
    fingerprint: str,
    stored: Fingerprints,
    progress: Callable[[int], object],
    *,
    readers: Sequence[sqlite3.Connection] = (),
) -> TableDelta:
    """todo.db read alone, as fingerprints, against those the last sync left with the rows
    PostgreSQL still holds unchanged (the ledger proved nobody else wrote there): a part whose
    fingerprint is unchanged holds the rows PostgreSQL has; the others (changed, new, emptied)
    are compared row by row like any differing part, and only their rows are read from PostgreSQL."""
    delta = TableDelta(tp.name, fingerprints=Fingerprints(stored.recipe), compared_parts=array("q"))
    bits = range_bits(sqlite, tp)
    delta.fingerprints.range_bits = bits
    known = stored.range_map(bits)
    whole_sql, parts_sql = _fingerprint_sql(tp, fingerprint, parts=False), _fingerprint_sql(tp, fingerprint)
    seen = {"ranges": 0, "changed": 0}  # counted by both reading threads; a rough count will do

    def build(conn: sqlite3.Connection, n: int, lo: int, last: int) -> tuple:
        """Where the range's own fingerprint is known and most ranges so far were unchanged, it is
        taken first (one cheap query): unchanged, its parts need not be printed one by one."""
        if n in known and not (seen["ranges"] >= 8 and 2 * seen["changed"] > seen["ranges"]):
            lines, rows = conn.execute(whole_sql, (lo, last)).fetchone()
            whole = FINGERPRINT_HASH(lines or b"").digest()[:DIGEST_BYTES]
            seen["ranges"] += 1
            if whole == known[n]:
                return None, rows, whole
            seen["changed"] += 1
        return _fingerprints_of(conn.execute(parts_sql, (lo, last)))

    src = _sqlite_ranges_shared(sqlite, tp, bits, [sqlite.conn, *readers], build)
    differing, mine = delta.compared_parts, delta.fingerprints
    theirs, their_digests, at = stored.parts(), stored.digests, 0  # the ledger's parts not yet passed
    try:
        for n, digests, rows, whole in src:
            first, end = n << (bits - PART_BITS), (n + 1) << (bits - PART_BITS)
            i, j = bisect_left(theirs, first, at), bisect_left(theirs, end, at)
            differing.extend(theirs[at:i])  # parts before the range: every row of them deleted
            was = their_digests[DIGEST_BYTES * i : DIGEST_BYTES * j]
            if digests is None:  # the range is unchanged: so are its parts
                mine.add_parts(theirs[i:j], was)
            else:
                differing.extend(_changed_parts(theirs[i:j], was, digests))
                mine.add_parts([part for part, _ in digests], b"".join(d for _, d in digests))
            at = j
            mine.add_range(n, whole)
            delta.sqlite_rows += rows
            progress(rows)
        differing.extend(theirs[at:])
    finally:
        src.close()
    differing = delta.compared_parts = array("q", sorted(differing))
    batches = [differing[i : i + PARTS_AT_ONCE].tolist() for i in range(0, len(differing), PARTS_AT_ONCE)]
    pg_lines = _prefetched(_postgres_lines(conn, tp, batch) for batch in batches)
    try:
        for batch in batches:
            r = _sqlite_parts(sqlite, tp, batch)
            delta.sqlite_digest.update(r.data)
            _compare_rows(conn, tp, delta, r, set(batch), whole=False, pg=next(pg_lines))
    finally:
        pg_lines.close()
    return delta


def _changed_parts(
    their_parts: Sequence[int], their_digests: bytes, mine: list[tuple[int, bytes]]
) -> list[int]:
    """The parts of one range whose fingerprints differ, or that only one side has."""
    d = DIGEST_BYTES
    theirs = {part: their_digests[d * k : d * (k + 1)] for k, part in enumerate(their_parts)}
    changed = [part for part, digest in mine if theirs.pop(part, None) != digest]
    return changed + list(theirs)


def _sqlite_parts(source: Source, tp: TablePlan, parts: list[int]) -> SqliteRange:
    """The rows of the given parts, in id order, as _split makes a range of them."""
    rk = tp.row_key
    data, ids, lengths = source.conn.execute(
        f"SELECT group_concat(line, ''), group_concat(k, ','), group_concat(length(CAST(line AS BLOB)), ',') "
        f"FROM (SELECT todo_t.{rk} AS k, {compared_line(tp)} AS line "
        f"FROM (SELECT value AS todo_part FROM json_each(?)) JOIN {tp.sqlite} AS todo_t "
        f"ON todo_t.{rk} >= todo_part << {PART_BITS} AND todo_t.{rk} <= (todo_part << {PART_BITS}) + {PART_LAST} "
        f"ORDER BY 1)",
        (json.dumps(parts),),
    ).fetchone()
    return _split(-1, data or b"", ids, lengths)


@dataclass
class SqliteRange:
    """One range of ids of todo.db: its rows' lines back to back, where each row's line starts,
    and the MD5 of each part's lines."""

    number: int
    data: bytes = b""
    ids: list[int] = field(default_factory=list)
    bounds: list[int] = field(default_factory=lambda: [0])
    parts: dict[int, str] = field(default_factory=dict)


def fingerprint_line(tp: TablePlan) -> str:
    """todo.db's row as SQLite stores it, in one cheap call: json_array keeps each value's type
    and every byte of its text (a NUL byte too), and prints different rows differently, except
    REALs, printed to 15 digits. A row holding a REAL (in a column that can hold one: not of TEXT
    affinity, which SQLite stores as text, nor the rowid) is printed with each value's type and
    the REAL exactly, as quote() does; twice as many elements, so never the same text as the other form.

    The test for a REAL is one sum, not a typeof() per column (half the cost): SQLite adds in
    integers only when every term is one, so any REAL makes the sum REAL (an infinity minus an
    infinity, NULL). Text that reads as a real, or a sum that overflows, takes the typed form too:
    the choice only has to depend on the row alone."""
    assert tp.source is not None
    declared = tp.source.declared  # as the inspection read them (PRAGMA table_info)
    row_id = (tp.source.rowid_pk or "").lower()
    cols = [c.sqlite for c in tp.columns]
    plain = f"json_array({', '.join(cols)})"
    guarded = [
        c.sqlite
        for c in tp.columns
        if (c.source_name or c.name).lower() != row_id
        and _affinity(declared.get((c.source_name or c.name).lower(), "")) != "TEXT"
    ]
    if not guarded:
        return plain
    typed = ", ".join(f"typeof({c}), iif(typeof({c}) = 'real', quote({c}), {c})" for c in cols)
    total = " + ".join(f"coalesce({c}, 0)" for c in guarded)
    return f"iif(typeof({total}) <> 'integer', json_array({typed}), {plain})"


def recipe_of(fingerprint: str, tp: TablePlan) -> str:
    """Fingerprints compare only with fingerprints printed by the very same SQL, for rows sent
    with the very same conversions (--epoch-unit, --strip-nul and the tool's codecs are in the
    line a migration sends): an unchanged row converted otherwise this time is compared again."""
    both = f"{fingerprint}\n{compared_line(tp)}".encode()
    return f"json1-sha256/{DIGEST_BYTES}-p{PART_BITS}-ranges-" + hashlib.sha256(both).hexdigest()[:16]


def _affinity(declared: str) -> str:
    """SQLite's column affinity from the declared type (its documented rules, in order)."""
    if "INT" in declared:
        return "INTEGER"
    if any(t in declared for t in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in declared or not declared:
        return "BLOB"
    if any(t in declared for t in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


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


def range_last(number: int, bits: int) -> int:
    """The last id of a range: bounds are inclusive, so the range holding 2**63 - 1 (SQLite's
    largest rowid) ends there instead of at a bound no 64-bit integer can hold."""
    return ((number + 1) << bits) - 1


def _sqlite_ranges(
    source: Source, tp: TablePlan, validation: Validation, bits: int, rows: str
) -> Iterator[tuple]:
    """(range number, *what `rows` selects for it), range after range, on `source`'s connection."""
    if tp.source is None:
        return
    kept = validation.kept(tp)
    also = f" AND {kept}" if kept else ""
    rk = tp.row_key
    seek = f"SELECT min({rk}) FROM {tp.sqlite} WHERE {rk} > ?{also}"
    start = source.conn.execute(
        f"SELECT min({rk}) FROM {tp.sqlite}{' WHERE ' + kept if kept else ''}"
    ).fetchone()[0]
    while start is not None:
        number = start >> bits
        last = range_last(number, bits)
        yield (number, *source.conn.execute(rows, (start, last)).fetchone())
        start = source.conn.execute(seek, (last,)).fetchone()[0]


def _sqlite_ranges_shared(
    source: Source,
    tp: TablePlan,
    bits: int,
    conns: list[sqlite3.Connection],
    build: str | Callable[[sqlite3.Connection, int, int, int], tuple],
) -> Generator[tuple, None, None]:
    """The same ranges, built by several connections in turn, each on a thread of its own:
    (range number, *what `build` makes of it) — `build` is a query over the range's bounds whose
    one row is taken, or a function of (connection, range number, first id, last id)."""
    rk = tp.row_key
    numbers = [
        n for (n,) in source.conn.execute(f"SELECT DISTINCT {rk} >> {bits} FROM {tp.sqlite} ORDER BY 1")
    ]
    if isinstance(build, str):
        query = build

        def build(conn: sqlite3.Connection, n: int, lo: int, last: int) -> tuple:
            return conn.execute(query, (lo, last)).fetchone()

    def built_by(conn: sqlite3.Connection, mine: list[int]) -> Iterator[tuple]:
        for n in mine:
            yield (n, *build(conn, n, n << bits, range_last(n, bits)))

    streams = [_prefetched(built_by(conn, numbers[k :: len(conns)])) for k, conn in enumerate(conns)]
    try:
        for i in range(len(numbers)):
            yield next(streams[i % len(conns)])
    finally:
        for stream in streams:
            stream.close()


def _fingerprint_sql(tp: TablePlan, fingerprint: str, *, parts: bool = True) -> str:
    """One range of ids: per part, its rows' fingerprint lines back to back in id order, and how
    many rows it holds; without `parts`, the whole range's lines in one (a cheaper query)."""
    rk = tp.row_key
    rows = (
        f"SELECT {rk} AS k, {fingerprint} AS fp FROM {tp.sqlite} WHERE {rk} >= ? AND {rk} <= ? ORDER BY {rk}"
    )
    if not parts:
        return f"SELECT group_concat(fp, ''), count(*) FROM ({rows})"
    return f"SELECT k >> {PART_BITS}, group_concat(fp, ''), count(*) FROM ({rows}) GROUP BY 1 ORDER BY 1"


def _fingerprints_of(cur: sqlite3.Cursor) -> tuple[list[tuple[int, bytes]], int, bytes]:
    """(part, fingerprint) for each part of a range, the range's rows, and the range's own
    fingerprint (its parts' lines in order are its lines); hashed on the reading thread."""
    digests, rows, whole = [], 0, FINGERPRINT_HASH()
    for part, lines, count in cur:
        digests.append((part, FINGERPRINT_HASH(lines).digest()[:DIGEST_BYTES]))
        whole.update(lines)
        rows += count
    return digests, rows, whole.digest()[:DIGEST_BYTES]


def _range_sql(tp: TablePlan, validation: Validation, fingerprint: str | None) -> str:
    """One range of ids: the rows' lines back to back, their ids and the length of each line;
    then, with `fingerprint`, the same for the rows' fingerprint lines."""
    rk = tp.row_key
    kept = validation.kept(tp)
    also = f" AND {kept}" if kept else ""
    picked = [
        "group_concat(line, '')",
        "group_concat(k, ',')",
        "group_concat(length(CAST(line AS BLOB)), ',')",
    ]
    inner = [f"{rk} AS k", f"{compared_line(tp)} AS line"]
    if fingerprint is not None:
        picked += ["group_concat(fp, '')", "group_concat(length(CAST(fp AS BLOB)), ',')"]
        inner.append(f"{fingerprint} AS fp")
    return (
        f"SELECT {', '.join(picked)} FROM (SELECT {', '.join(inner)} FROM {tp.sqlite} "
        f"WHERE {rk} >= ? AND {rk} <= ?{also} ORDER BY {rk})"
    )


def compared_line(tp: TablePlan) -> str:
    """The line a migration sends (sqlite_line), marked where text holds a NUL byte: printf stops
    there, so the line would hide what follows. A marked line matches no line of PostgreSQL's (it
    can hold no NUL): the row is compared and sent, and the check of the rows to send finds it,
    as a migration's pre-flight would. One test per row, over its text values joined; none for
    text that --strip-nul strips (the line is then exact)."""
    texts = [
        c.sqlite
        for c in tp.columns
        if c.codec.kind in ("text", "timestamp") and not getattr(c.codec, "strip_nul", False)
    ]
    line = sqlite_line(tp)
    if not texts:
        return line
    joined = " || ".join(f"coalesce({c}, '')" for c in texts)
    return f"iif(instr(CAST({joined} AS BLOB), x'00'), {line} || 'NUL', {line})"


def _split(number: int, data: bytes | None, ids: bytes | None, lengths: bytes | None) -> SqliteRange:
    """Where each row starts (from the lengths SQLite gave), and each part's MD5."""
    if not ids:
        return SqliteRange(number)
    r = SqliteRange(number, data or b"", list(map(int, ids.split(b","))))
    r.bounds = list(accumulate(map(int, lengths.split(b",")), initial=0))
    r.parts = {part: digest.hex() for part, digest in _part_digests(r.ids, r.data, r.bounds)}
    return r


def _part_digests(
    ids: list[int], data: bytes, lengths: bytes | list[int], hasher: Callable[[bytes], Any] = hashlib.md5
) -> Iterator[tuple[int, bytes]]:
    """(part, MD5 of its rows' lines) for each part of the sorted ids, the lines back to back in
    `data`: a part's rows are found by bisecting the ids, not by a loop over the rows. `lengths`:
    SQLite's comma-separated line lengths, or the lines' bounds already summed."""
    bounds = (
        lengths if isinstance(lengths, list) else list(accumulate(map(int, lengths.split(b",")), initial=0))
    )
    i = 0
    while i < len(ids):
        part = ids[i] >> PART_BITS
        j = bisect_left(ids, (part + 1) << PART_BITS, i)
        yield part, hasher(data[bounds[i] : bounds[j]]).digest()
        i = j


def _postgres_ranges(conn: PgConnection, tp: TablePlan, bits: int) -> Iterator[tuple[int, dict[int, str]]]:
    """(range number, {part: MD5 of its rows' lines}), computed by PostgreSQL."""
    t, pk = qualified(tp), quote_ident(tp.pk)
    parts = (
        f"SELECT {pk} >> {PART_BITS}, md5(convert_to(string_agg(line, '' ORDER BY {pk}), 'UTF8')) "
        f"FROM (SELECT {pk}, {target_line_sql(tp)} AS line FROM {t} WHERE {pk} >= %s AND {pk} <= %s) s GROUP BY 1"
    )
    with conn.cursor() as cur:
        cur.execute(f"SELECT min({pk}) FROM {t}")
        start = cur.fetchone()[0]
        while start is not None:
            number = start >> bits
            last = range_last(number, bits)
            cur.execute(parts, (start, last))
            yield number, dict(cur.fetchall())
            cur.execute(f"SELECT min({pk}) FROM {t} WHERE {pk} > %s", (last,))
            start = cur.fetchone()[0]


def _compare_rows(
    conn: PgConnection,
    tp: TablePlan,
    delta: TableDelta,
    r: SqliteRange,
    parts: set[int],
    *,
    in_postgres: bool = True,
    whole: bool = True,
    pg: dict[int, bytes] | None = None,
) -> None:
    """Row by row, within the given parts (`whole`: `r` is a whole range of todo.db's rows, all
    of which count for its digest). Without `in_postgres`, PostgreSQL is known to hold no row of
    these parts; `pg`: PostgreSQL's rows of these parts, already read."""
    if whole:
        delta.sqlite_digest.update(r.data)
        delta.sqlite_rows += len(r.ids)
    if not parts:
        return
    if pg is None:
        pg = _postgres_lines(conn, tp, sorted(parts)) if in_postgres else {}
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


def _postgres_lines(conn: PgConnection, tp: TablePlan, parts: list[int]) -> dict[int, bytes]:
    """PostgreSQL's rows of the given parts, by id, as its read-back prints them (one index range
    scan per part)."""
    with conn.cursor() as cur:
        cur.execute(rows_of_parts_sql(tp, f"{quote_ident(tp.pk)}, {target_line_sql(tp)}", "%s"), (parts,))
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
