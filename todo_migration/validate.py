"""Pre-flight: find every value PostgreSQL would refuse or change, before anything is committed.

Two forms. The values check (ValuesCheck) asks only whether every value is canonical, and runs
alongside the load; PostgreSQL and the read-back judge the rest. The exact pre-flight (validate)
runs when that check has a doubt, for a dry run and for --verify-only: it finds and lists every
problem. Its scans are SQL over the source (SQLite's C engine does the per-value work). A clean
table costs one aggregate scan; a dirty one a second scan that records each problem in the scratch
database. In skip mode, rejection then follows the foreign keys: a row whose parent is rejected
or missing is rejected too, so the target stays consistent.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .convert import utf8_row_test
from .errors import INTERRUPTED
from .plan import Plan, TablePlan
from .source import Source, quote_ident

SAMPLE_IDS = 5
PARALLEL_SCANS = 2  # connections scanning at once: the machine's cores, at most this


@dataclass
class ProblemGroup:
    kind: str
    table: str
    column: str
    count: int
    ids: list[int]
    example: str


@dataclass
class Validation:
    groups: list[ProblemGroup] = field(default_factory=list)
    conversions: Counter = field(default_factory=Counter)  # (table, column, kind) -> count
    rejected: Counter = field(default_factory=Counter)  # table -> rows rejected (skip mode)
    reject_reasons: Counter = field(default_factory=Counter)  # (table, kind) -> rows
    canonical: set[str] = field(default_factory=set)  # tables whose every value needs no conversion

    @property
    def problem_count(self) -> int:
        return sum(g.count for g in self.groups)

    def rejected_table(self, table: str) -> str | None:
        return f"scratch.{quote_ident('rejected_' + table)}" if self.rejected[table] else None


def _row_check(col) -> str:
    """One column's problem, NULL-aware: NOT NULL columns refuse NULL."""
    c = col.sqlite
    check = col.codec.problem(c)
    if not col.column.nullable:
        return f"CASE WHEN {c} IS NULL THEN 'null_in_not_null' ELSE {check} END"
    return check


def validate(source: Source, plan: Plan, *, skip_invalid: bool) -> Validation:
    conn = source.conn
    conn.execute("CREATE TABLE scratch.problems (tbl TEXT, id INTEGER, col TEXT, kind TEXT)")
    result = Validation()
    scans = _scanned(plan)
    summaries = summarize_tables(source, plan, scans)
    for tp in scans:
        noncanonical, *orphans = summaries[tp.name]
        if noncanonical:  # some values need a conversion or cannot be stored: look closer
            _classify_values(source, tp, result)
        else:
            result.canonical.add(tp.name)
        _scan_duplicates(source, tp)
        for fk, n in zip(tp.foreign_keys(), orphans, strict=True):
            if n:
                _record_orphans(source, plan, tp, fk)
    _summarize(source, plan, result)
    if skip_invalid:
        _cascade_rejections(source, plan, result)
    return result


def _checked_columns(tp: TablePlan, source: Source) -> list:
    return [c for c in tp.columns if c.name != tp.pk or not _is_rowid(source, tp)]


def _conversions(tp: TablePlan) -> list[tuple[str, str, str]]:
    return [(c.name, label, e) for c in tp.columns for label, e in c.codec.conversions(c.sqlite)]


def _orphan_condition(plan: Plan, fk: tuple[str, str, str]) -> str:
    col, parent, parent_col = fk
    c = quote_ident(col)
    exists = "0"
    if plan.table(parent).in_source and parent_col in {x.name for x in plan.table(parent).columns}:
        exists = (
            f"EXISTS (SELECT 1 FROM main.{quote_ident(parent)} p WHERE p.{quote_ident(parent_col)} = x.{c})"
        )
    return f"x.{c} IS NOT NULL AND NOT {exists}"


