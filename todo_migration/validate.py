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
import math
import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .convert import text_row_test
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
    ids: list  # the first few rows' ids (or "rowid N" where the id itself is NULL)
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
        return rejected_table_name(table) if self.rejected[table] else None

    def kept(self, tp: TablePlan) -> str | None:
        """SQL over the source table: the row is not rejected (None where no row of it is)."""
        rejected = self.rejected_table(tp.name)
        return f"{tp.row_key} NOT IN (SELECT rk FROM {rejected})" if rejected else None


def rejected_table_name(table: str) -> str:
    """The scratch table of a table's rejected rows, by row key (see SourceTable.row_key)."""
    return f"scratch.{quote_ident('rejected_' + table)}"


def _keys_table(table: str) -> str:
    return f"scratch.{quote_ident('keys_' + table)}"


def _row_check(col) -> str:
    """One column's problem, NULL-aware: NOT NULL columns refuse NULL."""
    c = col.sqlite
    check = col.codec.problem(c)
    if not col.column.nullable:
        return f"CASE WHEN {c} IS NULL THEN 'null_in_not_null' ELSE {check} END"
    return check


def validate(source: Source, plan: Plan, *, skip_invalid: bool) -> Validation:
    conn = source.conn
    conn.execute("CREATE TABLE scratch.problems (tbl TEXT, rk, id, col TEXT, kind TEXT)")
    result = Validation()
    scans = _scanned(plan)
    _index_parent_keys(source, plan)
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


def _checked_columns(tp: TablePlan) -> list:
    """Every copied column, the id included: a rowid is never NULL, but may pass 2**31."""
    return tp.columns


def _conversions(tp: TablePlan) -> list[tuple[str, str, str]]:
    """(column, label, SQLite test) of each lossless conversion, counted only where the value can
    be stored: a '' in an integer column is a problem, not an integer stored as text."""
    return [
        (c.name, label, f"({e}) AND ({c.codec.problem(c.sqlite)}) IS NULL")
        for c in tp.columns
        for label, e in c.codec.conversions(c.sqlite)
    ]


def _needs_key_index(parent: TablePlan) -> bool:
    """A parent whose id is not the rowid has no index to look children's keys up in (a table
    made by CREATE TABLE AS, or .import): without one, orphan checks would be quadratic."""
    return parent.in_source and parent.pk in {c.name for c in parent.columns} and not parent.id_is_row_key


def _index_parent_keys(source: Source, plan: Plan) -> None:
    """For each such parent: its ids that PostgreSQL would store, by row, with an index."""
    names = sorted({p for tp in _scanned(plan) for _, p, _ in tp.foreign_keys()})
    for parent in (plan.table(n) for n in names):
        if not _needs_key_index(parent):
            continue
        keys = _keys_table(parent.name)
        pk = parent.pk_column.sqlite
        source.conn.execute(
            f"CREATE TABLE {keys} AS SELECT CAST({pk} AS INTEGER) AS k, {parent.row_key} AS rk FROM {parent.sqlite} "
            f"WHERE typeof({pk}) = 'integer' OR (typeof({pk}) = 'text' AND CAST(CAST({pk} AS INTEGER) AS TEXT) = {pk})"
        )
        source.conn.execute(
            f"CREATE INDEX scratch.{quote_ident('keys_' + parent.name + '_k')} ON {quote_ident('keys_' + parent.name)} (k)"
        )


