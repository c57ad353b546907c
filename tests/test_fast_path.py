"""The fast path and its way back: a clean todo.db is loaded while a second SQLite connection checks
its values; anything that check, PostgreSQL or the read-back doubts sends the run, rolled back, to
the exact pre-flight, which then decides exactly as it would have on its own."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import assert_one_line_error, pg_query, pg_tables, run_cli, run_on_terminal, sqlite_rows
from dirty import make_loose_db

from todo_migration import cli
from todo_migration import source as source_module
from tools.make_todo_db import make_todo_db

FAST = "alongside the load"
FELL_BACK = "rolled back; checking every value in detail"
EXACT = "Checking every value against the models (pre-flight)"  # the exact pre-flight ran
# A doubt the values check can see may be found before the load even starts (then there is nothing
# to roll back) or during it: tests of such doubts look for EXACT. Only doubts that PostgreSQL alone
# can see (a calendar date, an orphan, a duplicate) always show FELL_BACK.


def changed_db(tmp_path: Path, *statements: str, loose: bool = False) -> Path:
    """The guide's sample (in the old schema without NOT NULL/unique when `loose`), changed."""
    path = tmp_path / "changed" / "todo.db"
    path.parent.mkdir()
    if loose:
        make_loose_db(path)
    else:
        make_todo_db(path)
    conn = sqlite3.connect(path)
    with conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()
    return path


def migrate(db: Path, url: str, *extra: str):
    return run_cli("--sqlite-path", str(db), "--postgres-url", url, *extra)


def test_a_clean_source_is_checked_alongside_the_load(sample_db, pg_url, tmp_path):
    report = tmp_path / "report.json"
    result = migrate(sample_db, pg_url, "--report", str(report))
    assert result.returncode == 0, result.stderr
    assert FAST in result.stdout
    assert FELL_BACK not in result.stdout
    assert "every value is already in PostgreSQL's form" in result.stdout
    phases = json.loads(report.read_text())["phases"]
    assert phases["validate (alongside load)"] > 0
    assert pg_tables(pg_url) == {"recurring_patterns": 3, "tasks": 23, "users": 5}


@pytest.mark.parametrize(
    ("column", "stored", "label", "arrives"),
    [
        ("completed", "'true'", "boolean stored as text", "true"),
        ("due_date", "'2024-03-01 12:30:00'", "datetime without fractional seconds", "2024-03-01 12:30:00"),
        ("due_date", "'2024-03-01T12:30:00+05:30'", "ISO datetime normalized", "2024-03-01 07:00:00"),
    ],
)  # fmt: skip
def test_a_value_needing_conversion_sends_the_run_to_the_exact_path(
    tmp_path, pg_url, column, stored, label, arrives
):
    db = changed_db(tmp_path, f"UPDATE tasks SET {column} = {stored} WHERE id = 6", loose=True)
    result = migrate(db, pg_url)
    assert result.returncode == 0, result.stderr
    assert EXACT in result.stdout
    assert f"converted: tasks.{column}: {label}" in result.stdout
    assert pg_query(pg_url, f"SELECT {column}::text FROM tasks WHERE id = 6") == [(arrives,)]
    assert pg_tables(pg_url) == {"recurring_patterns": 3, "tasks": 23, "users": 5}


# Values of the app's exact shape that only PostgreSQL's parser or the read-back can tell apart:
# refused outright, or accepted as a different instant.
SHAPED_BUT_WRONG = [
    "2023-02-30 10:00:00.000000",  # no such day: PostgreSQL refuses it
    "2023-04-31 10:00:00.000000",
    "2024-13-01 10:00:00.000000",  # no such month
    "0000-01-01 00:00:00.000000",  # no year 0
    "2024-01-01 24:00:00.000000",  # PostgreSQL takes it as the next midnight: read back differently
    "2024-01-01 10:00:60.000000",  # a leap second: read back as 10:01:00
    "2024-01-01 1a:00:00.000000",
    # Not quite the shape, though trimming zeros or PostgreSQL's own printing might make them fit.
    "2024-01-01 10:00:00..00000",
    "0001-01-01 00:00:00.123 BC",
]


@pytest.mark.parametrize("value", SHAPED_BUT_WRONG)
@pytest.mark.parametrize("verify", [True, False], ids=["verify", "no-verify"])
def test_a_timestamp_only_postgresql_can_judge_is_reported_as_pre_flight_would(
    tmp_path, pg_url, value, verify
):
    db = changed_db(tmp_path, f"UPDATE tasks SET due_date = '{value}' WHERE id = 5")
    result = migrate(db, pg_url, *([] if verify else ["--no-verify"]))
    assert_one_line_error(result, "nothing was written")
    assert EXACT in result.stdout
    line = next(x for x in result.stdout.splitlines() if "bad_datetime" in x)
    assert "tasks.due_date: 1 (ids 5)" in line and value in line
    assert pg_tables(pg_url) == {}
    dry = migrate(db, pg_url, "--dry-run")  # the exact pre-flight says the same on its own
    assert dry.returncode == 1 and "tasks.due_date: 1 (ids 5)" in dry.stdout


