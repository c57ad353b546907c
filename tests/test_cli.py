"""The core tool through its CLI, as a user runs it: migration, refusal, atomicity, flags, errors."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import psycopg2
import pytest
from compare import compare
from conftest import (
    DEADLINE,
    ROOT,
    SCRIPT,
    TABLES,
    assert_one_line_error,
    explain,
    pg_query,
    pg_tables,
    run_cli,
    run_on_terminal,
)
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from models import RecurringPattern, Task, User

BOOL_COLUMNS = {"is_active", "completed", "is_recurring"}
TS_COLUMNS = {"created_at", "updated_at", "due_date", "end_date", "next_occurrence"}


def expected_rows(path: Path, table: str) -> list[tuple]:
    """The source rows as PostgreSQL should return them (booleans and datetimes typed)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        cur = conn.execute(f"SELECT * FROM {table} ORDER BY id")
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
    out = []
    for row in rows:
        values = []
        for name, value in zip(names, row, strict=True):
            if value is not None and name in BOOL_COLUMNS:
                value = bool(value)
            elif value is not None and name in TS_COLUMNS:
                value = datetime.fromisoformat(value)
            values.append(value)
        out.append(tuple(values))
    return out


def assert_identical(sqlite_path: Path, url: str, schema: str = "public") -> None:
    for table in TABLES:
        got = pg_query(url, f'SELECT * FROM "{schema}"."{table}" ORDER BY id')
        assert got == expected_rows(sqlite_path, table), table


# --- the main job ------------------------------------------------------------------------


def test_migrates_the_guide_sample_value_for_value(sample_db, pg_url):
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url)
    assert result.returncode == 0, result.stderr
    assert pg_tables(pg_url) == {"recurring_patterns": 3, "tasks": 23, "users": 5}
    assert_identical(sample_db, pg_url)
    out = result.stdout
    assert (
        out.index("Migrating users")
        < out.index("Migrating tasks")
        < out.index("Migrating recurring_patterns")
    )
    assert "Migration completed and verified" in out
    assert "users: 5 / 5 rows" in out


def test_schema_matches_the_models(sample_db, pg_url):
    assert run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url).returncode == 0
    columns = pg_query(
        pg_url,
        "SELECT table_name, column_name, data_type, character_maximum_length, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
    )
    by = {(t, c): (dt, n, nullable, default) for t, c, dt, n, nullable, default in columns}
    assert by[("users", "email")][:3] == ("character varying", 255, "NO")
    assert by[("users", "username")][:3] == ("character varying", 100, "NO")
    assert by[("users", "full_name")][:3] == ("character varying", 255, "YES")
    assert by[("users", "is_active")] == ("boolean", None, "NO", "true")
    assert by[("users", "created_at")][:3] == ("timestamp without time zone", None, "NO")
    assert by[("tasks", "description")][:3] == ("text", None, "YES")
    assert by[("tasks", "completed")] == ("boolean", None, "NO", "false")
    assert by[("tasks", "priority")][3].startswith("'medium'")
    assert by[("recurring_patterns", "interval")] == ("integer", None, "NO", "1")
    for table in TABLES:
        assert by[(table, "id")][3] == f"nextval('{table}_id_seq'::regclass)"
    indexes = dict(pg_query(pg_url, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"))
    assert "UNIQUE" in indexes["ix_users_email"] and "UNIQUE" in indexes["ix_users_username"]
    assert "(user_id)" in indexes["idx_tasks_user_id"]
    assert "(completed)" in indexes["idx_tasks_completed"]
    assert "(user_id)" in indexes["idx_recurring_user_id"]
    fks = set(
        pg_query(
            pg_url,
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'f'",
        )
    )
    assert fks == {
        ("tasks", "FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE"),
        ("tasks", "FOREIGN KEY (parent_task_id) REFERENCES tasks(id) ON DELETE SET NULL"),
        ("recurring_patterns", "FOREIGN KEY (task_id) REFERENCES tasks(id) ON DELETE CASCADE"),
        ("recurring_patterns", "FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE"),
    }


def test_the_app_can_insert_after_migration(sample_db, pg_url):
    """Sequences sit past max(id): the app's next insert through its own models gets a new id."""
    assert run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url).returncode == 0
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg2://"))
    with Session(engine) as session:
        user = User(email="new@example.com", username="newbie", hashed_password="x")
        session.add(user)
        session.flush()
        task = Task(title="after cutover", user_id=user.id)
        session.add(task)
        session.flush()
        pattern = RecurringPattern(task_id=task.id, user_id=user.id, frequency="daily")
        session.add(pattern)
        session.commit()
        assert (user.id, task.id, pattern.id) == (6, 24, 4)
        assert task.priority == "medium" and task.completed is False
    engine.dispose()


def test_second_run_is_refused_and_data_survives(sample_db, pg_url):
    assert run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url).returncode == 0
    before = pg_query(pg_url, "SELECT * FROM tasks ORDER BY id")
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url)
    err = assert_one_line_error(result, "already has the app's tables", "--force-recreate", "users (5 rows)")
    assert "tasks (23 rows)" in err and "recurring_patterns (3 rows)" in err
    assert result.returncode == 1
    assert pg_query(pg_url, "SELECT * FROM tasks ORDER BY id") == before