def _parent_exists(plan: Plan, tp: TablePlan, fk: tuple[str, str, str], *, kept: bool = False) -> str:
    """SQL over the child row `x`: a parent row holds the id its foreign key names (with `kept`,
    one that is not rejected)."""
    col, parent_name, parent_col = fk
    parent = plan.table(parent_name)
    if not parent.in_source or parent_col not in {c.name for c in parent.columns}:
        return "0"
    value = f"x.{tp.column(col).sqlite}"
    rejected = f" AND {{rk}} NOT IN (SELECT rk FROM {rejected_table_name(parent.name)})" if kept else ""
    if _needs_key_index(parent):
        where = f"k.k = {value}" + rejected.format(rk="k.rk")
        return f"EXISTS (SELECT 1 FROM {_keys_table(parent.name)} k WHERE {where})"
    where = f"p.{parent.column(parent_col).sqlite} = {value}" + rejected.format(rk=f"p.{parent.row_key}")
    return f"EXISTS (SELECT 1 FROM {parent.sqlite} p WHERE {where})"


def _orphan_condition(plan: Plan, tp: TablePlan, fk: tuple[str, str, str]) -> str:
    """A key that is an integer and names no row (what is not an integer is a problem of its own)."""
    c = f"x.{tp.column(fk[0]).sqlite}"
    integer = f"(typeof({c}) = 'integer' OR CAST(CAST({c} AS INTEGER) AS TEXT) = {c})"
    return f"{c} IS NOT NULL AND {integer} AND NOT {_parent_exists(plan, tp, fk)}"


def canonical_row(tp: TablePlan, *, shape: bool = False) -> str:
    """True when every value of the row is stored exactly as PostgreSQL will hold it (with
    `shape`, as far as SQLite needs to judge it when the read-back judges the rest). Whether text
    is UTF-8 is a scan of its own (text_sql); PostgreSQL refuses what is not, in any case."""
    tests = []
    for col in _checked_columns(tp):
        test = col.codec.canonical_shape(col.sqlite) if shape else col.codec.canonical(col.sqlite)
        canon = f"coalesce(({test}), 0)"
        tests.append(f"({col.sqlite} IS NULL OR {canon})" if col.column.nullable else canon)
    return " AND ".join(tests) or "1"


def summary_sql(plan: Plan, tp: TablePlan, *, ranged: bool) -> str:
    """One aggregate pass over a row-key range: [rows not in canonical form, each foreign key's
    orphans]. A clean table costs this one scan and nothing more."""
    exprs = [f"NOT ({canonical_row(tp)})"] + [_orphan_condition(plan, tp, fk) for fk in tp.foreign_keys()]
    where = f" WHERE x.{tp.row_key} BETWEEN ? AND ?" if ranged else ""
    return f"SELECT {', '.join(f'coalesce(sum({e}), 0)' for e in exprs)} FROM {tp.sqlite} x{where}"


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
            (tp.name, f"SELECT EXISTS (SELECT 1 FROM {tp.sqlite} x WHERE NOT ({canonical_row(tp, shape=shape)}))")
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
    checks = [_row_check(c) for c in _checked_columns(tp)]
    convs = _conversions(tp)
    any_bad = " OR ".join(f"({e}) IS NOT NULL" for e in checks) or "0"
    aggregates = [f"coalesce(sum({e}), 0)" for e in [any_bad] + [e for _, _, e in convs]]
    row = source.conn.execute(f"SELECT {', '.join(aggregates)} FROM {tp.sqlite}").fetchone()
    for (column, label, _), n in zip(convs, row[1:], strict=True):
        if n:
            result.conversions[(tp.name, column, label)] += n
    if row[0]:
        _record_value_problems(source, tp)


def text_sql(plan: Plan, tp: TablePlan) -> str | None:
    """Rows with text that is not UTF-8 or has no equivalent in the target's encoding, as a
    summary row (counted as not canonical, no orphans). Python judges the bytes, so this scan
    runs on one thread only: two threads calling Python for every row would spend their time
    handing the GIL back and forth."""
    text = [c.sqlite for c in _checked_columns(tp) if c.codec.kind == "text"]
    if not text:
        return None
    zeros = ", 0" * len(tp.foreign_keys())
    return f"SELECT coalesce(sum(NOT ({text_row_test(text, plan.conversions)})), 0){zeros} FROM {tp.sqlite}"


