"""Verify: prove the target holds exactly what the source meant, value for value.

Per table, PostgreSQL prints the stored rows back as CSV (COPY TO, in C, no per-row Python) and
their SHA-256 is compared with that of the CSV that was sent, computed as it streamed. The two
agree exactly when every value of every row arrived. On a difference, both sides are compared row
by row, one chunk of ids at a time, to name the table, id and column. Foreign keys (orphans) and
sequences are checked too.
"""

from __future__ import annotations

import hashlib
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
        if self.column == "(row)":
            where = "only in the source" if self.target is None else "only in PostgreSQL"
            return f"{self.table} id {self.id}: row {where}"
        return f"{self.table} id {self.id} column {self.column}: source {self.source!r} != target {self.target!r}"


@dataclass
class TableCheck:
    table: str
    source_rows: int
    target_rows: int
    checksum_ok: bool = True
    checksum: str = ""
    mismatches: list[Mismatch] = field(default_factory=list)
    orphans: dict[str, int] = field(default_factory=dict)
    sequence_ok: bool = True
    sequence_detail: str = ""

    @property
    def ok(self) -> bool:
        return (
            self.source_rows == self.target_rows
            and self.checksum_ok
            and not any(self.orphans.values())
            and self.sequence_ok
        )


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
) -> TableCheck:
    """`fresh`: this run loaded the table with one COPY, so its physical order is the order sent.
    `diff`: on a difference, name the rows (the fast path skips that: it starts over instead)."""
    check = TableCheck(tp.name, log.total_rows, 0)
    if values and tp.columns:
        sink = _Digest()
        cur.copy_expert(readback_sql(tp, ordered=not fresh), sink, size=1 << 20)
        check.target_rows = cur.rowcount
        check.checksum = sink.hash.hexdigest()
        if check.checksum != log.checksum or check.target_rows != check.source_rows:
            check.mismatches = _find_mismatches(cur, source, tp, validation, log) if diff else []
            check.checksum_ok = not check.mismatches and diff
    else:
        cur.execute(f"SELECT count(*) FROM {qualified(tp)}")
        check.target_rows = cur.fetchone()[0]
    check.orphans = _orphans(cur, tp)
    check.sequence_ok, check.sequence_detail = _sequence(cur, tp)
    return check


def _find_mismatches(
    cur: PgCursor, source: Source, tp: TablePlan, validation: Validation, log: ChunkLog
) -> list[Mismatch]:
    """Compare row by row, a chunk of ids at a time (bounded memory), until enough are found.
    The first and last ranges are open-ended, so rows outside what was sent are found too."""
    starts = [-(2**63), *log.first_ids[1:]]
    ends = [start - 1 for start in starts[1:]] + [2**63 - 1]
    found: list[Mismatch] = []
    for lo, hi in zip(starts, ends, strict=True):
        found.extend(_compare_rows(cur, source, tp, validation, lo, hi))
        if len(found) >= MAX_REPORTED:
            break
    return found[:MAX_REPORTED]


def _compare_rows(
    cur: PgCursor, source: Source, tp: TablePlan, validation: Validation, lo: int, hi: int
) -> list[Mismatch]:
    """Both sides of the ids lo..hi (inclusive), column by column, as the text that was compared."""
    pk = quote_ident(tp.pk)
    rejected = validation.rejected_table(tp.name)
    skip = f" AND {pk} NOT IN (SELECT id FROM {rejected})" if rejected else ""
    exprs = ", ".join(f"({c.codec.copy(c.sqlite)})" for c in tp.columns)
    src = {
        r[0]: [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in r[1:]]
        for r in source.conn.execute(
            f"SELECT {pk}, {exprs} FROM main.{quote_ident(tp.name)} WHERE {pk} BETWEEN ? AND ?{skip} ORDER BY {pk}",
            (lo, hi),
        )
    }
    renders = ", ".join(f"({c.codec.render(quote_ident(c.name))})" for c in tp.columns)
    cur.execute(f"SELECT {pk}, {renders} FROM {qualified(tp)} WHERE {pk} BETWEEN %s AND %s", (lo, hi))
    dst = {r[0]: list(r[1:]) for r in cur.fetchall()}
    found: list[Mismatch] = []
    for row_id in sorted(src.keys() | dst.keys()):
        if row_id not in dst:
            found.append(Mismatch(tp.name, row_id, "(row)", "present", None))
        elif row_id not in src:
            found.append(Mismatch(tp.name, row_id, "(row)", None, "present"))
        else:
            for col, a, b in zip(tp.columns, src[row_id], dst[row_id], strict=True):
                if a != b:
                    found.append(Mismatch(tp.name, row_id, col.name, a, b))
        if len(found) >= MAX_REPORTED:
            break
    return found


def _enforced_fk_columns(cur: PgCursor, tp: TablePlan) -> set[tuple[str, str]]:
    """(column, parent table) pairs guarded by a validated foreign key: orphans there are impossible."""
    cur.execute(
        "SELECT a.attname, c.confrelid::regclass::text FROM pg_constraint c "
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
        if (fk.parent.name, qualified_table(parent)) in enforced:
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


def _sequence(cur: PgCursor, tp: TablePlan) -> tuple[bool, str]:
    cur.execute("SELECT pg_get_serial_sequence(%s, %s)", (qualified(tp), tp.pk))
    seq = cur.fetchone()[0]
    if seq is None:
        return False, f"{tp.name}.{tp.pk} has no sequence"
    cur.execute(
        sql.SQL("SELECT s.last_value, s.is_called, (SELECT max({pk}) FROM {t}) FROM {seq} s").format(
            pk=sql.Identifier(tp.pk), t=sql.SQL(qualified(tp)), seq=sql.SQL(seq)
        )
    )
    last, called, max_id = cur.fetchone()
    next_value = last + 1 if called else last
    ok = max_id is None or next_value > max_id
    return ok, f"next id {next_value}, max id {max_id}"


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
        verify_table(cur, source, tp, validation, logs[tp.name], values=values, fresh=fresh, diff=diff)
        for tp in plan.tables
    ]