def test_force_recreate_replaces_the_tables(sample_db, pg_url, tmp_path):
    assert run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url).returncode == 0
    conn = psycopg2.connect(pg_url)
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO users (email, username, hashed_password, created_at) VALUES ('x@y', 'stray', 'h', now())"
        )
    conn.close()
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--force-recreate")
    assert result.returncode == 0, result.stderr  # no terminal: proceeds without asking
    assert "will replace users (6 rows)" in result.stdout
    assert pg_tables(pg_url)["users"] == 5
    assert_identical(sample_db, pg_url)


def test_failing_force_recreate_leaves_old_data_intact(sample_db, pg_url, pg_server, tmp_path):
    """A dependent view makes DROP fail midway through the run: everything rolls back."""
    assert run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url).returncode == 0
    pg_server.execute(
        "CREATE VIEW open_tasks AS SELECT * FROM tasks WHERE NOT completed", pg_url.rsplit("/", 1)[1]
    )
    before = {t: pg_query(pg_url, f"SELECT * FROM {t} ORDER BY id") for t in TABLES}
    other = tmp_path / "other.db"
    from tools.make_todo_db import make_todo_db

    make_todo_db(other, tasks=50, users=3, patterns=2, seed=7)
    result = run_cli("--sqlite-path", str(other), "--postgres-url", pg_url, "--force-recreate", "--yes")
    assert_one_line_error(result, "nothing was changed in PostgreSQL", "depend")
    assert {t: pg_query(pg_url, f"SELECT * FROM {t} ORDER BY id") for t in TABLES} == before


def test_lock_held_by_another_session_times_out_with_its_name(sample_db, pg_url):
    assert run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url).returncode == 0
    holder = psycopg2.connect(pg_url + "?application_name=todo-api-worker")
    cur = holder.cursor()
    # holds ACCESS SHARE until the transaction ends; its SQL holds a secret, not to be printed
    cur.execute("SELECT count(*) FROM tasks WHERE title <> 'hunter2-secret'")
    try:  # the lock is held until the run returns: it must give up by itself, after --lock-timeout
        result = run_cli(
            "--sqlite-path",
            str(sample_db),
            "--postgres-url",
            pg_url,
            "--force-recreate",
            "--lock-timeout",
            "1s",
        )
        assert_one_line_error(
            result,
            "timed out after 1s waiting for a lock",
            "todo-api-worker",
            "idle in transaction",
            "nothing was changed",
        )
        assert "hunter2" not in result.stderr
    finally:
        holder.rollback()
        holder.close()
    assert pg_tables(pg_url)["tasks"] == 23


# --- --dry-run -----------------------------------------------------------------------------


def test_dry_run_changes_nothing_and_says_what_it_would_do(sample_db, pg_url):
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "create public.tasks and copy 23 rows" in result.stdout
    assert "Dry run passed" in result.stdout
    assert pg_tables(pg_url) == {}


def test_dry_run_fails_when_the_real_run_would(sample_db, pg_url):
    assert run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url).returncode == 0
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--dry-run")
    assert_one_line_error(result, "already has the app's tables")
    result = run_cli(
        "--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--dry-run", "--force-recreate"
    )
    assert result.returncode == 0, result.stderr
    assert "drop users, tasks, recurring_patterns" in result.stdout
    assert pg_tables(pg_url) == {"recurring_patterns": 3, "tasks": 23, "users": 5}