def _canonical_row(source: Source, tp: TablePlan, *, shape: bool = False) -> str:
    """True when every value of the row is stored exactly as PostgreSQL will hold it (with
    `shape`, as far as SQLite needs to judge it when the read-back judges the rest). Whether text
    is UTF-8 is a scan of its own (utf8_sql); PostgreSQL refuses what is not, in any case."""
    tests = []
    for col in _checked_columns(tp, source):
        test = col.codec.canonical_shape(col.sqlite) if shape else col.codec.canonical(col.sqlite)
        canon = f"coalesce(({test}), 0)"
        tests.append(f"({col.sqlite} IS NULL OR {canon})" if col.column.nullable else canon)
    return " AND ".join(tests) or "1"


def summary_sql(source: Source, plan: Plan, tp: TablePlan, *, ranged: bool) -> str:
    """One aggregate pass over an id range: [rows not in canonical form, each foreign key's
    orphans]. A clean table costs this one scan and nothing more."""
    exprs = [f"NOT ({_canonical_row(source, tp)})"] + [
        _orphan_condition(plan, fk) for fk in tp.foreign_keys()
    ]
    where = f" WHERE x.{quote_ident(tp.pk)} BETWEEN ? AND ?" if ranged else ""
    return f"SELECT {', '.join(f'coalesce(sum({e}), 0)' for e in exprs)} FROM main.{quote_ident(tp.name)} x{where}"


def _scanned(plan: Plan) -> list[TablePlan]:
    return [tp for tp in plan.tables if tp.in_source and tp.columns]


def assume_canonical(plan: Plan) -> Validation:
    """What the fast path loads by: every value canonical, nothing to convert or reject."""
    return Validation(canonical={tp.name for tp in _scanned(plan)})