def all_canonical(source: Source, plan: Plan, tp: TablePlan, row_keys: list[int]) -> bool:
    """Whether every given row (by row key) is canonical, text UTF-8 included: a sync sends the rows
    it found changed as they are only then; otherwise the exact pre-flight decides."""
    text = [c.sqlite for c in _checked_columns(tp) if c.codec.kind == "text"]
    bad = f"NOT ({canonical_row(tp)}) OR NOT ({text_row_test(text, plan.conversions)})"
    query = (
        f"SELECT EXISTS (SELECT 1 FROM {tp.sqlite} x WHERE x.{tp.row_key} IN "
        f"(SELECT value FROM json_each(?)) AND ({bad}))"
    )
    for start in range(0, len(row_keys), 50_000):
        if source.conn.execute(query, (json.dumps(row_keys[start : start + 50_000]),)).fetchone()[0]:
            return False
    return True


def summarize_tables(source: Source, plan: Plan, tables: list[TablePlan]) -> dict[str, list[int]]:
    """Run the summary scans, split by row-key range over both cores where the snapshot allows
    it. Each table's total is [rows not canonical, then each foreign key's orphans]."""
    sql_work: list[tuple[str, str, tuple]] = []  # (table, query, parameters): SQLite alone
    python_work: list[tuple[str, str, tuple]] = []  # the same, calling Python for every row
    for tp in tables:
        if tp.source is None or tp.source.without_rowid:  # keys of any type: one scan of everything
            sql_work.append((tp.name, summary_sql(plan, tp, ranged=False), ()))
        else:
            lo, hi = source.conn.execute(
                f"SELECT min({tp.row_key}), max({tp.row_key}) FROM {tp.sqlite}"
            ).fetchone()
            if lo is None:
                continue
            ranged = summary_sql(plan, tp, ranged=True)
            if hi - lo < 20_000:
                sql_work.append((tp.name, ranged, (lo, hi)))
            else:
                mid = lo + (hi - lo) // 2
                sql_work += [(tp.name, ranged, (lo, mid)), (tp.name, ranged, (mid + 1, hi))]
        text = text_sql(plan, tp)
        if text:
            python_work.append((tp.name, text, ()))
    totals = {tp.name: [0] * (1 + len(tp.foreign_keys())) for tp in tables}
    lock = threading.Lock()

    def scan(conn: sqlite3.Connection, item: tuple[str, str, tuple]) -> None:
        table, query, params = item
        row = conn.execute(query, params).fetchone()
        with lock:
            totals[table] = [a + b for a, b in zip(totals[table], row, strict=True)]

    work = python_work + sql_work
    # Key indexes live in this connection's private scratch database: other readers cannot see them.
    shared = not any(_needs_key_index(tp) for tp in plan.tables)
    count = min(PARALLEL_SCANS, os.cpu_count() or 1) - 1 if len(work) > 1 and shared else 0
    readers = source.extra_readers(count)
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
    checked = _checked_columns(tp)
    checks = [_row_check(c) for c in checked]
    bad = quote_ident(f"bad_{tp.name}")
    cols = ", ".join(f"({e}) AS c{i}" for i, e in enumerate(checks))
    conn.execute(
        f"CREATE TABLE scratch.{bad} AS SELECT * FROM (SELECT {tp.row_key} AS rk, {tp.pk_column.sqlite} AS id, "
        f"{cols} FROM {tp.sqlite}) WHERE {' OR '.join(f'c{i} IS NOT NULL' for i in range(len(checks)))}"
    )
    for i, col in enumerate(checked):
        conn.execute(
            f"INSERT INTO scratch.problems SELECT ?, rk, id, ?, c{i} FROM scratch.{bad} WHERE c{i} IS NOT NULL",
            (tp.name, col.name),
        )