@pytest.mark.parametrize(
    ("other", "name"),
    [
        ("CREATE TABLE other (x text); CREATE INDEX idx_tasks_user_id ON other (x)", "idx_tasks_user_id"),
        ("CREATE TABLE tasks_pkey (x int)", "tasks_pkey"),
        ("CREATE SEQUENCE tasks_id_seq", "tasks_id_seq"),
    ],
    ids=["index-of-another-table", "table-named-like-a-key", "loose-sequence"],
)
def test_a_name_the_models_need_taken_by_something_else_fails_the_dry_run_too(sample_db, pg_url, other, name):
    """The index builds would fail after the whole copy (which a dry run, building no indexes, did
    not see), or PostgreSQL would quietly name the key or sequence tasks_pkey1 / tasks_id_seq1."""
    pg_query(pg_url, other, autocommit=True)
    for args in (["--dry-run"], []):
        result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, *args)
        assert_one_line_error(result, "already uses names the models give", name, "RENAME")
        assert result.returncode == 1
    assert not {"users", "tasks", "recurring_patterns"} & set(pg_tables(pg_url))


@pytest.mark.parametrize(
    "other",
    ["CREATE TABLE todo_migration_ledger (table_name text PRIMARY KEY, note text)",
     "CREATE VIEW todo_migration_ledger AS SELECT 1 AS table_name"],
    ids=["another-tools-table", "a-view"],
)  # fmt: skip
def test_a_ledger_that_is_not_ours_fails_the_dry_run_too(sample_db, pg_url, other):
    """It failed the real run only after the whole load ('refused while verifying: column rows …')."""
    pg_query(pg_url, other, autocommit=True)
    for args in (["--dry-run"], []):
        result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, *args)
        assert_one_line_error(result, "todo_migration_ledger exists but is not this tool's ledger", "RENAME")
        assert result.returncode == 1
    assert not {"users", "tasks", "recurring_patterns"} & set(pg_tables(pg_url))


def test_dry_run_detects_missing_create_permission(sample_db, pg_server, pg_db):
    pg_server.execute("DROP ROLE IF EXISTS app_limited")
    pg_server.execute("CREATE ROLE app_limited LOGIN PASSWORD 'limited-pw'")
    pg_server.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC", pg_db)
    url = pg_server.url(pg_db, user="app_limited", password="limited-pw")
    try:
        for extra in ([], ["--dry-run"]):
            result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", url, *extra)
            err = assert_one_line_error(
                result, "permission denied", "GRANT CREATE ON SCHEMA public", "app_limited"
            )
            assert "limited-pw" not in err + result.stdout
    finally:
        pg_server.execute(f'DROP DATABASE "{pg_db}" WITH (FORCE)')
        pg_server.execute("DROP ROLE app_limited")


# --- confirmation on a terminal ------------------------------------------------------------


def test_force_recreate_asks_on_a_terminal(sample_db, pg_url):
    assert run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url).returncode == 0
    args = ["--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--force-recreate"]
    code, out = run_on_terminal(args, "no")
    assert code == 1, out
    assert "Replace users (5 rows), tasks (23 rows), recurring_patterns (3 rows)" in out
    assert "not confirmed" in out
    code, out = run_on_terminal(args, "yes")
    assert code == 0, out
    assert "Migration completed" in out
    code, out = run_on_terminal([*args, "--yes"], None)
    assert code == 0, out
    assert "type 'yes'" not in out


# --- flags and output ----------------------------------------------------------------------


def test_help_shows_every_flag_with_an_example():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--dry-run", "--force-recreate", "--sqlite-path", "--postgres-url", "--yes", "--on-invalid",
                 "--rejects", "--strip-nul", "--verify-only", "--no-verify", "--report", "--schema", "--wait",
                 "--lock-timeout", "--allow-drift", "--quiet", "--debug", "--version"):  # fmt: skip
        assert flag in result.stdout, flag
    assert "e.g." in result.stdout and "exit codes" in result.stdout


def test_version():
    from todo_migration import __version__

    result = run_cli("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_unknown_or_abbreviated_flag_is_a_usage_error(sample_db, pg_url):
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--force-recreat")
    assert result.returncode == 2
    assert_one_line_error(result, "unrecognized arguments: --force-recreat", "did you mean --force-recreate?")
    assert pg_tables(pg_url) == {}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--epoch-unit", "minutes"], "invalid choice: 'minutes'"),
        (["--lock-timeout"], "--lock-timeout: expected one argument"),
        (["--rejects"], "--rejects: expected one argument"),
        (["--dry-run", "extra"], "unrecognized arguments: extra"),
        (["--schema", "app", "--schema", "public"], "--schema given twice"),
    ],
)
def test_argument_errors_are_one_line(sample_db, pg_url, args, needle):
    """Not argparse's whole usage block: one line, as every other failure."""
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, *args)
    assert result.returncode == 2
    assert_one_line_error(result, needle, "--help")