class ValuesCheck:
    """The fast path's pre-flight: is every value of every table canonical?

    It stops at the first row that is not. With `shape`, SQLite checks the form of each value and
    PostgreSQL the rest: its parser refuses what it cannot store, and the read-back catches what
    it would store differently. Orphans, duplicates and over-long values need no scan here:
    PostgreSQL refuses them while loading or building the keys. Any doubt sends the run to the
    exact pre-flight.

    Given `conn` (a second connection to the same snapshot), it runs on a thread of its own at low
    priority while the load runs; without one, here and now on the source's own connection.
    """

    def __init__(
        self, source: Source, plan: Plan, *, shape: bool, conn: sqlite3.Connection | None = None
    ) -> None:
        self.not_canonical: str | None = None  # the first table found with a non-canonical row
        self.failure: BaseException | None = None
        self.seconds = 0.0
        self.alongside = conn is not None
        self._queries = [
            (tp.name, f"SELECT EXISTS (SELECT 1 FROM main.{quote_ident(tp.name)} x "
                      f"WHERE NOT ({_canonical_row(source, tp, shape=shape)}))")
            for tp in _scanned(plan)
        ]  # fmt: skip
        self._stop = threading.Event()
        self._conn = conn or source.conn
        self._thread: threading.Thread | None = None
        if conn is None:
            self._run()
            return
        conn.set_progress_handler(lambda: 1 if self._stop.is_set() or INTERRUPTED.is_set() else 0, 100_000)
        self._thread = threading.Thread(target=self._run, name="sqlite-check", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.perf_counter()
        if self.alongside:
            _lower_thread_priority()
        try:
            for table, query in self._queries:
                if self._conn.execute(query).fetchone()[0]:
                    self.not_canonical = table
                    return
        except BaseException as exc:  # raised again by result(), in the main thread
            self.failure = exc
        finally:
            self.seconds = time.perf_counter() - started

    @property
    def done(self) -> bool:
        return self._thread is None or not self._thread.is_alive()

    def finding_so_far(self) -> str | None:
        """The table found not canonical if the check has finished; never waits."""
        return self.not_canonical if self.done else None

    def result(self) -> str | None:
        """Wait for the scan; the first table with a non-canonical row, or None."""
        if self._thread is not None:
            self._thread.join()
        if self.failure is not None:
            raise self.failure
        return self.not_canonical

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._conn.close()


def _lower_thread_priority() -> None:
    """Let the load have the cores first: this thread takes what the COPY leaves idle (Linux
    gives each thread its own nice value; elsewhere it simply runs at normal priority)."""
    if not sys.platform.startswith("linux"):  # elsewhere a thread id may be some process's id
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except OSError:
        pass


def _classify_values(source: Source, tp: TablePlan, result: Validation) -> None:
    """Count each lossless conversion, and record each problem, in a table with non-canonical values."""
    checks = [_row_check(c) for c in _checked_columns(tp, source)]
    convs = _conversions(tp)
    any_bad = " OR ".join(f"({e}) IS NOT NULL" for e in checks) or "0"
    aggregates = [f"coalesce(sum({any_bad}), 0)"] + [f"coalesce(sum({e}), 0)" for _, _, e in convs]
    row = source.conn.execute(f"SELECT {', '.join(aggregates)} FROM main.{quote_ident(tp.name)}").fetchone()
    for (column, label, _), n in zip(convs, row[1:], strict=True):
        if n:
            result.conversions[(tp.name, column, label)] += n
    if row[0]:
        _record_value_problems(source, tp)


def utf8_sql(source: Source, tp: TablePlan) -> str | None:
    """Rows with text that is not UTF-8, as a summary row (counted as not canonical, no orphans).
    Python judges the bytes, so this scan runs on one thread only: two threads calling Python for
    every row would spend their time handing the GIL back and forth."""
    text = [c.sqlite for c in _checked_columns(tp, source) if c.codec.kind == "text"]
    if not text:
        return None
    zeros = ", 0" * len(tp.foreign_keys())
    return f"SELECT coalesce(sum(NOT {utf8_row_test(text)}), 0){zeros} FROM main.{quote_ident(tp.name)}"


def summarize_tables(source: Source, plan: Plan, tables: list[TablePlan]) -> dict[str, list[int]]:
    """Run the summary scans, split by id range over both cores where the snapshot allows it.
    Each table's total is [rows not canonical, then each foreign key's orphans]."""
    sql_work: list[tuple[str, str, tuple]] = []  # (table, query, parameters): SQLite alone
    python_work: list[tuple[str, str, tuple]] = []  # the same, calling Python for every row
    for tp in tables:
        if not _is_rowid(source, tp):  # keys may be NULL or text: one scan of everything
            sql_work.append((tp.name, summary_sql(source, plan, tp, ranged=False), ()))
        else:
            lo, hi = source.conn.execute(
                f"SELECT min({quote_ident(tp.pk)}), max({quote_ident(tp.pk)}) FROM main.{quote_ident(tp.name)}"
            ).fetchone()
            if lo is None:
                continue
            ranged = summary_sql(source, plan, tp, ranged=True)
            if hi - lo < 20_000:
                sql_work.append((tp.name, ranged, (lo, hi)))
            else:
                mid = lo + (hi - lo) // 2
                sql_work += [(tp.name, ranged, (lo, mid)), (tp.name, ranged, (mid + 1, hi))]
        utf8 = utf8_sql(source, tp)
        if utf8:
            python_work.append((tp.name, utf8, ()))
    totals = {tp.name: [0] * (1 + len(tp.foreign_keys())) for tp in tables}
    lock = threading.Lock()

    def scan(conn: sqlite3.Connection, item: tuple[str, str, tuple]) -> None:
        table, query, params = item
        row = conn.execute(query, params).fetchone()
        with lock:
            totals[table] = [a + b for a, b in zip(totals[table], row, strict=True)]

    work = python_work + sql_work
    readers = source.extra_readers(min(PARALLEL_SCANS, os.cpu_count() or 1) - 1) if len(work) > 1 else []
    if not readers:
        for item in work:
            scan(source.conn, item)
        return totals
    failures: list[BaseException] = []

    def worker(conn: sqlite3.Connection, queues: list[list]) -> None:
        try:
            while True:
                with lock:
                    queue = next((q for q in queues if q), None)
                    if queue is None or failures:
                        return
                    item = queue.pop(0)
                scan(conn, item)
        except BaseException as exc:  # raised again in the calling thread
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(c, [sql_work]), daemon=True) for c in readers]
    for t in threads:
        t.start()
    worker(source.conn, [python_work, sql_work])  # this thread alone calls Python
    for t in threads:
        t.join()
    for conn in readers:
        conn.close()
    if failures:
        raise failures[0]
    return totals


