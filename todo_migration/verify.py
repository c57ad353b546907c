"""Verify: prove the target holds exactly what the source meant, value for value.

Per table, the md5 of each chunk of COPY text sent (computed as it streamed) is compared with the
md5 PostgreSQL computes over the same rows rendered back to the same text, inside the server. A
difference in any value of any row changes one chunk's md5; that chunk is then compared row by
row to name the table, id and column. Foreign-key orphans and sequences are checked too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg2 import sql
from psycopg2.extensions import cursor as PgCursor

from .load import ChunkLog, qualified, qualified_table
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
    chunks: int
    mismatched_chunks: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    orphans: dict[str, int] = field(default_factory=dict)
    sequence_ok: bool = True
    sequence_detail: str = ""

    @property
    def ok(self) -> bool:
        return (
            self.source_rows == self.target_rows
            and not self.mismatched_chunks
            and not any(self.orphans.values())
            and self.sequence_ok
        )


def pg_line(tp: TablePlan) -> str:
    return " || E'\\t' || ".join(f"({c.codec.render(quote_pg(c.name))})" for c in tp.columns) + " || E'\\n'"


def quote_pg(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def verify_table(
    cur: PgCursor,
    source: Source,
    tp: TablePlan,
    validation: Validation,
    log: ChunkLog,
    *,
    values: bool = True,
) -> TableCheck:
    pk = quote_pg(tp.pk)
    table = qualified(tp)
    check = TableCheck(tp.name, log.total_rows, 0, log.total)
    if not values:
        cur.execute(f"SELECT count(*) FROM {table}")
        check.target_rows = cur.fetchone()[0]
        check.orphans = _orphans(cur, tp)
        check.sequence_ok, check.sequence_detail = _sequence(cur, tp)
        return check
    if tp.columns:
        cur.execute(
            f"SELECT width_bucket({pk}, %s::bigint[]) AS b, count(*), md5(string_agg({pg_line(tp)}, '' ORDER BY {pk})) "
            f"FROM {table} GROUP BY b ORDER BY b",
            (log.first_ids or [0],),
        )
        buckets = {b: (n, md5) for b, n, md5 in cur.fetchall()}
    else:
        cur.execute(f"SELECT 1, count(*), '' FROM {table}")
        buckets = {1: cur.fetchone()[1:]}
    check.target_rows = sum(n for n, _ in buckets.values())
    bad = sorted(
        {b for b in buckets if b == 0 or b > log.total or buckets[b][1] != log.md5s[b - 1]}
        | {i + 1 for i in range(log.total) if i + 1 not in buckets}
    )
    check.mismatched_chunks = len(bad)
    for b in bad:
        if len(check.mismatches) >= MAX_REPORTED:
            break
        lo = log.first_ids[b - 1] if 1 <= b <= log.total else -(2**63)
        if b == 0:
            hi = log.first_ids[0] if log.first_ids else 2**63 - 1
        else:
            hi = log.first_ids[b] if b < log.total else 2**63 - 1
        check.mismatches.extend(_compare_rows(cur, source, tp, validation, lo, hi))
    check.mismatches = check.mismatches[:MAX_REPORTED]
    check.orphans = _orphans(cur, tp)
    check.sequence_ok, check.sequence_detail = _sequence(cur, tp)
    return check


def _compare_rows(
    cur: PgCursor, source: Source, tp: TablePlan, validation: Validation, lo: int, hi: int
) -> list[Mismatch]:
    """Both sides of one id range, column by column, as COPY text."""
    pk = quote_ident(tp.pk)
    rejected = validation.rejected_table(tp.name)
    skip = f" AND {pk} NOT IN (SELECT id FROM {rejected})" if rejected else ""
    exprs = ", ".join(f"({c.codec.copy(c.sqlite)})" for c in tp.columns)
    src = {
        r[0]: [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in r[1:]]
        for r in source.conn.execute(
            f"SELECT {pk}, {exprs} FROM main.{quote_ident(tp.name)} WHERE {pk} >= ? AND {pk} < ?{skip} ORDER BY {pk}",
            (lo, hi),
        )
    }
    renders = ", ".join(f"({c.codec.render(quote_pg(c.name))})" for c in tp.columns)
    cur.execute(
        f"SELECT {quote_pg(tp.pk)}, {renders} FROM {qualified(tp)} WHERE {quote_pg(tp.pk)} >= %s AND {quote_pg(tp.pk)} < %s",
        (lo, hi),
    )
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


def _orphans(cur: PgCursor, tp: TablePlan) -> dict[str, int]:
    result = {}
    for fk in tp.table.foreign_keys:
        parent = fk.column.table
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
        result[f"{fk.parent.name} -> {parent.name}.{fk.column.name}"] = cur.fetchone()[0]
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
) -> list[TableCheck]:
    """Check every table; `values=False` keeps counts, orphans and sequences (--no-verify)."""
    return [verify_table(cur, source, tp, validation, logs[tp.name], values=values) for tp in plan.tables]