def test_output_that_can_no_longer_be_written_does_not_stop_the_run(sample_db, pg_url):
    """`... | head -2`: the pipe closes after two lines; the migration goes on to its end (it
    failed with BrokenPipeError, called an unexpected error)."""
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--sqlite-path", str(sample_db), "--postgres-url", pg_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # as head does once it has its lines
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=DEADLINE) == 0, err
    assert b"migration" in first.lower()
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert_identical(sample_db, pg_url)


def test_quiet_prints_only_the_result(sample_db, pg_url):
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--quiet")
    assert result.returncode == 0
    assert len(result.stdout.strip().splitlines()) == 1
    assert "Migration completed" in result.stdout


def test_quiet_refusal_names_the_first_problem_not_a_list_it_did_not_print(sample_db, pg_url, tmp_path):
    bad = tmp_path / "bad.db"
    shutil.copy(sample_db, bad)
    with sqlite3.connect(bad) as conn:
        conn.execute("UPDATE users SET created_at = 'next tuesday' WHERE id = 2")
    result = run_cli("--sqlite-path", str(bad), "--postgres-url", pg_url, "--quiet")
    line = assert_one_line_error(
        result, "bad.db has 1 value", "bad_datetime", "users.created_at", "next tuesday"
    )
    assert "listed above" not in line and "without --quiet" in line
    assert result.stdout == "" and result.returncode == 1
    loud = run_cli("--sqlite-path", str(bad), "--postgres-url", pg_url)
    assert "listed above" in assert_one_line_error(loud, "bad_datetime")


def test_report_is_written_as_json(sample_db, pg_url, tmp_path):
    report = tmp_path / "report.json"
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--report", str(report))
    assert result.returncode == 0
    data = json.loads(report.read_text())
    assert data["result"] == "ok" and data["mode"] == "migrate"
    assert data["source_tables"] == {"recurring_patterns": 3, "tasks": 23, "users": 5}
    assert [v["target_rows"] for v in data["verification"]] == [5, 23, 3]
    assert all(v["ok"] for v in data["verification"])
    assert {"copy", "indexes", "verify"} <= set(data["phases"])
    assert pg_url.split("@")[0].split(":")[-1] not in report.read_text()  # no password
    failed = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--report", str(report))
    assert failed.returncode == 1
    assert json.loads(report.read_text())["result"] == "failed"


@pytest.mark.parametrize("where", ["missing-directory", "a-directory"])
@pytest.mark.parametrize("flag", ["--report", "--rejects"])
def test_an_output_that_cannot_be_written_is_refused_before_anything(
    sample_db, pg_url, tmp_path, where, flag
):
    """Found only at the end, an unwritable --report turned a committed migration into exit 1."""
    path = tmp_path / "nope" / "out.json" if where == "missing-directory" else tmp_path
    extra = ["--on-invalid", "skip"] if flag == "--rejects" else []
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, flag, str(path), *extra)
    assert_one_line_error(result, flag, "directory")
    assert result.returncode == 2
    assert pg_tables(pg_url) == {}


@pytest.mark.parametrize("mode", [[], ["--dry-run"], ["--sync", "--dry-run"]])
def test_the_default_rejects_file_that_cannot_be_written_is_refused_before_anything(sample_db, pg_url, mode):
    """--on-invalid skip without --rejects writes beside todo.db: a dry run passed there, and the
    real run failed at its end (here the place is taken by a directory; the same check refuses a
    directory the user cannot write to)."""
    (sample_db.parent / "todo.db.rejects.jsonl").mkdir()
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--on-invalid", "skip", *mode)
    assert_one_line_error(result, "todo.db.rejects.jsonl", "default place", "--rejects PATH")
    assert result.returncode == 2
    assert pg_tables(pg_url) == {}


def test_never_modifies_the_source(sample_db, pg_url):
    before = sample_db.read_bytes(), sample_db.stat().st_mtime_ns
    assert run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url).returncode == 0
    assert (sample_db.read_bytes(), sample_db.stat().st_mtime_ns) == before
    assert sorted(p.name for p in sample_db.parent.iterdir()) == ["todo.db"]