def _record_value_problems(source: Source, tp: TablePlan) -> None:
    """A dirty table: record each (row, column) problem. Only the bad rows are unpivoted."""
    conn = source.conn
    t = f"main.{quote_ident(tp.name)}"
    pk = quote_ident(tp.pk)
    checked = _checked_columns(tp, source)
    checks = [_row_check(c) for c in checked]
    bad = quote_ident(f"bad_{tp.name}")
    cols = ", ".join(f"({e}) AS c{i}" for i, e in enumerate(checks))
    conn.execute(
        f"CREATE TABLE scratch.{bad} AS SELECT * FROM (SELECT {pk} AS id, {cols} FROM {t}) "
        f"WHERE {' OR '.join(f'c{i} IS NOT NULL' for i in range(len(checks)))}"
    )
    for i, col in enumerate(checked):
        conn.execute(
            f"INSERT INTO scratch.problems SELECT ?, id, ?, c{i} FROM scratch.{bad} WHERE c{i} IS NOT NULL",
            (tp.name, col.name),
        )


def _is_rowid(source: Source, tp: TablePlan) -> bool:
    return source.tables[tp.name].rowid_pk == tp.pk


def _unique_column_sets(source: Source, tp: TablePlan) -> list[list[str]]:
    copied = {c.name for c in tp.columns}
    sets = [[c.name for c in ix.columns] for ix in tp.table.indexes if ix.unique]
    sets += [
        [c.name for c in uc.columns] for uc in tp.table.constraints if type(uc).__name__ == "UniqueConstraint"
    ]
    if not _is_rowid(source, tp):
        sets.append([tp.pk])
    return [s for s in sets if set(s) <= copied]


def _scan_duplicates(source: Source, tp: TablePlan) -> None:
    """Duplicates of the converted value (exact bytes: emails differing in case are distinct)."""
    t = f"main.{quote_ident(tp.name)}"
    pk = quote_ident(tp.pk)
    by_name = {c.name: c for c in tp.columns}
    for names in _unique_column_sets(source, tp):
        exprs = [f"({by_name[n].codec.copy(by_name[n].sqlite)}) COLLATE BINARY" for n in names]
        not_null = " AND ".join(f"{quote_ident(n)} IS NOT NULL" for n in names)
        source.conn.execute(
            f"INSERT INTO scratch.problems SELECT ?, id, ?, 'duplicate' FROM ("
            f"SELECT {pk} AS id, row_number() OVER (PARTITION BY {', '.join(exprs)} ORDER BY {pk}) AS n "
            f"FROM {t} WHERE {not_null}) WHERE n > 1",
            (tp.name, ",".join(names)),
        )


def _record_orphans(source: Source, plan: Plan, tp: TablePlan, fk: tuple[str, str, str]) -> None:
    pk = quote_ident(tp.pk)
    source.conn.execute(
        f"INSERT INTO scratch.problems SELECT ?, x.{pk}, ?, 'missing_parent' FROM main.{quote_ident(tp.name)} x "
        f"WHERE {_orphan_condition(plan, fk)}",
        (tp.name, fk[0]),
    )


def _summarize(source: Source, plan: Plan, result: Validation) -> None:
    rows = source.conn.execute(
        "SELECT tbl, col, kind, count(*), min(id) FROM scratch.problems GROUP BY tbl, col, kind"
    ).fetchall()
    order = {t.name: i for i, t in enumerate(plan.tables)}
    for tbl, col, kind, count, first_id in rows:
        tbl, col, kind = (v.decode() for v in (tbl, col, kind))
        ids = [
            r[0]
            for r in source.conn.execute(
                "SELECT id FROM scratch.problems WHERE tbl = ? AND col = ? AND kind = ? ORDER BY id LIMIT ?",
                (tbl, col, kind, SAMPLE_IDS),
            )
        ]
        result.groups.append(
            ProblemGroup(kind, tbl, col, count, ids, _example(source, plan, tbl, col, kind, first_id))
        )
    result.groups.sort(key=lambda g: (order.get(g.table, 99), g.column, g.kind))