@pytest.mark.parametrize(
    ("statement", "kind", "where"),
    [
        ("UPDATE tasks SET user_id = 999 WHERE id = 7", "missing_parent", "tasks.user_id: 1 (ids 7)"),
        ("UPDATE tasks SET parent_task_id = 5000 WHERE id = 8", "missing_parent", "tasks.parent_task_id: 1 (ids 8)"),
        ("UPDATE users SET email = (SELECT email FROM users WHERE id = 1) WHERE id = 2", "duplicate", "users.email"),
        ("UPDATE tasks SET title = NULL WHERE id = 9", "null_in_not_null", "tasks.title: 1 (ids 9)"),
        (f"UPDATE tasks SET title = '{'x' * 300}' WHERE id = 10", "too_long", "tasks.title: 1 (ids 10)"),
    ],
)  # fmt: skip
def test_a_row_postgresql_refuses_is_reported_as_pre_flight_would(tmp_path, pg_url, statement, kind, where):
    db = changed_db(tmp_path, statement, loose=True)
    result = migrate(db, pg_url)
    assert_one_line_error(result, "nothing was written", "--on-invalid skip")
    assert (FELL_BACK if kind in ("missing_parent", "duplicate") else EXACT) in result.stdout
    assert any(x.strip().startswith(kind) and where in x for x in result.stdout.splitlines()), result.stdout
    assert pg_tables(pg_url) == {}


def test_skip_mode_after_a_fallback_rejects_exactly_the_bad_rows(tmp_path, pg_url):
    db = changed_db(tmp_path, "UPDATE tasks SET user_id = 999 WHERE id = 7", loose=True)
    rejects = tmp_path / "rejects.jsonl"
    result = migrate(db, pg_url, "--on-invalid", "skip", "--rejects", str(rejects))
    assert result.returncode == 0, result.stderr
    assert FELL_BACK in result.stdout
    lines = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert [(r["table"], r["id"], r["kind"]) for r in lines] == [("tasks", 7, "missing_parent")]
    assert pg_tables(pg_url)["tasks"] == 22


@pytest.mark.parametrize("dry_run", [False, True])
def test_text_a_latin1_target_cannot_hold_is_a_listed_problem(tmp_path, pg_server, pg_db, dry_run):
    """A LATIN1 target database cannot hold an emoji: the pre-flight knows the target's encoding,
    so the dry run fails exactly where the real run would, naming the row."""
    name = pg_db + "_latin1"
    pg_server.execute(
        f"CREATE DATABASE \"{name}\" ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
    )
    try:
        url = pg_server.url(name)
        db = changed_db(tmp_path, "UPDATE tasks SET title = 'party 🎉 in Köln' WHERE id = 3")
        result = migrate(db, url, *(["--dry-run"] if dry_run else []))
        assert_one_line_error(result, "would refuse or change", "nothing was written")
        line = next(x for x in result.stdout.splitlines() if "not_in_target_encoding tasks.title" in x)
        assert "(ids 3, " in line  # the sample holds other such titles and tags too
        assert pg_tables(url) == {}
        skipped = migrate(db, url, "--on-invalid", "skip", "--rejects", str(tmp_path / "r.jsonl"))
        assert skipped.returncode == 0, skipped.stderr
        assert pg_query(url, "SELECT count(*) FROM tasks WHERE id = 3") == [(0,)]
        assert pg_query(url, "SELECT title FROM tasks WHERE id = 1") == [(sqlite_title(db, 1),)]
    finally:
        pg_server.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def sqlite_title(db: Path, row_id: int) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT title FROM tasks WHERE id = ?", (row_id,)).fetchone()[0]


@pytest.mark.parametrize("mode", ["fail", "skip"])
def test_text_that_is_not_utf8_is_a_listed_problem(tmp_path, pg_url, mode):
    """Bytes another tool wrote in Latin-1: PostgreSQL refuses them; the list names the row, and
    the rejects file keeps the exact bytes (base64)."""
    db = changed_db(
        tmp_path, "UPDATE tasks SET title = CAST(x'436166e9' AS TEXT) WHERE id = 3"
    )  # 'Café' in Latin-1
    dry = migrate(db, pg_url, "--dry-run")
    assert dry.returncode == 1
    assert any(
        "not_utf8" in x and "tasks.title: 1 (ids 3)" in x and "b'Caf\\xe9'" in x
        for x in dry.stdout.splitlines()
    ), dry.stdout
    rejects = tmp_path / "rejects.jsonl"
    result = migrate(
        db, pg_url, "--on-invalid", mode, *(["--rejects", str(rejects)] if mode == "skip" else [])
    )
    if mode == "fail":
        assert_one_line_error(result, "nothing was written")
        assert pg_tables(pg_url) == {}
        return
    assert result.returncode == 0, result.stderr
    records = [json.loads(x) for x in rejects.read_text().splitlines()]
    task = next(r for r in records if r["table"] == "tasks")
    assert (task["id"], task["kind"], task["row"]["title"]) == (3, "not_utf8", {"base64": "Q2Fm6Q=="})
    assert pg_query(pg_url, "SELECT count(*) FROM tasks WHERE id = 3") == [(0,)]