# --- where the target comes from -----------------------------------------------------------


def test_defaults_todo_db_in_cwd_and_database_url_from_dot_env(sample_db, pg_url, tmp_path):
    (tmp_path / ".env").write_text(f"ENVIRONMENT=production\nDATABASE_URL={pg_url}\n")
    result = run_cli(cwd=tmp_path)  # ./todo.db and ./.env, as the guide runs it
    assert result.returncode == 0, result.stderr
    assert "from DATABASE_URL in" in result.stdout
    assert pg_tables(pg_url)["tasks"] == 23


def test_environment_database_url_beats_dot_env(sample_db, pg_url, tmp_path):
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://nobody:pw@127.0.0.1:1/nowhere\n")
    result = run_cli(cwd=tmp_path, env={"DATABASE_URL": pg_url})
    assert result.returncode == 0, result.stderr
    assert pg_tables(pg_url)["tasks"] == 23


def test_target_is_printed_masked(sample_db, pg_url):
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--dry-run")
    password = pg_url.split("@")[0].rsplit(":", 1)[1]
    host_part = pg_url.split("@")[1]
    assert host_part in result.stdout
    assert password not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--sqlite-path", "{url}"],
        ["--sqlite-path", "{url}", "--reverse"],
        ["--sqlite-path", "{url}", "--sync"],
        ["--report", "{url}"],
        ["--rejects", "{url}", "--on-invalid", "skip"],
    ],
)
def test_a_url_swapped_into_a_path_flag_is_refused_without_its_password(sample_db, pg_url, tmp_path, args):
    """At 2 a.m. the URL lands in the wrong flag: the error about that "path" printed it, password
    and all, and --report kept it."""
    report = tmp_path / "report.json"
    args = [a.format(url=pg_url) for a in args]
    if "--sqlite-path" not in args:
        args += ["--sqlite-path", str(sample_db)]
    result = run_cli(
        *args, "--postgres-url", pg_url, *([] if "--report" in args else ["--report", str(report)])
    )
    flag = next(a for a in args if a.startswith("--") and args[args.index(a) + 1] == pg_url)
    assert_one_line_error(result, flag, "URL", "not shown")
    assert result.returncode == 2
    password = pg_url.split("@")[0].rsplit(":", 1)[1]
    assert password not in result.stdout + result.stderr
    assert not report.exists() or password not in report.read_text()
    assert pg_tables(pg_url) == {}


@pytest.mark.parametrize("form", ["sqlite:///{path}", "file://{path}"])
def test_the_apps_own_sqlite_url_names_the_file(sample_db, pg_url, form):
    """The app's development DATABASE_URL, sqlite:///PATH, or a file:///PATH URL pasted into
    --sqlite-path."""
    result = run_cli("--sqlite-path", form.format(path=sample_db), "--postgres-url", pg_url)
    assert result.returncode == 0, explain(result)
    assert pg_tables(pg_url)["tasks"] == 23


# --- bad input: one line, the fix, non-zero, no traceback -----------------------------------


def test_missing_source_file(tmp_path, pg_url):
    result = run_cli("--sqlite-path", str(tmp_path / "nope.db"), "--postgres-url", pg_url)
    assert_one_line_error(result, "does not exist", "--sqlite-path")
    assert result.returncode == 2


@pytest.mark.parametrize("content", [b"", b"hello, I am a CSV\n1,2,3\n"])
def test_source_is_not_sqlite(tmp_path, pg_url, content):
    bad = tmp_path / "todo.db"
    bad.write_bytes(content)
    result = run_cli("--sqlite-path", str(bad), "--postgres-url", pg_url)
    assert_one_line_error(result, "--sqlite-path")
    assert result.returncode == 2


