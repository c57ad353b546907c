"""Real-world data: pre-flight validation, rejects, lossless conversions, drift, value-level verification."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path

import psycopg2
import pytest
from compare import compare
from conftest import assert_one_line_error, pg_query, pg_tables, run_cli
from dirty import BAD_ROWS, CLEAN_TEXT, CONVERTED, DEPENDENT_ROWS, add_schema_drift, make_dirty_db

from tools.make_todo_db import make_todo_db


@pytest.fixture
def dirty_db(tmp_path: Path) -> Path:
    return make_dirty_db(tmp_path / "todo.db")


def source_ids(path: Path, table: str) -> set[int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return {r[0] for r in conn.execute(f"SELECT id FROM {table}")}


def read_rejects(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- fail (the default): refuse before writing anything -------------------------------------


def test_dirty_source_is_refused_with_the_full_list_before_anything_is_written(dirty_db, pg_url):
    result = run_cli("--sqlite-path", str(dirty_db), "--postgres-url", pg_url)
    assert_one_line_error(result, "nothing was written", "--on-invalid skip")
    out = result.stdout
    for (table, row_id), kind in BAD_ROWS.items():
        line = next(
            (
                x
                for x in out.splitlines()
                if x.strip().startswith(kind) and f"{table}." in x and str(row_id) in x
            ),
            None,
        )
        assert line is not None, (table, row_id, kind, out)
    assert "9,000 characters" in out  # an excerpt, not the whole value
    assert pg_tables(pg_url) == {}
    assert not dirty_db.with_name("todo.db.rejects.jsonl").exists()


def test_dry_run_lists_problems_and_exits_non_zero(dirty_db, pg_url):
    result = run_cli("--sqlite-path", str(dirty_db), "--postgres-url", pg_url, "--dry-run")
    assert result.returncode == 1
    assert "Found 8 problems" in result.stdout
    assert pg_tables(pg_url) == {}
    result = run_cli(
        "--sqlite-path", str(dirty_db), "--postgres-url", pg_url, "--dry-run", "--on-invalid", "skip"
    )
    assert result.returncode == 0, result.stderr
    assert "create public.tasks and copy 33 rows, 7 to the rejects file" in result.stdout
    assert pg_tables(pg_url) == {}
    assert not dirty_db.with_name("todo.db.rejects.jsonl").exists()


# --- skip: the rest migrates, the rejects file holds exactly the others ----------------------


def test_skip_accounts_for_every_source_row_exactly_once(dirty_db, pg_url, tmp_path):
    rejects = tmp_path / "out" / "rejects.jsonl"
    rejects.parent.mkdir()
    report = tmp_path / "report.json"
    result = run_cli("--sqlite-path", str(dirty_db), "--postgres-url", pg_url, "--on-invalid", "skip",
                     "--rejects", str(rejects), "--report", str(report))  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = read_rejects(rejects)
    rejected = {(r["table"], r["id"]) for r in records}
    assert rejected == set(BAD_ROWS) | set(DEPENDENT_ROWS)
    for table in ("users", "tasks", "recurring_patterns"):
        migrated = {r[0] for r in pg_query(pg_url, f"SELECT id FROM {table}")}
        mine = {i for t, i in rejected if t == table}
        assert migrated.isdisjoint(mine)
        assert migrated | mine == source_ids(dirty_db, table), table
    by_id = {(r["table"], r["id"]): r for r in records}
    assert by_id[("tasks", 101)]["row"]["title"] == "nul \x00 byte"  # the original value, to fix by hand
    assert len(by_id[("tasks", 102)]["row"]["title"]) == 9000
    assert by_id[("tasks", 105)]["row"]["due_date"] == "next tuesday"
    assert (
        by_id[("tasks", 107)]["kind"] == "parent_rejected" and "users 50" in by_id[("tasks", 107)]["reason"]
    )
    assert by_id[("recurring_patterns", 21)]["kind"] == "parent_rejected"
    assert set(by_id[("tasks", 101)]["row"]) == {c[0] for c in pg_query(pg_url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'tasks'")}  # fmt: skip
    assert f"rejects file: {rejects}" in result.stdout
    data = json.loads(report.read_text())
    assert data["rejected"] == {"users": 1, "tasks": 7, "recurring_patterns": 2}
    assert data["tables"]["tasks"] == {"read": 40, "written": 33, "rejected": 7, "converted": 6}
    assert {p["kind"] for p in data["problems"]} == set(BAD_ROWS.values())
    assert data["rejects_path"] == str(rejects)


def test_lossless_conversions_are_applied_and_counted(dirty_db, pg_url):
    result = run_cli("--sqlite-path", str(dirty_db), "--postgres-url", pg_url, "--on-invalid", "skip")
    assert result.returncode == 0, result.stderr
    for (table, row_id, column), want in CONVERTED.items():
        (got,) = pg_query(pg_url, f"SELECT {column} FROM {table} WHERE id = %s", (row_id,))[0]
        if isinstance(want, str):
            want = datetime.fromisoformat(want)
        assert got == want, (table, row_id, column)
    assert "boolean stored as text (2)" in result.stdout
    assert "ISO datetime normalized (T, Z, offset to UTC, date only) (4)" in result.stdout
    assert "lossless conversions applied: 6 values" in result.stdout


def test_whole_reals_in_an_integer_column_arrive_as_those_integers(tmp_path, pg_url):
    """A todo.db whose tasks.user_id was declared REAL (an older schema, another tool) stores
    every id as 2.0: that is the integer 2 exactly, converted and counted; 2.5 is refused."""
    db = make_todo_db(tmp_path / "todo.db", tasks=30, users=3, patterns=2)
    conn = sqlite3.connect(db, isolation_level=None)
    ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'tasks'").fetchone()[0]
    assert "user_id INTEGER NOT NULL" in ddl
    conn.execute("BEGIN")
    conn.execute("ALTER TABLE tasks RENAME TO tasks_old")
    conn.execute(ddl.replace("user_id INTEGER NOT NULL", "user_id REAL NOT NULL"))
    conn.execute("INSERT INTO tasks SELECT * FROM tasks_old")
    conn.execute("DROP TABLE tasks_old")
    conn.execute("COMMIT")
    assert conn.execute("SELECT DISTINCT typeof(user_id) FROM tasks").fetchall() == [("real",)]
    conn.close()
    result = run_cli("--sqlite-path", str(db), "--postgres-url", pg_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "whole number stored as a real (30)" in result.stdout, result.stdout
    compare(db, pg_url)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE tasks SET user_id = 2.5 WHERE id = 4")
    conn.close()
    refused = run_cli("--sqlite-path", str(db), "--postgres-url", pg_url, "--force-recreate", "--yes")
    assert refused.returncode == 1 and "not_an_integer" in refused.stdout, refused.stdout + refused.stderr


def test_clean_but_unusual_text_arrives_byte_identical(dirty_db, pg_url):
    assert (
        run_cli("--sqlite-path", str(dirty_db), "--postgres-url", pg_url, "--on-invalid", "skip").returncode
        == 0
    )
    for row_id, text in CLEAN_TEXT.items():
        assert pg_query(pg_url, "SELECT description FROM tasks WHERE id = %s", (row_id,)) == [(text,)]
    # Emails differing only in case are different users: both kept.
    assert pg_query(pg_url, "SELECT id FROM users WHERE lower(email) = 'user1@example.com' ORDER BY id") == [
        (1,),
        (51,),
    ]


def test_default_rejects_path_is_next_to_the_source(dirty_db, pg_url):
    assert (
        run_cli("--sqlite-path", str(dirty_db), "--postgres-url", pg_url, "--on-invalid", "skip").returncode
        == 0
    )
    assert len(read_rejects(dirty_db.with_name("todo.db.rejects.jsonl"))) == 10


def test_rejects_file_is_not_written_when_the_run_fails(dirty_db, pg_url):
    assert (
        run_cli("--sqlite-path", str(dirty_db), "--postgres-url", pg_url, "--on-invalid", "skip").returncode
        == 0
    )
    rejects = dirty_db.with_name("todo.db.rejects.jsonl")
    rejects.unlink()
    result = run_cli("--sqlite-path", str(dirty_db), "--postgres-url", pg_url, "--on-invalid", "skip")
    assert result.returncode == 1  # target not empty
    assert not rejects.exists()
    assert sorted(p.name for p in dirty_db.parent.iterdir()) == ["todo.db"]


def test_rejects_in_an_unwritable_place_is_a_clear_error(dirty_db, pg_url, tmp_path):
    result = run_cli("--sqlite-path", str(dirty_db), "--postgres-url", pg_url, "--on-invalid", "skip",
                     "--rejects", str(tmp_path / "no" / "such" / "dir" / "r.jsonl"))  # fmt: skip
    assert_one_line_error(result, "--rejects", "does not exist")  # said before anything is read
    assert result.returncode == 2
    assert pg_tables(pg_url) == {}


def test_strip_nul_removes_nul_bytes_and_says_so(dirty_db, pg_url):
    result = run_cli(
        "--sqlite-path", str(dirty_db), "--postgres-url", pg_url, "--on-invalid", "skip", "--strip-nul"
    )
    assert result.returncode == 0, result.stderr
    assert pg_query(pg_url, "SELECT title FROM tasks WHERE id = 101") == [("nul  byte",)]
    assert "NUL bytes stripped (--strip-nul) (1)" in result.stdout
    assert pg_query(pg_url, "SELECT count(*) FROM recurring_patterns WHERE id = 21") == [(1,)]


# --- schema drift: never drop data silently --------------------------------------------------


def test_schema_drift_is_refused_with_the_list(dirty_db, pg_url):
    add_schema_drift(dirty_db)
    result = run_cli("--sqlite-path", str(dirty_db), "--postgres-url", pg_url, "--on-invalid", "skip")
    assert_one_line_error(result, "differ in 3 places", "--allow-drift", "nothing was written")
    assert "unknown_column       tasks.color" in result.stdout
    assert "missing_column       users.updated_at" in result.stdout
    assert (
        "unknown_table        audit_log: not in the models: its 2 rows would not be copied" in result.stdout
    )
    assert pg_tables(pg_url) == {}


def test_allow_drift_proceeds_and_reports(dirty_db, pg_url, tmp_path):
    add_schema_drift(dirty_db)
    report = tmp_path / "r.json"
    result = run_cli("--sqlite-path", str(dirty_db), "--postgres-url", pg_url, "--on-invalid", "skip",
                     "--allow-drift", "--report", str(report))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "schema drift allowed (--allow-drift): 3 differences" in result.stdout
    assert {d["kind"] for d in json.loads(report.read_text())["drift"]} == {
        "unknown_column",
        "missing_column",
        "unknown_table",
    }
    assert pg_query(pg_url, "SELECT count(*) FROM users WHERE updated_at IS NULL") == [(6,)]
    assert "audit_log" not in pg_tables(pg_url)


def test_tables_the_app_does_not_have_are_listed_whatever_they_are(sample_db, pg_url):
    """Tables no model needs may be anything: a tags table keyed by two columns, an FTS5 search
    index (whose internals are WITHOUT ROWID tables), a virtual table of an extension (sqlite-vec)
    not loaded here. Each was a fatal error; they are listed as drift and --allow-drift proceeds."""
    with sqlite3.connect(sample_db) as conn:
        conn.executescript(
            "CREATE TABLE task_tags (task_id INTEGER NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (task_id, tag)) "
            "WITHOUT ROWID;"
            "INSERT INTO task_tags VALUES (1, 'home'), (1, 'urgent');"
            "CREATE VIRTUAL TABLE tasks_fts USING fts5(title, content='tasks', content_rowid='id');"
            "INSERT INTO tasks_fts (tasks_fts) VALUES ('rebuild');"
        )
        # what a file made with sqlite-vec loaded holds: a virtual table whose module is absent here
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute(
            "INSERT INTO sqlite_master (type, name, tbl_name, rootpage, sql) "
            "VALUES ('table', 'task_vectors', 'task_vectors', 0, 'CREATE VIRTUAL TABLE task_vectors USING vec0(v float[4])')"
        )
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url)
    assert_one_line_error(result, "--allow-drift", "nothing was written")
    assert (
        "unknown_table        task_tags: not in the models: its 2 rows would not be copied" in result.stdout
    )
    assert "unknown_table        tasks_fts_idx: not in the models:" in result.stdout
    assert "task_vectors: not in the models: its rows would not be copied (" in result.stdout
    assert "no such module: vec0" in result.stdout
    assert pg_tables(pg_url) == {}
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--allow-drift")
    assert result.returncode == 0, result.stderr
    assert set(pg_tables(pg_url)) == {"users", "tasks", "recurring_patterns"}
    compare(sample_db, pg_url)


def test_a_generated_column_is_drift_not_silently_left_out(sample_db, pg_url):
    """PRAGMA table_info does not list GENERATED ALWAYS columns: one added with the sqlite3 shell
    was left out without a word, where every other column the models lack is listed."""
    with sqlite3.connect(sample_db) as conn:
        conn.execute(
            "ALTER TABLE tasks ADD COLUMN title_upper TEXT GENERATED ALWAYS AS (upper(title)) VIRTUAL"
        )
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url)
    assert_one_line_error(result, "differ in 1 place", "--allow-drift")
    assert "unknown_column       tasks.title_upper: a generated column" in result.stdout
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--allow-drift")
    assert result.returncode == 0, result.stderr
    columns = pg_query(
        pg_url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'tasks'"
    )
    assert ("title_upper",) not in columns
    assert pg_query(pg_url, "SELECT count(*) FROM tasks") == [(23,)]


def test_a_blank_id_is_named_by_its_rowid(sample_db, pg_url):
    """A table loaded with sqlite3's .import: an empty CSV field is '' (not NULL), and the id was
    shown as nothing at all ("ids )")."""
    with sqlite3.connect(sample_db) as conn:
        conn.executescript(
            "CREATE TABLE u2 AS SELECT * FROM users; DROP TABLE users; ALTER TABLE u2 RENAME TO users;"
            "INSERT INTO users (id, email, username, hashed_password, is_active, created_at) "
            "VALUES ('', 'blank@example.com', 'blank', 'x', 1, '2024-01-01 00:00:00.000000');"
        )
        rowid = conn.execute("SELECT rowid FROM users WHERE id = ''").fetchone()[0]
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--dry-run")
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if "users.id" in line)
    assert f"(ids rowid {rowid})" in line and f"e.g. id rowid {rowid}: ''" in line, line


def test_an_app_table_keyed_by_two_columns_is_refused(sample_db, pg_url):
    with sqlite3.connect(sample_db) as conn:
        conn.executescript(
            "CREATE TABLE r2 (id INTEGER NOT NULL, task_id INTEGER, user_id INTEGER, frequency TEXT, "
            "interval_value INTEGER, days_of_week TEXT, day_of_month INTEGER, end_date DATETIME, "
            "created_at DATETIME, PRIMARY KEY (id, task_id)) WITHOUT ROWID;"
            "DROP TABLE recurring_patterns; ALTER TABLE r2 RENAME TO recurring_patterns;"
        )
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--allow-drift")
    assert_one_line_error(result, "recurring_patterns", "WITHOUT ROWID with a primary key of 2 columns")
    assert result.returncode == 1
    assert pg_tables(pg_url) == {}


def test_a_not_null_column_missing_from_the_source_cannot_be_allowed(sample_db, pg_url):
    with sqlite3.connect(sample_db) as conn:
        conn.execute("ALTER TABLE recurring_patterns DROP COLUMN frequency")
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--allow-drift")
    assert_one_line_error(result, "cannot be mapped onto models.py", "recurring_patterns.frequency")


# --- --verify-only: a single changed value anywhere is found and named ------------------------


CHANGES = [
    ("users", 3, "email", "UPDATE users SET email = email || ' ' WHERE id = 3"),
    ("users", 2, "full_name", "UPDATE users SET full_name = NULL WHERE id = 2"),
    ("users", 4, "is_active", "UPDATE users SET is_active = NOT is_active WHERE id = 4"),
    ("tasks", 7, "due_date", "UPDATE tasks SET due_date = coalesce(due_date, now()) + interval '1 microsecond' WHERE id = 7"),
    ("tasks", 8, "description", "UPDATE tasks SET description = coalesce(description, '') || 'é' WHERE id = 8"),
    ("tasks", 9, "user_id", "UPDATE tasks SET user_id = CASE user_id WHEN 1 THEN 2 ELSE 1 END WHERE id = 9"),
    ("tasks", 10, "tags", "UPDATE tasks SET tags = NULL WHERE id = 10 AND tags IS NOT NULL; UPDATE tasks SET tags = '[]' WHERE id = 10 AND tags IS NULL"),
    ("recurring_patterns", 2, "interval", "UPDATE recurring_patterns SET interval = interval + 1 WHERE id = 2"),
    ("tasks", 12, "(row)", "DELETE FROM tasks WHERE id = 12"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("table", "row_id", "column", "change"), CHANGES, ids=[f"{c[0]}.{c[2]}" for c in CHANGES]
)
def test_verify_only_finds_a_single_changed_value(sample_db, pg_url, table, row_id, column, change):
    assert run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url).returncode == 0
    ok = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--verify-only")
    assert ok.returncode == 0, ok.stderr
    assert "Verified: PostgreSQL matches todo.db" in ok.stdout
    conn = psycopg2.connect(pg_url)
    with conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE tasks DROP CONSTRAINT tasks_parent_task_id_fkey")
        cur.execute("ALTER TABLE recurring_patterns DROP CONSTRAINT recurring_patterns_task_id_fkey")
        cur.execute(change)
    conn.close()
    before = pg_tables(pg_url)
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--verify-only")
    err = assert_one_line_error(result, "differs from todo.db", f"{table} id {row_id}")
    if column != "(row)":
        assert f"column {column}" in err
    # Written in PostgreSQL, behind the tool's back: a plain --sync would refuse, so it is not the advice.
    assert "someone wrote to postgresql" in err.lower() and "--sync --overwrite-changes" in err, err
    assert pg_tables(pg_url) == before  # verify-only writes nothing


def test_verify_only_advises_sync_when_todo_db_moved_on(sample_db, pg_url):
    assert run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url).returncode == 0
    with sqlite3.connect(sample_db) as src:
        src.execute("UPDATE tasks SET title = 'changed in the app' WHERE id = 3")
    src.close()
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--verify-only")
    err = assert_one_line_error(result, "tasks id 3", "--sync")
    assert "--overwrite-changes" not in err and "someone wrote" not in err.lower()
    assert run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--sync").returncode == 0


def test_verify_only_on_an_empty_target_says_to_migrate_first(sample_db, pg_url):
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--verify-only")
    assert_one_line_error(result, "run the migration first")


def test_verify_only_respects_skip_mode_rejects(dirty_db, pg_url):
    assert (
        run_cli("--sqlite-path", str(dirty_db), "--postgres-url", pg_url, "--on-invalid", "skip").returncode
        == 0
    )
    result = run_cli(
        "--sqlite-path", str(dirty_db), "--postgres-url", pg_url, "--on-invalid", "skip", "--verify-only"
    )
    assert result.returncode == 0, result.stderr
    # without the migration's flag: told to repeat it, not to "migrate the rest"
    result = run_cli("--sqlite-path", str(dirty_db), "--postgres-url", pg_url, "--verify-only")
    err = assert_one_line_error(result, "nothing was compared", "repeat its flags with --verify-only")
    assert "migrate the rest" not in err
