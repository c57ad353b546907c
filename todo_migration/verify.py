"""Verify: prove the target holds exactly what the source meant, value for value.

Per table, PostgreSQL prints the stored rows back as CSV (COPY TO, in C, no per-row Python) and
their SHA-256 is compared with that of the CSV that was sent, computed as it streamed. The two
agree exactly when every value of every row arrived. On a difference, both sides are compared row
by row, one chunk of ids at a time, to name the table, id and column. Foreign keys (orphans) and
sequences are checked too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from psycopg2 import sql
from psycopg2.extensions import cursor as PgCursor

from .load import ChunkLog, qualified, qualified_table, readback_sql
from .plan import Plan, TablePlan
from .source import Source, quote_ident
from .validate import Validation

MAX_REPORTED = 10


@dataclass
class Mismatch:
    table: str
    id: int
    column: str
    source: str | None
    target: str | None

    def describe(self) -> str:
        """Both sides by name: the same words whichever side is kept (--verify-only either way)."""
        if self.column == "(row)":
            where = "only in todo.db" if self.target is None else "only in PostgreSQL"
            return f"{self.table} id {self.id}: row {where}"
        return f"{self.table} id {self.id} column {self.column}: todo.db {self.source!r} != PostgreSQL {self.target!r}"


@dataclass
class TableCheck:
    """One table's verification. Rows are accounted for twice over: what was sent equals what
    PostgreSQL holds, and what was sent plus what was rejected equals SQLite's own count(*) of
    the table, which knows nothing of how the rows were read."""

    table: str
    source_rows: int  # count(*) in todo.db, in the run's snapshot
    target_rows: int
    sent_rows: int = 0
    rejected_rows: int = 0
    checksum_ok: bool = True
    checksum: str = ""
    mismatches: list[Mismatch] = field(default_factory=list)
    orphans: dict[str, int] = field(default_factory=dict)
    sequence_ok: bool = True
    sequence_detail: str = ""
    sequence_exhausted: bool = False  # the app's next insert would fail: said, not failed

    @property
    def rows_add_up(self) -> bool:
        return self.target_rows == self.sent_rows == self.source_rows - self.rejected_rows

    @property
    def ok(self) -> bool:
        return self.rows_add_up and self.checksum_ok and not any(self.orphans.values()) and self.sequence_ok

    def counts(self) -> str:
        return (
            f"{self.table}: todo.db has {self.source_rows:,} rows, {self.rejected_rows:,} rejected, "
            f"{self.sent_rows:,} sent, PostgreSQL holds {self.target_rows:,}"
        )

    def problem(self) -> str:
        """The first thing wrong, in words."""
        if self.mismatches:
            return self.mismatches[0].describe()
        if not self.rows_add_up:
            return self.counts()
        if not self.checksum_ok:
            return f"{self.table}: the values differ"
        if any(self.orphans.values()):
            return f"{self.table}: orphaned rows ({', '.join(k for k, v in self.orphans.items() if v)})"
        return f"{self.table}: sequence {self.sequence_detail}"


class _Digest:
    """A file-like sink for COPY TO whose write is hashlib's own (C) update."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.write = self.hash.update


def verify_table(
    cur: PgCursor,
    source: Source,
    tp: TablePlan,
    validation: Validation,
    log: ChunkLog,
    *,
    values: bool = True,
    fresh: bool = True,
    diff: bool = True,
    parts: Sequence[int] | None = None,
) -> TableCheck:
    """`fresh`: this run loaded the table with one COPY, so its physical order is the order sent.
    `diff`: on a difference, name the rows (the fast path skips that: it starts over instead).
    `parts`: read back only the rows of these parts of 8 ids (a sync's changed parts; `log`'s
    digest covers those rows), and count the table's rows."""
    check = TableCheck(tp.name, tp.source_rows, 0, log.total_rows, validation.rejected[tp.name])
    if values and tp.columns:
        sink = _Digest()
        parts = list(parts) if parts is not None else None
        cur.copy_expert(readback_sql(tp, ordered=not fresh, parts=parts), sink, size=1 << 20)
        check.target_rows = cur.rowcount
        check.checksum = sink.hash.hexdigest()
        check.checksum_ok = check.checksum == log.checksum
    if parts is not None or not (values and tp.columns):  # read back in part, or not: count them
        cur.execute(f"SELECT count(*) FROM {qualified(tp)}")
        check.target_rows = cur.fetchone()[0]
    if diff and not (check.checksum_ok and check.rows_add_up) and tp.source is not None:
        check.mismatches = _find_mismatches(cur, source, tp, validation)
        check.checksum_ok = check.checksum_ok and not check.mismatches
    check.orphans = _orphans(cur, tp)
    check.sequence_ok, check.sequence_detail, check.sequence_exhausted = _sequence(cur, tp)
    return check


def _find_mismatches(cur: PgCursor, source: Source, tp: TablePlan, validation: Validation) -> list[Mismatch]:
    """Compare both sides row by row in id order, each read by a scan of its own (not the chunks
    that were sent), streaming, until enough differences are found."""
    found: list[Mismatch] = []
    src = _source_rows_by_id(source, tp, validation)
    dst = _target_rows_by_id(cur, tp)
    a, b = next(src, None), next(dst, None)
    while (a is not None or b is not None) and len(found) < MAX_REPORTED:
        if b is None or (a is not None and a[0] < b[0]):
            found.append(Mismatch(tp.name, a[0], "(row)", "present", None))
            a = next(src, None)
        elif a is None or b[0] < a[0]:
            found.append(Mismatch(tp.name, b[0], "(row)", None, "present"))
            b = next(dst, None)
        else:
            for col, x, y in zip(tp.columns, a[1:], b[1:], strict=True):
                if x != y:
                    found.append(Mismatch(tp.name, a[0], col.name, x, y))
            a, b = next(src, None), next(dst, None)
    src.close()
    dst.close()
    return found[:MAX_REPORTED]