def test_a_utf16_source_is_refused_with_a_conversion_that_works(sample_db, tmp_path, pg_url):
    """PRAGMA encoding = 'UTF-16le', as some Windows tools make SQLite files: the same values, each
    text stored as UTF-16. Read as UTF-8 bytes they looked full of NULs (nul_byte on every value)."""
    utf16 = tmp_path / "todo16.db"
    src, dst = sqlite3.connect(sample_db), sqlite3.connect(utf16)
    dst.execute("PRAGMA encoding = 'UTF-16le'")
    schema = "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY type = 'index'"
    for (statement,) in src.execute(schema).fetchall():
        dst.execute(statement)
    for (table,) in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        rows = src.execute(f"SELECT * FROM {table}").fetchall()
        dst.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)
    dst.execute("UPDATE tasks SET title = 'café ☕ ' || title WHERE id = 3")
    dst.commit()
    src.close(), dst.close()
    before = utf16.read_bytes()
    result = run_cli("--sqlite-path", str(utf16), "--postgres-url", pg_url)
    line = assert_one_line_error(result, "UTF-16le", ".dump")
    assert result.returncode == 2 and "nul_byte" not in result.stdout + result.stderr
    assert pg_tables(pg_url) == {} and utf16.read_bytes() == before
    command = line.split("pass that: ", 1)[1].rstrip(".")
    subprocess.run(["bash", "-c", command], check=True, cwd=tmp_path)
    copy = tmp_path / "todo16-utf8.db"
    result = run_cli("--sqlite-path", str(copy), "--postgres-url", pg_url)
    assert result.returncode == 0, explain(result)
    compare(copy, pg_url)
    assert pg_query(pg_url, "SELECT title FROM tasks WHERE id = 3")[0][0].startswith("café ☕ ")


def test_alembics_bookkeeping_table_is_named_not_drift(sample_db, pg_url, tmp_path):
    """A todo.db an Alembic-managed app version made: alembic_version is the schema's record, not
    the app's data. Not copied, no --allow-drift needed, and the stamp command is said."""
    with sqlite3.connect(sample_db) as conn:
        conn.execute(
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
            "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
        )
        conn.execute("INSERT INTO alembic_version VALUES ('3f2a1b9c7d10')")
    conn.close()
    report = tmp_path / "r.json"
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--report", str(report))
    assert result.returncode == 0, explain(result)
    assert "alembic stamp 3f2a1b9c7d10" in result.stdout
    assert "alembic_version" not in pg_tables(pg_url)
    compare(sample_db, pg_url)
    noted = json.loads(report.read_text())["not_migrated"]
    assert any(o["name"] == "alembic_version" and o["revisions"] == ["3f2a1b9c7d10"] for o in noted)


def test_source_without_the_app_tables(tmp_path, pg_url):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    result = run_cli("--sqlite-path", str(other), "--postgres-url", pg_url)
    assert_one_line_error(result, "none of the app's tables", "users")
    assert pg_tables(pg_url) == {}


def test_no_target_given(sample_db, tmp_path):
    result = run_cli("--sqlite-path", str(sample_db), cwd=tmp_path)
    assert_one_line_error(result, "no PostgreSQL target", "--postgres-url", "DATABASE_URL")
    assert result.returncode == 2


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("sqlite:///./todo.db", "points at SQLite"),
        ("mysql://u:p@h/db", "not supported"),
        ("localhost:5432/todo", "cannot be parsed"),
        ("postgresql://u:p@localhost:5432", "names no database"),
        ("postgresql://u:p@localhost:54x2/db", "not a number"),
        ("", "empty"),
        ("postgresql://u:p@localhost/db?sslmode=requre", "not an sslmode"),
        ("postgresql://u:p@localhost/db?connect_timeout=abc", "whole number of seconds"),
        ("postgresql://u:p@localhost/db?foo=bar", "unknown parameter ?foo="),
    ],
)
def test_bad_urls(sample_db, url, needle):
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", url)
    assert_one_line_error(result, needle)
    assert result.returncode == 2


def test_connection_refused(sample_db):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    result = run_cli(
        "--sqlite-path", str(sample_db), "--postgres-url", f"postgresql://u:pw@127.0.0.1:{port}/db"
    )
    assert_one_line_error(result, "refused the connection")


def test_silent_server_times_out_instead_of_hanging(sample_db, silent_listener):
    url = f"postgresql://u:pw@127.0.0.1:{silent_listener.port}/db?connect_timeout=2"
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", url)
    # Counted from the connection, not from the start: a busy machine slows starting up, not the wait.
    waited = silent_listener.seconds_since_accepted()
    assert_one_line_error(result, "timed out connecting", "connect_timeout")
    assert waited < 20


def test_wrong_password(sample_db, pg_server, pg_db):
    url = pg_server.url(pg_db, user="postgres", password="wrong-s3cret")
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", url)
    err = assert_one_line_error(result, "rejected the password", "postgres")
    assert "wrong-s3cret" not in err + result.stdout