def _unique_column_sets(tp: TablePlan) -> list[list[str]]:
    copied = {c.name for c in tp.columns}
    sets = [[c.name for c in ix.columns] for ix in tp.table.indexes if ix.unique]
    sets += [
        [c.name for c in uc.columns] for uc in tp.table.constraints if type(uc).__name__ == "UniqueConstraint"
    ]
    if not tp.id_is_row_key:  # ids of a CREATE TABLE AS or .import table may repeat
        sets.append([tp.pk])
    return [s for s in sets if set(s) <= copied]


def _scan_duplicates(source: Source, tp: TablePlan) -> None:
    """Duplicates of the converted value (exact bytes: emails differing in case are distinct). The
    first row keeps its value (in row order, as SQLite stores them); the later ones are problems."""
    for names in _unique_column_sets(tp):
        cols = [tp.column(n) for n in names]
        exprs = [f"({c.codec.copy(c.sqlite)}) COLLATE BINARY" for c in cols]
        not_null = " AND ".join(f"{c.sqlite} IS NOT NULL" for c in cols)
        source.conn.execute(
            f"INSERT INTO scratch.problems SELECT ?, rk, id, ?, 'duplicate' FROM ("
            f"SELECT {tp.row_key} AS rk, {tp.pk_column.sqlite} AS id, "
            f"row_number() OVER (PARTITION BY {', '.join(exprs)} ORDER BY {tp.row_key}) AS n "
            f"FROM {tp.sqlite} WHERE {not_null}) WHERE n > 1",
            (tp.name, ",".join(names)),
        )


def _record_orphans(source: Source, plan: Plan, tp: TablePlan, fk: tuple[str, str, str]) -> None:
    source.conn.execute(
        f"INSERT INTO scratch.problems SELECT ?, x.{tp.row_key}, x.{tp.pk_column.sqlite}, ?, 'missing_parent' "
        f"FROM {tp.sqlite} x WHERE {_orphan_condition(plan, tp, fk)}",
        (tp.name, fk[0]),
    )


def _summarize(source: Source, plan: Plan, result: Validation) -> None:
    rows = source.conn.execute(
        "SELECT tbl, col, kind, count(*) FROM scratch.problems GROUP BY tbl, col, kind"
    ).fetchall()
    order = {t.name: i for i, t in enumerate(plan.tables)}
    for tbl, col, kind, count in rows:
        tbl, col, kind = (v.decode() for v in (tbl, col, kind))
        first = source.conn.execute(
            "SELECT rk, id FROM scratch.problems WHERE tbl = ? AND col = ? AND kind = ? ORDER BY rk LIMIT ?",
            (tbl, col, kind, SAMPLE_IDS),
        ).fetchall()
        ids = [display_id(rk, row_id) for rk, row_id in first]
        example = _example(source, plan.table(tbl), col, kind, ids[0])
        result.groups.append(ProblemGroup(kind, tbl, col, count, ids, example))
    result.groups.sort(key=lambda g: (order.get(g.table, 99), g.column, g.kind))


def display_id(rk: object, row_id: object) -> object:
    """How a row is named to the user: its id, or its rowid where the id is NULL or blank text
    (an empty CSV field imported as '')."""
    if isinstance(row_id, bytes):
        row_id = row_id.decode("utf-8", "replace")
    if row_id is None or (isinstance(row_id, str) and not row_id.strip()):
        return f"rowid {rk}"
    return row_id


