"""Property-based round trips: whatever a todo.db holds, PostgreSQL ends up with the same value,
or the row is rejected with a reason; never a changed value."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
from conftest import pg_query, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from todo_migration.cli import main
from todo_migration.convert import canonical_timestamp
from tools.make_todo_db import make_todo_db

INT32 = (-(2**31), 2**31 - 1)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)
datetimes = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))


def fresh_source(tmp: Path) -> Path:
    path = tmp / "todo.db"
    for suffix in ("", ".rejects.jsonl"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return make_todo_db(path, tasks=0, users=1, patterns=0)


def migrate_in_process(path: Path, url: str, *extra: str) -> int:
    return main(
        ["--sqlite-path", str(path), "--postgres-url", url, "--force-recreate", "--yes", "--quiet", *extra]
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("roundtrip")


@SETTINGS
@given(
    title=texts.map(lambda s: s[:255]),
    description=st.one_of(st.none(), texts),
    tags=st.one_of(st.none(), texts),
)
def test_any_text_without_nul_arrives_identical(pg_url, workdir, title, description, tags):
    title = title.replace("\x00", "")
    description = None if description is None else description.replace("\x00", "")
    path = fresh_source(workdir)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO tasks (id, title, description, tags, user_id, created_at) VALUES (1, ?, ?, ?, 1, ?)",
            (title, description, tags.replace("\x00", "") if tags else tags, "2024-01-01 00:00:00.000000"),
        )
    assert migrate_in_process(path, pg_url) == 0
    row = pg_query(pg_url, "SELECT title, description, tags FROM tasks WHERE id = 1")
    assert row == [(title, description, tags.replace("\x00", "") if tags else tags)]


@SETTINGS
@given(text=texts.filter(lambda s: "\x00" in s) | st.just("\x00"))
def test_text_with_nul_is_rejected_never_altered(pg_url, workdir, text):
    path = fresh_source(workdir)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO tasks (id, title, description, user_id, created_at) VALUES (1, 'ok', ?, 1, ?)",
            (text, "2024-01-01 00:00:00.000000"),
        )
    assert migrate_in_process(path, pg_url) == 1
    assert migrate_in_process(path, pg_url, "--on-invalid", "skip") == 0
    assert pg_query(pg_url, "SELECT count(*) FROM tasks") == [(0,)]
    assert path.with_name("todo.db.rejects.jsonl").read_text(encoding="utf-8").count("\n") == 1


@SETTINGS
@given(
    value=st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.sampled_from([*INT32, INT32[0] - 1, INT32[1] + 1, 0])
)
def test_integers_to_the_limits(pg_url, workdir, value):
    path = fresh_source(workdir)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO recurring_patterns (id, task_id, user_id, frequency, interval, created_at) "
            "VALUES (1, 1, 1, 'daily', ?, '2024-01-01 00:00:00.000000')",
            (value,),
        )
        conn.execute(
            "INSERT INTO tasks (id, title, user_id, created_at) VALUES (1, 't', 1, '2024-01-01 00:00:00.000000')"
        )
    fits = INT32[0] <= value <= INT32[1]
    before = pg_query(pg_url, "SELECT to_regclass('recurring_patterns') IS NOT NULL")
    assert migrate_in_process(path, pg_url) == (0 if fits else 1)
    if fits:
        assert pg_query(pg_url, "SELECT interval FROM recurring_patterns") == [(value,)]
    else:  # refused before writing: the target is as it was
        assert pg_query(pg_url, "SELECT to_regclass('recurring_patterns') IS NOT NULL") == before
        assert migrate_in_process(path, pg_url, "--on-invalid", "skip") == 0
        assert pg_query(pg_url, "SELECT count(*) FROM recurring_patterns") == [(0,)]


@SETTINGS
@given(
    when=datetimes, nullable=st.one_of(st.none(), datetimes), style=st.sampled_from(["app", "iso_t", "no_us"])
)
def test_datetimes_with_microseconds_arrive_exactly(pg_url, workdir, when, nullable, style):
    def stored(dt: datetime) -> str:
        if style == "iso_t":
            return dt.isoformat()
        # SQLAlchemy's SQLite format pads the year to four digits (strftime does not, below 1000).
        app = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d} {dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
        return app if style == "no_us" else f"{app}.{dt.microsecond:06d}"

    path = fresh_source(workdir)
    created = stored(when)
    due = None if nullable is None else stored(nullable)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO tasks (id, title, user_id, created_at, due_date) VALUES (1, 't', 1, ?, ?)",
            (created, due),
        )
    assert migrate_in_process(path, pg_url) == 0
    expected_created = datetime.fromisoformat(canonical_timestamp(created))
    expected_due = None if due is None else datetime.fromisoformat(canonical_timestamp(due))
    assert pg_query(pg_url, "SELECT created_at, due_date FROM tasks") == [(expected_created, expected_due)]


def test_offsets_are_converted_to_utc():
    assert canonical_timestamp("2024-03-01T00:15:00+05:30") == "2024-02-29 18:45:00.000000"
    # Behind UTC: forward, across the end of the year.
    assert canonical_timestamp("2024-12-31T22:30:00-02:00") == "2025-01-01 00:30:00.000000"
    assert canonical_timestamp("2024-03-01T12:00:00.5Z") == "2024-03-01 12:00:00.500000"
    assert canonical_timestamp("2024-03-01") == "2024-03-01 00:00:00.000000"
    assert canonical_timestamp("2024-03-01 12:00:00.1234567") is None  # PostgreSQL would round it
    assert canonical_timestamp("2024-02-30 00:00:00") is None
    assert canonical_timestamp(" 2024-03-01") is None
    assert canonical_timestamp("yesterday") is None


def test_nulls_stay_null_and_not_null_defaults_hold(pg_url, tmp_path):
    path = fresh_source(tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO tasks (id, title, user_id, created_at) VALUES (1, 't', 1, '2024-01-01 00:00:00')"
        )
    result = run_cli("--sqlite-path", str(path), "--postgres-url", pg_url)
    assert result.returncode == 0, result.stderr
    row = pg_query(
        pg_url,
        "SELECT description, tags, due_date, parent_task_id, updated_at, priority, completed FROM tasks",
    )
    assert row == [(None, None, None, None, None, "medium", False)]