def test_missing_database_says_how_to_create_it(sample_db, pg_server):
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_server.url("todo_missing_db"))
    assert_one_line_error(result, "'todo_missing_db' does not exist", "CREATE DATABASE")


def test_missing_role_says_how_to_create_it(sample_db, pg_server, pg_db):
    url = pg_server.url(pg_db, user="ghost_role", password="pw")
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", url)
    err = result.stderr
    # With scram auth the server reports a missing role as a failed password, on purpose; either way
    # the message must say which user and what to check.
    assert_one_line_error(result, "ghost_role")
    assert "CREATE ROLE" in err or "password" in err


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(sample_db, tmp_path, pg_url):
    # A models.py that cannot be imported is not a user error; it must still be one line.
    work = tmp_path / "broken"
    work.mkdir()
    os.symlink(ROOT / "todo_migration", work / "todo_migration")
    os.symlink(ROOT / "database.py", work / "database.py")
    (work / "migrate_sqlite_to_postgres.py").write_text(SCRIPT.read_text())
    (work / "models.py").write_text("raise RuntimeError('models are broken')\n")
    cmd = [sys.executable, str(work / "migrate_sqlite_to_postgres.py"), "--sqlite-path", str(sample_db),
           "--postgres-url", pg_url]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    assert_one_line_error(result, "unexpected error", "models are broken", "--debug")
    result = subprocess.run([*cmd, "--debug"], capture_output=True, text=True, cwd=work)
    assert "Traceback" in result.stderr


def test_progress_bars_and_phase_times_only_on_a_terminal(pg_url, tmp_path):
    from tools.make_todo_db import make_todo_db

    source = make_todo_db(tmp_path / "todo.db", tasks=20_000)
    code, out = run_on_terminal(["--sqlite-path", str(source), "--postgres-url", pg_url], None)
    assert code == 0, out
    assert "rows/s" in out and "20.0k/20.0k" in out  # tqdm: done/total, rate
    assert "⏱️ copy:" in out or "[time] copy:" in out
    piped = run_cli("--sqlite-path", str(source), "--postgres-url", pg_url, "--force-recreate")
    assert piped.returncode == 0
    assert "rows/s" not in piped.stdout and "⏱️" not in piped.stdout
    code, out = run_on_terminal(["--sqlite-path", str(source), "--postgres-url", pg_url, "--force-recreate",
                                 "--yes", "--quiet"], None)  # fmt: skip
    assert code == 0, out
    assert "rows/s" not in out and len(out.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "needle"), [
    (["--lock-timeout", "ten seconds"], "not a duration"),
    (["--rejects", "r.jsonl"], "--on-invalid skip"),
    (["--dry-run", "--verify-only"], "cannot be combined"),
    (["--verify-only", "--force-recreate"], "--verify-only writes nothing"),
    (["--schema", " "], "--schema is empty"),
    (["--schema", "pg_toast"], "PostgreSQL's own"),
    (["--schema", "information_schema"], "PostgreSQL's own"),
])  # fmt: skip
def test_contradictory_or_malformed_flags_are_usage_errors(sample_db, pg_url, args, needle):
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, *args)
    assert_one_line_error(result, needle)
    assert result.returncode == 2
    assert pg_tables(pg_url) == {}


def test_the_entry_script_lets_sqlite_connections_run_in_parallel() -> None:
    """SQLite's allocation counter takes one process-wide mutex per malloc; the entry script turns
    it off before any connection exists (then the library counts nothing: memory_used stays 0),
    and the tool still works with it off."""
    code = (
        "import ctypes, sqlite3\n"
        "from todo_migration.source import let_connections_run_in_parallel\n"
        "assert let_connections_run_in_parallel()\n"
        "c = sqlite3.connect(':memory:')\n"
        "c.execute('CREATE TABLE t (x)')\n"
        "c.executemany('INSERT INTO t VALUES (?)', [(str(i) * 50,) for i in range(2000)])\n"
        "lib = ctypes.CDLL('libsqlite3.so.0')\n"
        "lib.sqlite3_memory_used.restype = ctypes.c_int64\n"
        "print(lib.sqlite3_memory_used(), c.execute('SELECT count(*) FROM t').fetchone()[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "2000"], out.stdout
    script = (ROOT / "migrate_sqlite_to_postgres.py").read_text()
    assert script.index("let_connections_run_in_parallel()") < script.index("sys.exit(main())")