def _example(source: Source, tp: TablePlan, column: str, kind: str, shown: object) -> str:
    if kind == "duplicate":
        return f"id {shown} repeats an earlier row's {column}"
    value = source.conn.execute(
        f"SELECT x.{tp.column(column).sqlite} FROM {tp.sqlite} x JOIN scratch.problems p "
        f"ON p.rk = x.{tp.row_key} WHERE p.tbl = ? AND p.col = ? AND p.kind = ? ORDER BY p.rk LIMIT 1",
        (tp.name, column, kind),
    ).fetchone()[0]
    if kind == "missing_parent":
        parent = next(p for c, p, pc in tp.foreign_keys() if c == column)
        return f"id {shown} points at {parent} {excerpt(value)}, which does not exist"
    return f"id {shown}: {excerpt(value)}"


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
    """Reject every row with a problem, then every row whose foreign key names no kept row, until
    nothing changes: over all foreign keys of all tables, so the order of tables and the depth of
    parent_task_id chains do not matter (a fixed point)."""
    conn = source.conn
    for tp in plan.tables:
        rej = rejected_table_name(tp.name)
        key_type = "" if tp.source is not None and tp.source.without_rowid else " INTEGER"
        conn.execute(f"CREATE TABLE {rej} (rk{key_type} PRIMARY KEY, kind TEXT, detail TEXT)")
        # The kind is the row's first problem as recorded: values in column order, then keys. (A bare
        # column beside min() takes its value from the row min() chose.)
        conn.execute(
            f"INSERT INTO {rej} SELECT rk, kind, detail FROM (SELECT rk, kind, min(rowid), "
            "group_concat(kind || ' in ' || col, '; ') AS detail FROM scratch.problems WHERE tbl = ? GROUP BY rk)",
            (tp.name,),
        )
    changed = True
    while changed:
        changed = False
        for tp in _scanned(plan):
            rej = rejected_table_name(tp.name)
            for fk in tp.foreign_keys():
                col = f"x.{tp.column(fk[0]).sqlite}"
                cur = conn.execute(
                    f"INSERT OR IGNORE INTO {rej} SELECT x.{tp.row_key}, 'parent_rejected', "
                    f"'{fk[0]} points at rejected {fk[1]} ' || {col} FROM {tp.sqlite} x "
                    f"WHERE {col} IS NOT NULL AND x.{tp.row_key} NOT IN (SELECT rk FROM {rej}) "
                    f"AND NOT {_parent_exists(plan, tp, fk, kept=True)}"
                )
                changed = changed or cur.rowcount > 0
    for tp in plan.tables:
        rej = rejected_table_name(tp.name)
        for kind, n in conn.execute(f"SELECT kind, count(*) FROM {rej} GROUP BY kind"):
            result.reject_reasons[(tp.name, kind.decode())] += n
            result.rejected[tp.name] += n


def write_rejects(source: Source, plan: Plan, result: Validation, path: Path) -> tuple[Path, Counter]:
    """Write the rejected rows, original values and reasons, to a temp file beside `path`; also
    the rows written per table, for the run to check against what it rejected.

    The caller renames it into place only after the migration commits. Strict JSON: bytes that
    are not UTF-8 as base64, infinities as text.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    conn = source.conn
    previous = conn.text_factory
    conn.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
    written: Counter = Counter()
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as out:
            for tp in plan.tables:
                rej = result.rejected_table(tp.name)
                if not rej or tp.source is None:
                    continue
                cur = conn.execute(
                    f"SELECT r.rk, r.kind, r.detail, t.* FROM {rej} r JOIN {tp.sqlite} t "
                    f"ON t.{tp.row_key} = r.rk ORDER BY r.rk"
                )
                names = [d[0] for d in cur.description][3:]
                for rk, kind, detail, *values in cur:
                    row = dict(zip(names, (_jsonable(v) for v in values), strict=True))
                    record = {"table": tp.name, "id": row.get(tp.pk_column.source_name)}
                    if not tp.source.without_rowid:
                        record["rowid"] = rk
                    record.update(reason=detail, kind=kind, row=row)
                    out.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")
                    written[tp.name] += 1
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        conn.text_factory = previous
    return Path(tmp), written


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, float) and not math.isfinite(value):
        return {"real": repr(value)}  # JSON has no Infinity: say what SQLite held
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogateescape")
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:  # text that is not UTF-8: its exact bytes, as for a blob
            return {"base64": base64.b64encode(raw).decode()}
        return value
    return value