def _example(source: Source, plan: Plan, table: str, column: str, kind: str, row_id: int) -> str:
    tp = plan.table(table)
    if kind == "duplicate":
        return f"id {row_id} repeats an earlier row's {column}"
    value = source.conn.execute(
        f"SELECT {quote_ident(column)} FROM main.{quote_ident(table)} WHERE {quote_ident(tp.pk)} = ?",
        (row_id,),
    ).fetchone()[0]
    if kind == "missing_parent":
        parent = next(p for c, p, pc in tp.foreign_keys() if c == column)
        return f"id {row_id} points at {parent} {value!r}, which does not exist"
    return f"id {row_id}: {excerpt(value)}"


def excerpt(value: object, width: int = 40) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:  # not UTF-8 (a blob, or text in another encoding): b'A\xffB'
            shown = repr(value[:width]) + ("…" if len(value) > width else "")
            return f"{shown} ({len(value):,} bytes)" if len(value) > width else shown
    if isinstance(value, str):
        shown = repr(value[:width]) + ("…" if len(value) > width else "")
        return f"{shown} ({len(value):,} characters)" if len(value) > width else shown
    return repr(value)


def _cascade_rejections(source: Source, plan: Plan, result: Validation) -> None:
    """Reject every row with a problem, then every row whose foreign key points at a rejected row."""
    conn = source.conn
    for tp in plan.tables:
        rej = f"scratch.{quote_ident('rejected_' + tp.name)}"
        conn.execute(f"CREATE TABLE {rej} (id INTEGER PRIMARY KEY, kind TEXT, detail TEXT)")
        conn.execute(
            f"INSERT INTO {rej} SELECT id, min(kind), group_concat(kind || ' in ' || col, '; ') "
            "FROM scratch.problems WHERE tbl = ? GROUP BY id",
            (tp.name,),
        )
        if not tp.in_source:
            continue
        t = f"main.{quote_ident(tp.name)}"
        pk = quote_ident(tp.pk)
        for col, parent, _ in tp.foreign_keys():
            prej = f"scratch.{quote_ident('rejected_' + parent)}"
            while True:  # a self-reference (parent_task_id) needs repeating until nothing changes
                cur = conn.execute(
                    f"INSERT OR IGNORE INTO {rej} SELECT x.{pk}, 'parent_rejected', "
                    f"'{col} points at rejected {parent} ' || x.{quote_ident(col)} FROM {t} x "
                    f"WHERE x.{quote_ident(col)} IN (SELECT id FROM {prej})"
                )
                if parent != tp.name or cur.rowcount == 0:
                    break
    for tp in plan.tables:
        rej = f"scratch.{quote_ident('rejected_' + tp.name)}"
        for kind, n in conn.execute(f"SELECT kind, count(*) FROM {rej} GROUP BY kind"):
            result.reject_reasons[(tp.name, kind.decode())] += n
            result.rejected[tp.name] += n


def write_rejects(source: Source, plan: Plan, result: Validation, path: Path) -> Path:
    """Write the rejected rows, original values and reasons, to a temp file beside `path`.

    The caller renames it into place only after the migration commits.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    conn = source.conn
    previous = conn.text_factory
    conn.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as out:
            for tp in plan.tables:
                rej = result.rejected_table(tp.name)
                if not rej:
                    continue
                cur = conn.execute(
                    f"SELECT r.kind, r.detail, t.* FROM {rej} r JOIN main.{quote_ident(tp.name)} t "
                    f"ON t.{quote_ident(tp.pk)} = r.id ORDER BY r.id"
                )
                names = [d[0] for d in cur.description][2:]
                for kind, detail, *values in cur:
                    row = dict(zip(names, (_jsonable(v) for v in values), strict=True))
                    record = {
                        "table": tp.name,
                        "id": row.get(tp.pk),
                        "reason": detail,
                        "kind": kind,
                        "row": row,
                    }
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        conn.text_factory = previous
    return Path(tmp)


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogateescape")
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:  # text that is not UTF-8: its exact bytes, as for a blob
            return {"base64": base64.b64encode(raw).decode()}
        return value
    return value