def _source_rows_by_id(source: Source, tp: TablePlan, validation: Validation) -> Iterator[tuple]:
    """Every source row not rejected, as (id, the text of each value that was compared)."""
    kept = validation.kept(tp)
    skip = f" WHERE {kept}" if kept else ""
    exprs = ", ".join(f"({c.codec.copy(c.sqlite)})" for c in tp.columns)
    pk = tp.pk_column.sqlite
    order = tp.row_key if tp.id_is_row_key else f"CAST({pk} AS INTEGER)"
    cur = source.conn.execute(
        f"SELECT CAST({pk} AS INTEGER), {exprs} FROM {tp.sqlite}{skip} ORDER BY {order}"
    )
    for row in cur:
        yield tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in row)


def _target_rows_by_id(cur: PgCursor, tp: TablePlan) -> Iterator[tuple]:
    renders = ", ".join(f"({c.codec.render(quote_ident(c.name))})" for c in tp.columns)
    pk = quote_ident(tp.pk)
    with cur.connection.cursor(name=f"compare_{tp.name}") as named:
        named.itersize = 5000
        named.execute(f"SELECT {pk}, {renders} FROM {qualified(tp)} ORDER BY 1")
        yield from named


def _enforced_fk_columns(cur: PgCursor, tp: TablePlan) -> set[tuple[str, int]]:
    """(column, parent table oid) pairs guarded by a validated foreign key: no orphans possible."""
    cur.execute(
        "SELECT a.attname, c.confrelid::oid FROM pg_constraint c "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
        "WHERE c.conrelid = %s::regclass AND c.contype = 'f' AND c.convalidated "
        "AND cardinality(c.conkey) = 1",
        (qualified(tp),),
    )
    return {(col, parent) for col, parent in cur.fetchall()}


def _orphans(cur: PgCursor, tp: TablePlan) -> dict[str, int]:
    """Rows whose foreign key points nowhere. A validated constraint proves there are none (the
    fresh load's case); without one (--verify-only on a hand-made target) they are counted."""
    result = {}
    enforced = _enforced_fk_columns(cur, tp)
    for fk in tp.table.foreign_keys:
        parent = fk.column.table
        label = f"{fk.parent.name} -> {parent.name}.{fk.column.name}"
        cur.execute("SELECT %s::regclass::oid", (qualified_table(parent),))
        if (fk.parent.name, cur.fetchone()[0]) in enforced:
            result[label] = 0
            continue
        cur.execute(
            sql.SQL(
                "SELECT count(*) FROM {child} c WHERE c.{col} IS NOT NULL AND NOT EXISTS "
                "(SELECT 1 FROM {parent} p WHERE p.{pcol} = c.{col})"
            ).format(
                child=sql.SQL(qualified(tp)),
                col=sql.Identifier(fk.parent.name),
                parent=sql.SQL(qualified_table(parent)),
                pcol=sql.Identifier(fk.column.name),
            )
        )
        result[label] = cur.fetchone()[0]
    return result


def _sequence(cur: PgCursor, tp: TablePlan) -> tuple[bool, str, bool]:
    """(the next id is past every id, what it is, whether the sequence is used up)."""
    cur.execute("SELECT pg_get_serial_sequence(%s, %s)", (qualified(tp), tp.pk))
    seq = cur.fetchone()[0]
    if seq is None:
        return False, f"{tp.name}.{tp.pk} has no sequence", False
    cur.execute(
        sql.SQL(
            "SELECT s.last_value, s.is_called, (SELECT max({pk}) FROM {t}), q.seqmax FROM {seq} s, pg_sequence q "
            "WHERE q.seqrelid = %s::regclass"
        ).format(pk=sql.Identifier(tp.pk), t=sql.SQL(qualified(tp)), seq=sql.SQL(seq)),
        (seq,),
    )
    last, called, max_id, limit = cur.fetchone()
    next_value = last + 1 if called else last
    ok = max_id is None or next_value > max_id
    exhausted = next_value > limit
    detail = (
        f"next id {next_value}, max id {max_id}" if max_id is not None else f"next id {next_value}, no rows"
    )
    if exhausted:
        detail = f"exhausted at {limit}: the app's next insert into {tp.name} will fail"
    elif not ok:
        detail = f"behind: next id {next_value} is not past max id {max_id}"
    return ok, detail, exhausted


def verify_all(
    cur: PgCursor,
    source: Source,
    plan: Plan,
    validation: Validation,
    logs: dict[str, ChunkLog],
    *,
    values: bool = True,
    fresh: bool = True,
    diff: bool = True,
) -> list[TableCheck]:
    """Check every table; `values=False` keeps counts, orphans and sequences (--no-verify)."""
    return [
        verify_table(
            cur, source, tp, validation, logs.get(tp.name, ChunkLog()), values=values, fresh=fresh, diff=diff
        )
        for tp in plan.tables
    ]
