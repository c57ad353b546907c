"""The fingerprint a sync keeps of each todo.db row, in memory: no PostgreSQL server. Two rows
get the same fingerprint exactly when SQLite stores the same values (type and value), REALs to
the last bit included: an unchanged fingerprint is what lets a sync skip a part of todo.db."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import Base
from todo_migration.convert import Conversions
from todo_migration.diff import fingerprint_line
from todo_migration.plan import build_plan
from todo_migration.source import open_source
from tools.make_todo_db import make_todo_db

# The tasks' columns that can hold a REAL (not of TEXT affinity, not the rowid).
NUMERIC = ["completed", "due_date", "user_id", "parent_task_id", "is_recurring", "created_at", "updated_at"]


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> tuple[sqlite3.Connection, str]:
    """An empty tasks table as the app creates it, and the fingerprint SQL for it."""
    path = make_todo_db(tmp_path_factory.mktemp("fp") / "todo.db", tasks=5, users=2, patterns=1)
    source = open_source(Path(path))
    plan = build_plan(source, Base.metadata, schema="public", conversions=Conversions())
    fingerprint = fingerprint_line(plan.table("tasks"))
    # The app's declared types (they decide what SQLite stores), without its NOT NULLs: any value.
    declared = [(n.decode(), t.decode()) for _, n, t, *_ in source.conn.execute("PRAGMA table_info(tasks)")]
    source.conn.close()
    conn = sqlite3.connect(":memory:")
    columns = ", ".join(f"{n} {t}{' PRIMARY KEY' if n == 'id' else ''}" for n, t in declared)
    conn.execute(f"CREATE TABLE tasks ({columns})")
    return conn, fingerprint


def _finite(x: float) -> float:
    return 0.0 if x == 0 else x  # -0.0: SQLite prints it as 0.0, and it is the same instant


values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False).map(_finite),
    st.sampled_from([1700000000.123456, 0.1, 0.30000000000000004, 1e308, -1e308, math.inf, -math.inf]),
    st.text(max_size=8),
    st.sampled_from(["2024-03-01 12:30:00.123456", "1.5", "1e5", "007", "9223372036854775808"]),
)
rows = st.fixed_dictionaries({c: values for c in NUMERIC})


def stored_and_fingerprint(conn: sqlite3.Connection, fingerprint: str, row: dict) -> tuple[tuple, str]:
    conn.execute("DELETE FROM tasks")
    cols = ["id", "title", "priority", *NUMERIC]
    conn.execute(
        f"INSERT INTO tasks ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
        (1, "t", "medium", *(row[c] for c in NUMERIC)),
    )
    stored = conn.execute(f"SELECT {', '.join(NUMERIC)} FROM tasks").fetchone()
    exact = tuple((type(v).__name__, v.hex() if isinstance(v, float) else v) for v in stored)
    return exact, conn.execute(f"SELECT {fingerprint} FROM tasks").fetchone()[0]


def _nudged(value: object) -> object:
    """The nearest different value of the same kind: a REAL one bit up, an integer plus one."""
    if isinstance(value, float):
        return math.nextafter(value, -math.inf if value > 0 else math.inf)
    return value + 1 if isinstance(value, int) and value < 2**63 - 1 else value


@settings(max_examples=400, deadline=None)
@given(a=rows, b=rows, how=st.sampled_from(["other", "same", "nudged"]), column=st.sampled_from(NUMERIC))
def test_same_fingerprint_exactly_when_the_stored_values_are_the_same(tasks, a, b, how, column) -> None:
    conn, fingerprint = tasks
    if how != "other":  # random pairs nearly always differ: also a itself, and a with one value nudged
        b = {**a, column: _nudged(a[column]) if how == "nudged" else a[column]}
    stored_a, fp_a = stored_and_fingerprint(conn, fingerprint, a)
    stored_b, fp_b = stored_and_fingerprint(conn, fingerprint, b)
    assert (fp_a == fp_b) == (stored_a == stored_b), (stored_a, stored_b, fp_a, fp_b)


def test_reals_apart_in_their_last_bit_get_different_fingerprints(tasks) -> None:
    """json_array alone prints both as 1700000000.12346; the fingerprint prints them exactly,
    with NULLs beside them (which an arithmetic test for a REAL must not hide)."""
    conn, fingerprint = tasks
    near = math.nextafter(1700000000.123456, math.inf)
    base = dict.fromkeys(NUMERIC)
    base.update(completed=0, user_id=1, is_recurring=0, created_at="2024-03-01 12:30:00.000000")
    _, fp_a = stored_and_fingerprint(conn, fingerprint, {**base, "due_date": 1700000000.123456})
    _, fp_b = stored_and_fingerprint(conn, fingerprint, {**base, "due_date": near})
    assert fp_a != fp_b
    plain = conn.execute("SELECT json_array(?) = json_array(?)", (1700000000.123456, near)).fetchone()[0]
    assert plain == 1  # what the typed form is for