def test_the_fallback_asks_for_confirmation_only_once(tmp_path, pg_url, sample_db):
    """An orphan only PostgreSQL sees: the first attempt (confirmed) rolls back, and the second,
    which sets the row aside, does not ask again."""
    assert migrate(sample_db, pg_url).returncode == 0
    db = changed_db(tmp_path, "UPDATE tasks SET user_id = 999 WHERE id = 7", loose=True)
    args = ["--sqlite-path", str(db), "--postgres-url", pg_url, "--force-recreate", "--on-invalid", "skip"]
    code, out = run_on_terminal(args, "yes")
    assert code == 0, out
    assert out.count("type 'yes'") == 1
    assert FELL_BACK in out
    assert out.count("Migrating tasks") == 2
    assert pg_tables(pg_url)["tasks"] == 22


def wal(db: Path) -> Path:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
    return db


def test_an_idle_wal_source_is_checked_alongside_the_load(pg_url, sample_db):
    """A WAL-mode todo.db nobody committed to since our snapshot began: the -shm file's wal-index
    header shows that the check's connection sees that very snapshot, so it runs alongside."""
    result = migrate(wal(sample_db), pg_url)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert FAST in out
    assert "every value is already in PostgreSQL's form" in out
    assert [tuple(r) for r in pg_query(pg_url, "SELECT id, title FROM tasks ORDER BY id")] == [
        (r[0], r[1]) for r in sqlite_rows(sample_db, "tasks")
    ]


def migrate_while_the_app_commits(db: Path, url: str, statement: str, monkeypatch, capsys) -> tuple[int, str]:
    """Run the tool in this process; the app commits `statement` just before each connection after
    the first opens: after our snapshot began, before the check's would (the race a live app can
    win at any time, here made certain)."""
    opened = []
    real = source_module._connect_read_only

    def connect(path: Path, *, immutable: bool = False) -> sqlite3.Connection:
        if opened:
            with sqlite3.connect(db) as app:
                app.execute(statement)
        opened.append(path)
        return real(path, immutable=immutable)

    monkeypatch.setattr(source_module, "_connect_read_only", connect)
    code = cli.main(["--sqlite-path", str(db), "--postgres-url", url])
    assert len(opened) > 1, "no second connection was tried"
    return code, capsys.readouterr().out


def test_a_wal_source_the_app_wrote_to_meanwhile_is_checked_before_the_load(
    pg_url, sample_db, monkeypatch, capsys
):
    """The app committed between our snapshot and the check's: the second connection would see
    other data, so it is closed and the check runs on the one connection, before the load. What
    is loaded is our snapshot, without the app's later write."""
    before = sqlite_rows(wal(sample_db), "tasks")
    code, out = migrate_while_the_app_commits(
        sample_db, pg_url, "UPDATE tasks SET title = 'written meanwhile' WHERE id = 1", monkeypatch, capsys
    )
    assert code == 0, out
    assert FAST not in out
    assert out.index("Checking every value against the models ...") < out.index("Creating PostgreSQL tables")
    assert "every value is already in PostgreSQL's form" in out
    assert [tuple(r) for r in pg_query(pg_url, "SELECT id, title FROM tasks ORDER BY id")] == [
        (r[0], r[1]) for r in before
    ]
    assert sqlite_rows(sample_db, "tasks")[0][1] == "written meanwhile"


def test_a_wal_source_needing_conversion_goes_to_the_exact_pre_flight_before_loading(
    tmp_path, pg_url, monkeypatch, capsys
):
    db = wal(changed_db(tmp_path, "UPDATE tasks SET completed = 'true' WHERE id = 6"))
    code, out = migrate_while_the_app_commits(
        db, pg_url, "UPDATE users SET full_name = 'written meanwhile' WHERE id = 1", monkeypatch, capsys
    )
    assert code == 0, out
    assert FELL_BACK not in out  # found before anything was loaded
    assert out.count("Migrating tasks") == 1
    assert "converted: tasks.completed: boolean stored as text (1)" in out
    assert pg_query(pg_url, "SELECT completed FROM tasks WHERE id = 6") == [(True,)]


def test_the_load_stops_as_soon_as_the_check_finds_a_doubt(tmp_path, pg_url):
    """A doubt in users is found within milliseconds: the load stops at the next chunk of tasks
    (or does not start) rather than loading all of them first. The doubt is one only the check can see: a blob in a
    text column would be sent as its bytes and read back as the same text."""
    db = make_todo_db(tmp_path / "todo.db", tasks=300_000)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE users SET full_name = x'3132' WHERE id = 1")
    result = migrate(db, pg_url)
    assert_one_line_error(result, "nothing was written")
    assert EXACT in result.stdout
    assert "300,000 rows copied" not in result.stdout
    assert any(
        x.strip().startswith("binary_in_text_column") and "users.full_name: 1 (ids 1)" in x
        for x in result.stdout.splitlines()
    ), result.stdout
    assert pg_tables(pg_url) == {}
