"""Issue 13: `--sync` catches an existing PostgreSQL target up with todo.db, applying only what
changed, in one verified transaction; and refuses to overwrite what someone else wrote there.

Every test runs the CLI as a user does, against a real PostgreSQL and real files, and judges the
result with tests/compare.py, which reads both databases itself and never imports the tool. Waits
are on events (a line from the writer process, a backend in pg_stat_activity), never on sleeps.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import psycopg2
import pytest
from compare import compare
from conftest import ROOT, SCRIPT, assert_failure, explain, pg_query, run_cli, run_on_terminal, wait_for
from export_compare import assert_app_schema, assert_same, pg_as_sqlite, sqlite_dump
from realworld import file_digest

from tools.make_todo_db import make_todo_db

SYNCED = "PostgreSQL now equals todo.db"
NOTHING = "PostgreSQL already equals todo.db"
WRITER = ROOT / "tests" / "app_writer.py"
LEDGER = "todo_migration_ledger"
ONLY_CHANGED_PARTS = "fingerprints unchanged since the last sync"
HOLD_OPEN = (  # a process with a todo.db open and idle, until its stdin closes
    "import sqlite3, sys\n"
    "conn = sqlite3.connect(sys.argv[1])\n"
    "conn.execute('SELECT count(*) FROM tasks').fetchone()\n"
    "print('holding', flush=True)\n"
    "sys.stdin.read()\n"
)


def cli(db: Path, url: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return run_cli("--sqlite-path", str(db), "--postgres-url", url, *args, timeout=timeout)


def ok(db: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    result = cli(db, url, *args)
    assert result.returncode == 0, explain(result)
    assert "Traceback" not in result.stdout + result.stderr
    return result


def stamp(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")


def target_state(url: str) -> list[tuple]:
    """Every row of the app's tables and the ledger, with the transaction that wrote it: any write
    at all changes this."""
    state = []
    for table in ("users", "tasks", "recurring_patterns", "todo_migration_ledger"):
        state += pg_query(url, f"SELECT '{table}', xmin::text, t::text FROM {table} t ORDER BY 3")
    return state


@pytest.fixture(params=["migrated", "synced"])
def migrated_db(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> Path:
    """A todo.db migrated to PostgreSQL; "synced": and caught up once since, so that the ledger
    holds todo.db's fingerprints and the next sync compares only the parts that changed."""
    db = make_todo_db(tmp_path / "todo.db", tasks=400, users=12, patterns=30)
    ok(db, pg_url)
    if request.param == "synced":
        src = sqlite3.connect(db, isolation_level=None)
        src.execute("UPDATE tasks SET title = title || ' (seen)' WHERE id = 2")
        src.close()
        ok(db, pg_url, "--sync")
        assert fingerprinted(pg_url) == ["recurring_patterns", "tasks", "users"]
    return db


def fingerprinted(url: str) -> list[str]:
    """The tables whose fingerprints the ledger holds."""
    rows = pg_query(url, f"SELECT table_name FROM {LEDGER} WHERE fingerprints IS NOT NULL ORDER BY 1")
    return [name for (name,) in rows]


def report_of(tmp_path: Path, name: str = "sync.json") -> Path:
    return tmp_path / name


# --- what changed, and only that ---------------------------------------------------------------


def test_sync_applies_inserts_updates_deletes_and_verifies(
    migrated_db: Path, pg_url: str, tmp_path: Path
) -> None:
    db = migrated_db
    src = sqlite3.connect(db, isolation_level=None)
    src.execute("PRAGMA foreign_keys=ON")
    now = datetime(2026, 11, 25, 9, 30)
    src.execute(
        "INSERT INTO users (email, username, hashed_password, is_active, created_at) VALUES (?, ?, 'h', 1, ?)",
        ("new@example.com", "newbie", stamp(now)),
    )
    new_user = src.execute("SELECT max(id) FROM users").fetchone()[0]
    src.execute(
        "INSERT INTO tasks (title, completed, priority, user_id, parent_task_id, is_recurring, created_at) "
        "VALUES ('new parent', 0, 'high', ?, NULL, 0, ?)",
        (new_user, stamp(now)),
    )
    parent = src.execute("SELECT max(id) FROM tasks").fetchone()[0]
    src.execute(
        "INSERT INTO tasks (title, completed, priority, user_id, parent_task_id, is_recurring, created_at) "
        "VALUES ('new child', 0, 'low', ?, ?, 0, ?)",
        (new_user, parent, stamp(now)),
    )
    src.execute("UPDATE tasks SET completed = 1, title = 'it''s done' WHERE id = 5")
    pattern_task = src.execute("SELECT task_id FROM recurring_patterns ORDER BY id LIMIT 1").fetchone()[0]
    src.execute("DELETE FROM tasks WHERE id = ?", (pattern_task,))  # its patterns cascade
    src.close()
    before = file_digest(db)

    dry = ok(db, pg_url, "--sync", "--dry-run")
    assert "Would change" in dry.stdout and "Dry run passed" in dry.stdout, explain(dry)
    assert "ComparisonError" not in dry.stdout
    with pytest.raises(AssertionError):  # the dry run wrote nothing: PostgreSQL still differs
        compare(db, pg_url)

    report = report_of(tmp_path)
    result = ok(db, pg_url, "--sync", "--report", str(report))
    assert SYNCED in result.stdout, explain(result)
    compare(db, pg_url)
    assert file_digest(db) == before, "the sync wrote to todo.db"
    data = json.loads(report.read_text())
    delta = data["delta"]
    assert delta["users"]["inserted"] == 1 and delta["tasks"]["inserted"] == 2
    sent = {v["table"]: v["sent_rows"] for v in data["verification"]}
    assert sent["users"] == 1 and sent["tasks"] == delta["tasks"]["inserted"] + delta["tasks"]["updated"]
    assert delta["tasks"]["updated"] >= 1 and 5 in delta["tasks"]["first_ids"]["updated"]
    assert pattern_task in delta["tasks"]["first_ids"]["deleted"]
    assert delta["recurring_patterns"]["deleted"] >= 1

    # The app's next insert on PostgreSQL gets a fresh id.
    top = pg_query(pg_url, "SELECT max(id) FROM tasks")[0][0]
    nxt = pg_query(pg_url, "SELECT nextval(pg_get_serial_sequence('tasks', 'id'))")[0][0]
    assert nxt > top

    again = ok(db, pg_url, "--sync")
    assert NOTHING in again.stdout, explain(again)


def test_one_microsecond_is_a_change(migrated_db: Path, pg_url: str, tmp_path: Path) -> None:
    src = sqlite3.connect(migrated_db, isolation_level=None)
    (due,) = src.execute("SELECT due_date FROM tasks WHERE id = 17").fetchone()
    moved = (
        datetime.fromisoformat(due) + timedelta(microseconds=1) if due else datetime(2030, 1, 1, 0, 0, 0, 1)
    )
    src.execute("UPDATE tasks SET due_date = ? WHERE id = 17", (stamp(moved),))
    src.close()
    report = report_of(tmp_path)
    ok(migrated_db, pg_url, "--sync", "--report", str(report))
    delta = json.loads(report.read_text())["delta"]["tasks"]
    assert (delta["inserted"], delta["updated"], delta["deleted"]) == (0, 1, 0)
    assert delta["first_ids"]["updated"] == [17]
    assert pg_query(pg_url, "SELECT due_date FROM tasks WHERE id = 17")[0][0] == moved
    compare(migrated_db, pg_url)


def test_after_a_sync_only_changed_parts_are_compared_and_every_change_is_found(
    migrated_db: Path, pg_url: str, tmp_path: Path
) -> None:
    """The second sync reads todo.db's fingerprints against the ledger's: it says how few parts it
    compared, and still finds an insert, a delete, a one-microsecond move, a reused id and a
    change after a NUL byte; the independent comparer agrees."""
    src = sqlite3.connect(migrated_db, isolation_level=None)
    if not fingerprinted(pg_url):  # a first sync takes them
        src.execute("UPDATE tasks SET title = title || ' (seen)' WHERE id = 2")
        ok(migrated_db, pg_url, "--sync")
    (due,) = src.execute("SELECT created_at FROM tasks WHERE id = 31").fetchone()
    src.execute(
        "UPDATE tasks SET created_at = ? WHERE id = 31",
        (stamp(datetime.fromisoformat(due) + timedelta(microseconds=1)),),
    )
    src.execute("UPDATE tasks SET description = 'a' || char(0) || 'b' WHERE id = 32")
    top = src.execute("SELECT max(id) FROM tasks").fetchone()[0]
    src.execute("DELETE FROM tasks WHERE id = ?", (top,))
    src.execute(
        "INSERT INTO tasks (id, title, completed, priority, user_id, is_recurring, created_at) "
        "VALUES (?, 'reborn', 0, 'low', 1, 0, '2026-11-25 10:00:00.000000')",
        (top,),
    )
    src.execute("DELETE FROM tasks WHERE id = 200")
    src.execute(
        "INSERT INTO tasks (title, completed, priority, user_id, is_recurring, created_at) "
        "VALUES ('new', 0, 'low', 2, 0, '2026-11-25 10:00:00.000000')"
    )
    src.close()
    report = report_of(tmp_path)
    result = cli(migrated_db, pg_url, "--sync", "--report", str(report))
    # The NUL byte is refused as a migration refuses it (the row is found, not missed) ...
    assert_failure(result, None)
    assert "nul_byte" in result.stdout, explain(result)
    assert ONLY_CHANGED_PARTS in result.stdout, explain(result)
    src = sqlite3.connect(migrated_db, isolation_level=None)
    src.execute("UPDATE tasks SET description = 'a then b' WHERE id = 32")
    src.close()
    result = ok(migrated_db, pg_url, "--sync", "--report", str(report))
    assert ONLY_CHANGED_PARTS in result.stdout, explain(result)
    line = next(ln for ln in result.stdout.splitlines() if "tasks: " + ONLY_CHANGED_PARTS in ln)
    assert int(line.split(" except in ")[1].split()[0]) <= 5, line  # of 51 parts
    delta = json.loads(report.read_text())["delta"]["tasks"]
    assert (delta["inserted"], delta["updated"], delta["deleted"]) == (1, 3, 1), delta
    assert sorted(delta["first_ids"]["updated"]) == [31, 32, top], delta
    assert delta["first_ids"]["deleted"] == [200], delta
    assert 1 <= delta["parts_compared"] <= 5, delta
    compare(migrated_db, pg_url)
    assert fingerprinted(pg_url) == ["recurring_patterns", "tasks", "users"]


def test_unchanged_ranges_are_skipped_and_an_emptied_range_is_found(tmp_path: Path, pg_url: str) -> None:
    """Five ranges of 4,096 ids: one edited, one emptied (every row deleted), the rest unchanged
    (known from each range's own fingerprint): exactly the edited and emptied parts are compared."""
    db = make_todo_db(tmp_path / "todo.db", tasks=20_000, users=20, patterns=40)
    ok(db, pg_url)
    src = sqlite3.connect(db, isolation_level=None)
    src.execute("UPDATE tasks SET title = 'seen' WHERE id = 1")
    src.close()
    ok(db, pg_url, "--sync")
    src = sqlite3.connect(db, isolation_level=None)
    src.execute("PRAGMA foreign_keys = ON")
    src.execute("UPDATE tasks SET completed = 1 - completed WHERE id IN (5000, 5001, 7000)")
    emptied = src.execute("SELECT count(*) FROM tasks WHERE id >= 16384").fetchone()[0]
    src.execute("DELETE FROM tasks WHERE id >= 16384")  # patterns cascade, subtasks detached
    detached = src.total_changes
    src.close()
    report = report_of(tmp_path)
    result = ok(db, pg_url, "--sync", "--report", str(report))
    assert ONLY_CHANGED_PARTS in result.stdout, explain(result)
    delta = json.loads(report.read_text())["delta"]["tasks"]
    assert delta["deleted"] == emptied and delta["inserted"] == 0, delta
    assert delta["updated"] >= 3 and detached >= emptied + 3, delta
    assert delta["parts_compared"] <= 2 + (20_000 - 16_384) // 8 + 1 + delta["updated"], delta
    compare(db, pg_url)
    again = ok(db, pg_url, "--sync")
    assert NOTHING in again.stdout, explain(again)
    # The parts of the ranges found unchanged were carried over into the ledger as they were: one
    # row edited there now is one part to compare.
    src = sqlite3.connect(db, isolation_level=None)
    src.execute("UPDATE tasks SET title = 'edited' WHERE id = 9000")
    src.close()
    ok(db, pg_url, "--sync", "--report", str(report))
    delta = json.loads(report.read_text())["delta"]["tasks"]
    assert (delta["updated"], delta["parts_compared"]) == (1, 1), delta
    compare(db, pg_url)


def test_a_real_changed_in_its_sixteenth_digit_is_a_change(tmp_path: Path, pg_url: str) -> None:
    """json_array prints a REAL to 15 digits; an epoch with microseconds has 16. The fingerprint
    prints such a row exactly, so the one-microsecond move is found and converted."""
    db = make_todo_db(tmp_path / "todo.db", tasks=60, users=3, patterns=3)
    src = sqlite3.connect(db, isolation_level=None)
    src.execute("UPDATE tasks SET due_date = 1700000000.123456 WHERE id = 7")
    src.close()
    ok(db, pg_url, "--epoch-unit", "seconds")
    src = sqlite3.connect(db, isolation_level=None)
    src.execute("UPDATE tasks SET title = 'seen' WHERE id = 8")
    src.close()
    ok(db, pg_url, "--sync", "--epoch-unit", "seconds")
    assert "tasks" in fingerprinted(pg_url)
    src = sqlite3.connect(db, isolation_level=None)
    src.execute("UPDATE tasks SET due_date = 1700000000.123457 WHERE id = 7")
    assert (
        src.execute("SELECT json_array(due_date) FROM tasks WHERE id = 7").fetchone()[0]
        == "[1700000000.12346]"
    )
    src.close()
    report = report_of(tmp_path)
    result = ok(db, pg_url, "--sync", "--epoch-unit", "seconds", "--report", str(report))
    assert ONLY_CHANGED_PARTS in result.stdout, explain(result)
    assert json.loads(report.read_text())["delta"]["tasks"]["first_ids"]["updated"] == [7]
    assert pg_query(pg_url, "SELECT due_date FROM tasks WHERE id = 7")[0][0] == datetime(
        2023, 11, 14, 22, 13, 20, 123457
    )
    # Read with another unit the unchanged row converts otherwise (here: to a value with more than
    # microseconds, refused): the fingerprints, taken for seconds, do not hide it.
    dry = cli(db, pg_url, "--sync", "--epoch-unit", "milliseconds", "--dry-run")
    assert_failure(dry, None)
    assert ONLY_CHANGED_PARTS not in dry.stdout and "(ids 7)" in dry.stdout, explain(dry)


def test_a_blob_which_fingerprints_cannot_print_is_still_found(migrated_db: Path, pg_url: str) -> None:
    """json_array refuses a BLOB: that table is compared whole instead, and the value is refused
    (or rejected) as a migration would."""
    src = sqlite3.connect(migrated_db, isolation_level=None)
    src.execute("UPDATE tasks SET title = x'414243' WHERE id = 12")
    src.close()
    result = cli(migrated_db, pg_url, "--sync")
    assert_failure(result, None)
    assert "binary_in_text_column" in result.stdout and "ids 12" in result.stdout, explain(result)
    rejects = migrated_db.parent / "rejects.jsonl"
    ok(migrated_db, pg_url, "--sync", "--on-invalid", "skip", "--rejects", str(rejects))
    rejected = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["table"], r["id"]) for r in rejected if r["kind"] == "binary_in_text_column"] == [
        ("tasks", 12)
    ]
    compare(migrated_db, pg_url, rejects=rejects)  # with the rows that needed task 12


def test_a_migration_leaves_no_fingerprints_to_trust(migrated_db: Path, pg_url: str) -> None:
    ok(migrated_db, pg_url, "--force-recreate", "--yes")
    assert fingerprinted(pg_url) == []
    result = ok(migrated_db, pg_url, "--sync")
    assert NOTHING in result.stdout and ONLY_CHANGED_PARTS not in result.stdout, explain(result)


def test_a_deleted_id_used_again_is_an_update(migrated_db: Path, pg_url: str, tmp_path: Path) -> None:
    src = sqlite3.connect(migrated_db, isolation_level=None)
    (top,) = src.execute("SELECT max(id) FROM tasks").fetchone()
    src.execute("DELETE FROM recurring_patterns WHERE task_id = ?", (top,))
    src.execute("DELETE FROM tasks WHERE id = ?", (top,))
    # Without AUTOINCREMENT, SQLite hands the highest id out again: a new task, the old id.
    src.execute(
        "INSERT INTO tasks (title, completed, priority, user_id, is_recurring, created_at) "
        "VALUES ('reborn', 0, 'medium', 1, 0, '2026-11-25 10:00:00.000000')"
    )
    assert src.execute("SELECT max(id) FROM tasks").fetchone()[0] == top
    src.close()
    report = report_of(tmp_path)
    ok(migrated_db, pg_url, "--sync", "--report", str(report))
    delta = json.loads(report.read_text())["delta"]["tasks"]
    assert top in delta["first_ids"]["updated"]
    assert pg_query(pg_url, "SELECT title FROM tasks WHERE id = %s", (top,)) == [("reborn",)]
    compare(migrated_db, pg_url)


def test_a_sync_with_nothing_to_do_writes_nothing(migrated_db: Path, pg_url: str) -> None:
    before = target_state(pg_url)
    result = ok(migrated_db, pg_url, "--sync")
    assert NOTHING in result.stdout, explain(result)
    assert target_state(pg_url) == before


def test_rows_that_need_converting_are_converted(migrated_db: Path, pg_url: str) -> None:
    """A changed row the values check doubts (an ISO datetime with 'T', a boolean as text) takes
    the exact path: converted as a migration converts it."""
    src = sqlite3.connect(migrated_db, isolation_level=None)
    src.execute("UPDATE tasks SET due_date = '2027-01-02T03:04:05Z', completed = 'true' WHERE id = 9")
    src.close()
    result = ok(migrated_db, pg_url, "--sync")
    assert SYNCED in result.stdout, explain(result)
    assert pg_query(pg_url, "SELECT due_date, completed FROM tasks WHERE id = 9") == [
        (datetime(2027, 1, 2, 3, 4, 5), True)
    ]
    compare(migrated_db, pg_url)


def test_another_todo_db_than_last_time_is_said_before_anything_changes(
    migrated_db: Path, pg_url: str, tmp_path: Path
) -> None:
    """A backup given by mistake would roll PostgreSQL back: the sync says which file it read last
    time and which now (dry run and real run); it applies the changes only when confirmed: on a
    terminal by a 'yes', in a script by --yes (a warning alone let a wrong file empty PostgreSQL)."""
    backup = tmp_path / "todo.db.bak"
    shutil.copyfile(migrated_db, backup)
    src = sqlite3.connect(backup, isolation_level=None)
    src.execute("UPDATE tasks SET title = 'as the backup has it' WHERE id = 9")
    src.execute("DELETE FROM recurring_patterns WHERE id = 1")
    src.close()
    for args in (["--dry-run", "--quiet"], ["--dry-run"]):  # a scripted (--quiet) run sees it too
        result = ok(backup, pg_url, "--sync", *args)
        assert f"the last migrate/sync read {migrated_db.resolve()}" in result.stderr, explain(result)
    before = target_state(pg_url)
    line = assert_failure(
        cli(backup, pg_url, "--sync"), 2, "is not the file the last migrate/sync read", "1 rows deleted"
    )
    assert "--yes" in line
    argv = ["--sync", "--sqlite-path", str(backup), "--postgres-url", pg_url]
    code, output = run_on_terminal(argv, "no")
    assert code == 1 and "not confirmed" in output, output
    assert target_state(pg_url) == before
    code, output = run_on_terminal(argv, "yes")
    assert code == 0 and "Make PostgreSQL equal to" in output, output
    compare(backup, pg_url)
    again = ok(backup, pg_url, "--sync")  # the ledger now names the file confirmed
    assert "the last migrate/sync read" not in again.stdout + again.stderr, explain(again)
    ok(migrated_db, pg_url, "--sync", "--yes")  # back to the app's file, by a script
    compare(migrated_db, pg_url)


def test_another_epoch_unit_than_last_time_is_said_and_needs_consent(tmp_path: Path, pg_url: str) -> None:
    """Migrated with --epoch-unit seconds, synced at the cutover with milliseconds by mistake:
    every epoch timestamp would move to 1970 and each row look simply updated. Said before any
    change (dry run included), applied only with --yes (or 'yes' on a terminal); without the
    flag, the epoch numbers are refused as in a migration."""
    db = make_todo_db(tmp_path / "todo.db", tasks=60, users=4, patterns=5)
    src = sqlite3.connect(db, isolation_level=None)
    src.execute("UPDATE tasks SET due_date = 1714550400 WHERE id IN (3, 4)")
    src.close()
    ok(db, pg_url, "--epoch-unit", "seconds")
    said = "the last migrate/sync read epoch numbers as seconds (--epoch-unit seconds)"
    result = ok(db, pg_url, "--sync", "--epoch-unit", "milliseconds", "--dry-run", "--quiet")
    assert said in result.stderr, explain(result)
    before = target_state(pg_url)
    line = assert_failure(cli(db, pg_url, "--sync", "--epoch-unit", "milliseconds"), 2, "2 rows", "--yes")
    assert "--epoch-unit seconds" in line
    result = cli(db, pg_url, "--sync")
    assert_failure(result, 1, "epoch_number", "--epoch-unit")
    assert target_state(pg_url) == before
    result = ok(db, pg_url, "--sync", "--epoch-unit", "seconds")  # the same unit: nothing said, nothing to do
    assert "epoch numbers" not in result.stderr and NOTHING in result.stdout, explain(result)
    ok(db, pg_url, "--sync", "--epoch-unit", "milliseconds", "--yes")
    assert pg_query(pg_url, "SELECT due_date::text FROM tasks WHERE id = 3") == [("1970-01-20 20:15:50.4",)]
    result = ok(db, pg_url, "--sync", "--epoch-unit", "milliseconds")  # recorded: the unit now
    assert "epoch numbers" not in result.stderr and NOTHING in result.stdout, explain(result)


def test_a_bad_value_is_refused_or_rejected_as_in_a_migration(
    migrated_db: Path, pg_url: str, tmp_path: Path
) -> None:
    src = sqlite3.connect(migrated_db, isolation_level=None)
    src.execute("UPDATE tasks SET title = ? WHERE id = 11", ("x" * 300,))  # title is String(255)
    src.close()
    before = target_state(pg_url)
    result = cli(migrated_db, pg_url, "--sync")
    assert_failure(result, 1, "would refuse", "--on-invalid skip")
    assert "too_long" in result.stdout and "tasks.title" in result.stdout, explain(result)
    assert target_state(pg_url) == before
    rejects = tmp_path / "rejects.jsonl"
    result = ok(migrated_db, pg_url, "--sync", "--on-invalid", "skip", "--rejects", str(rejects))
    assert SYNCED in result.stdout and re.search(r"todo\.db less \d+ rejected rows?, in ", result.stdout), (
        explain(result)
    )
    compare(migrated_db, pg_url, rejects=rejects)
    # Edited again, still too long: nothing changes in PostgreSQL (the row is still set aside), but
    # the rejects file is this run's, holding the row as todo.db has it now.
    src = sqlite3.connect(migrated_db, isolation_level=None)
    src.execute("UPDATE tasks SET title = ? WHERE id = 11", ("y" * 300,))
    src.close()
    result = ok(migrated_db, pg_url, "--sync", "--on-invalid", "skip", "--rejects", str(rejects))
    assert NOTHING in result.stdout, explain(result)
    assert "y" * 300 in rejects.read_text() and "x" * 300 not in rejects.read_text()
    compare(migrated_db, pg_url, rejects=rejects)


@pytest.mark.parametrize("row_id", [2**63 - 1, 2**63 - 4000, 2**31])
def test_an_id_beyond_postgresqls_integer_is_refused_or_rejected_as_in_a_migration(
    migrated_db: Path, pg_url: str, tmp_path: Path, row_id: int
) -> None:
    """An id near SQLite's largest rowid (2**63 - 1) ends the last range of ids: its bounds must
    stay within 64 bits, and the row must be found, not silently passed over."""
    src = sqlite3.connect(migrated_db, isolation_level=None)
    src.execute(
        "INSERT INTO tasks (id, title, completed, priority, user_id, is_recurring, created_at, updated_at) "
        "SELECT ?, 'huge id', 0, 'low', min(id), 0, '2024-01-01 00:00:00.000000', '2024-01-01 00:00:00.000000' "
        "FROM users",
        (row_id,),
    )
    src.close()
    before = target_state(pg_url)
    for args in (("--sync", "--dry-run"), ("--sync",)):
        result = cli(migrated_db, pg_url, *args)
        assert_failure(result, 1, "integer_out_of_range", "--on-invalid skip")
        assert "Traceback" not in result.stderr and "unexpected" not in result.stderr, explain(result)
    assert target_state(pg_url) == before
    rejects = tmp_path / "rejects.jsonl"
    ok(migrated_db, pg_url, "--sync", "--on-invalid", "skip", "--rejects", str(rejects))
    assert [json.loads(line)["id"] for line in rejects.read_text().splitlines()] == [row_id]
    compare(migrated_db, pg_url, rejects=rejects)


def test_the_ledger_is_written_with_the_data_and_only_then(tmp_path: Path, pg_url: str) -> None:
    db = make_todo_db(tmp_path / "todo.db")
    src = sqlite3.connect(db, isolation_level=None)
    src.execute("UPDATE tasks SET title = ? WHERE id = 2", ("x" * 300,))
    src.close()
    assert_failure(cli(db, pg_url), 1, "would refuse")
    assert pg_query(pg_url, "SELECT to_regclass('todo_migration_ledger')") == [(None,)]
    ok(db, pg_url, "--on-invalid", "skip", "--rejects", str(tmp_path / "rejects.jsonl"))
    rows = pg_query(pg_url, "SELECT table_name, rows, job FROM todo_migration_ledger ORDER BY 1")
    assert rows == [("recurring_patterns", 3, "migrate"), ("tasks", 22, "migrate"), ("users", 5, "migrate")]
    writers = pg_query(pg_url, "SELECT DISTINCT xmin::text::bigint FROM tasks")
    assert pg_query(pg_url, "SELECT DISTINCT unnest(xids) FROM todo_migration_ledger") == writers


def test_a_new_row_without_its_parent_is_refused_or_rejected(
    migrated_db: Path, pg_url: str, tmp_path: Path
) -> None:
    """The values check passes the row; PostgreSQL's foreign key refuses it; the exact pre-flight
    then names it (fail) or sets it aside with its children (skip), as in a migration."""
    src = sqlite3.connect(migrated_db, isolation_level=None)  # the app runs without foreign keys on
    src.execute(
        "INSERT INTO tasks (id, title, completed, priority, user_id, is_recurring, created_at) "
        "VALUES (9001, 'orphan', 0, 'low', 4242, 0, '2026-11-25 10:00:00.000000')"
    )
    src.execute(
        "INSERT INTO recurring_patterns (task_id, user_id, frequency, interval, is_active, created_at) "
        "VALUES (9001, 1, 'daily', 1, 1, '2026-11-25 10:00:00.000000')"
    )
    src.close()
    before = target_state(pg_url)
    result = cli(migrated_db, pg_url, "--sync")
    assert_failure(result, 1, "would refuse")
    assert "9001" in result.stdout, explain(result)
    assert target_state(pg_url) == before
    rejects = tmp_path / "rejects.jsonl"
    ok(migrated_db, pg_url, "--sync", "--on-invalid", "skip", "--rejects", str(rejects))
    compare(migrated_db, pg_url, rejects=rejects)
    assert pg_query(pg_url, "SELECT count(*) FROM tasks WHERE id = 9001") == [(0,)]


def test_a_row_left_naming_a_deleted_parent_is_refused_or_rejected(
    migrated_db: Path, pg_url: str, tmp_path: Path
) -> None:
    """SQLite without foreign keys on deletes a task but leaves its subtask and its pattern naming
    it. PostgreSQL would set the subtask's parent to NULL and delete the pattern, rows todo.db has
    unchanged, which no compare would look at: they are orphans, refused or rejected as in a
    migration, never silently changed."""
    src = sqlite3.connect(migrated_db, isolation_level=None)
    (parent,) = src.execute("SELECT task_id FROM recurring_patterns ORDER BY id LIMIT 1").fetchone()
    child = src.execute("SELECT max(id) FROM tasks").fetchone()[0]
    src.execute("UPDATE tasks SET parent_task_id = ? WHERE id = ?", (parent, child))
    src.close()
    ok(migrated_db, pg_url, "--sync")  # the subtask arrives with its parent
    src = sqlite3.connect(migrated_db, isolation_level=None)  # foreign keys off, as the app has them
    src.execute("DELETE FROM tasks WHERE id = ?", (parent,))
    src.close()
    before = target_state(pg_url)
    result = cli(migrated_db, pg_url, "--sync")
    assert_failure(result, 1, "would refuse")
    assert "still name rows deleted" in result.stdout and "missing_parent" in result.stdout, explain(result)
    assert f"ids {child}" in result.stdout or f"{child}" in result.stdout, explain(result)
    assert target_state(pg_url) == before
    rejects = tmp_path / "rejects.jsonl"
    ok(migrated_db, pg_url, "--sync", "--on-invalid", "skip", "--rejects", str(rejects))
    compare(migrated_db, pg_url, rejects=rejects)
    rejected = {(r["table"], r["id"]) for r in map(json.loads, rejects.read_text().splitlines())}
    assert ("tasks", child) in rejected and any(t == "recurring_patterns" for t, _ in rejected), rejected


def test_swapped_unique_values_are_applied(migrated_db: Path, pg_url: str) -> None:
    """Two users swap emails, three rotate usernames: valid in todo.db at every commit, and a
    row-by-row upsert would collide with the unique indexes on the way."""
    src = sqlite3.connect(migrated_db, isolation_level=None)
    (a, ea), (b, eb) = src.execute("SELECT id, email FROM users ORDER BY id LIMIT 2").fetchall()
    src.execute("UPDATE users SET email = 'swap@example.com' WHERE id = ?", (a,))
    src.execute("UPDATE users SET email = ? WHERE id = ?", (ea, b))
    src.execute("UPDATE users SET email = ? WHERE id = ?", (eb, a))
    users = src.execute("SELECT id, username FROM users ORDER BY id LIMIT 3 OFFSET 3").fetchall()
    for (uid, _), (_, name) in zip(users, users[1:] + users[:1], strict=True):
        src.execute("UPDATE users SET username = ? || '#' WHERE id = ?", (name, uid))
    for uid, _ in users:
        src.execute("UPDATE users SET username = rtrim(username, '#') WHERE id = ?", (uid,))
    src.close()
    result = ok(migrated_db, pg_url, "--sync")
    assert SYNCED in result.stdout and "checking every value" not in result.stdout, explain(result)
    assert pg_query(pg_url, "SELECT email FROM users WHERE id = %s", (a,)) == [(eb,)]
    compare(migrated_db, pg_url)


def test_strip_nul_syncs_as_it_migrates(tmp_path: Path, pg_url: str) -> None:
    """With --strip-nul, text holding a NUL byte went in stripped; unchanged, it is equal (nothing
    to do), and changed, it goes in stripped again."""
    db = make_todo_db(tmp_path / "todo.db", tasks=60, users=3, patterns=3)
    src = sqlite3.connect(db, isolation_level=None)
    src.execute("UPDATE tasks SET title = 'ab' || char(0) || 'cd' WHERE id = 7")
    src.close()
    ok(db, pg_url, "--strip-nul")
    result = ok(db, pg_url, "--sync", "--strip-nul")
    assert NOTHING in result.stdout, explain(result)
    src = sqlite3.connect(db, isolation_level=None)
    src.execute("UPDATE tasks SET title = 'ef' || char(0) || 'gh', completed = 1 - completed WHERE id = 7")
    src.close()
    assert SYNCED in ok(db, pg_url, "--sync", "--strip-nul", "--dry-run").stdout.replace(
        "Dry run passed", SYNCED
    )
    result = ok(db, pg_url, "--sync", "--strip-nul")
    assert SYNCED in result.stdout, explain(result)
    assert pg_query(pg_url, "SELECT title FROM tasks WHERE id = 7") == [("efgh",)]
    assert NOTHING in ok(db, pg_url, "--sync", "--strip-nul").stdout


def test_a_row_to_convert_and_a_row_without_its_parent_together(migrated_db: Path, pg_url: str) -> None:
    """The exact pre-flight runs once: it converts the one and names the other."""
    src = sqlite3.connect(migrated_db, isolation_level=None)
    src.execute("UPDATE tasks SET completed = 'yes' WHERE id = 12")
    src.execute(
        "INSERT INTO tasks (id, title, completed, priority, user_id, is_recurring, created_at) "
        "VALUES (9002, 'orphan', 0, 'low', 4243, 0, '2026-11-25 10:00:00.000000')"
    )
    src.close()
    result = cli(migrated_db, pg_url, "--sync")
    assert_failure(result, 1, "would refuse")
    assert "9002" in result.stdout, explain(result)


# --- someone else wrote to PostgreSQL ----------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE tasks SET title = 'changed in production' WHERE id = 3",
        "DELETE FROM recurring_patterns WHERE id = (SELECT min(id) FROM recurring_patterns)",
        "INSERT INTO users (email, username, hashed_password, is_active, created_at) "
        "VALUES ('prod@example.com', 'prod', 'h', true, now())",
    ],
    ids=["update", "delete", "insert"],
)
def test_a_target_changed_behind_the_tools_back_is_refused(
    migrated_db: Path, pg_url: str, statement: str
) -> None:
    pg_query(pg_url, statement, autocommit=True)
    table = statement.split()[2] if statement.startswith(("INSERT", "DELETE")) else statement.split()[1]
    before = target_state(pg_url)
    for args in (["--sync"], ["--sync", "--dry-run"]):
        result = cli(migrated_db, pg_url, *args)
        line = assert_failure(result, 1, "changed since the last migrate/sync", table, "--overwrite-changes")
        assert "nothing was changed" in line
    assert target_state(pg_url) == before

    result = ok(migrated_db, pg_url, "--sync", "--overwrite-changes")
    assert "--overwrite-changes" in result.stdout
    compare(migrated_db, pg_url)
    again = ok(migrated_db, pg_url, "--sync")
    assert NOTHING in again.stdout, explain(again)


def test_a_failed_sync_never_moves_a_sequence_back(migrated_db: Path, pg_url: str) -> None:
    """setval is not rolled back: a sync that deletes the highest ids and then fails after applying
    them (here its ledger write waits on a lock another session holds, past --lock-timeout) must not
    leave the sequence behind rows PostgreSQL still holds, or the app's next insert fails on a
    duplicate key."""
    top = pg_query(pg_url, "SELECT max(id) FROM tasks")[0][0]
    src = sqlite3.connect(migrated_db, isolation_level=None)
    src.execute("DELETE FROM recurring_patterns WHERE task_id >= ?", (top - 1,))
    src.execute("UPDATE tasks SET parent_task_id = NULL WHERE parent_task_id >= ?", (top - 1,))
    src.execute("DELETE FROM tasks WHERE id >= ?", (top - 1,))
    src.execute("UPDATE tasks SET title = 'lower case' WHERE id = 5")
    src.close()
    before = target_state(pg_url)
    holder = psycopg2.connect(pg_url)
    try:
        with holder.cursor() as cur:  # reads go on; the sync's write to the ledger waits
            cur.execute(f"LOCK TABLE {LEDGER} IN SHARE MODE")
        result = cli(migrated_db, pg_url, "--sync", "--lock-timeout", "2s")
    finally:
        holder.rollback()
        holder.close()
    assert_failure(result, 1, "timed out", "nothing was changed")
    assert "Applying the changes" in result.stdout, explain(result)  # it failed after applying them
    assert target_state(pg_url) == before
    nxt = pg_query(
        pg_url,
        "INSERT INTO tasks (title, user_id, created_at) VALUES ('app', 1, now()) RETURNING id",
        autocommit=True,
    )[0][0]
    assert nxt > top


def test_a_user_granted_less_than_a_sync_needs_is_told_the_grants(tmp_path: Path, pg_server, pg_db) -> None:
    """The app's own role, given the tables but not UPDATE on the sequences: the dry run says which
    GRANTs are missing (it passed, and the real sync failed advising GRANT CREATE ON SCHEMA); with
    them, a sync with many deletes works without owning the tables (no temporary index then)."""
    db = make_todo_db(tmp_path / "todo.db", tasks=200, users=8, patterns=10)
    owner_url = pg_server.url(pg_db)
    ok(db, owner_url)
    role = f"app_{uuid.uuid4().hex[:8]}"
    pg_server.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'app-pw'")
    try:
        pg_server.execute(
            f"GRANT USAGE ON SCHEMA public TO {role}; "
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}; "
            f"GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
            pg_db,
        )
        src = sqlite3.connect(db, isolation_level=None)
        src.execute("DELETE FROM recurring_patterns")
        src.execute("UPDATE tasks SET parent_task_id = NULL")
        src.execute("DELETE FROM tasks WHERE id <= 20")
        src.close()
        url = pg_server.url(pg_db, user=role, password="app-pw")
        before = target_state(owner_url)
        for extra in (["--dry-run"], []):
            line = assert_failure(
                cli(db, url, "--sync", *extra), 1, "lacks what a sync needs", "UPDATE on sequence"
            )
            assert "GRANT SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA" in line and "app-pw" not in line
            assert "CREATE ON SCHEMA" not in line
        assert target_state(owner_url) == before
        pg_server.execute(f"GRANT SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role}", pg_db)
        ok(db, url, "--sync")
        compare(db, owner_url)
        line = assert_failure(cli(db, url, "--force-recreate", "--yes"), 1, "only the owner of", "OWNER TO")
        assert "CREATE ON SCHEMA" not in line
    finally:
        pg_server.execute(f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)')
        pg_server.execute(f"DROP ROLE {role}")


def test_a_sequence_set_back_is_moved_on_and_said_so(migrated_db: Path, pg_url: str) -> None:
    """Rows equal, a sequence behind (someone ran setval): the sync moves it past max(id) and says
    it wrote that, not "nothing written"; the next sync then has nothing to do."""
    pg_query(pg_url, "SELECT setval(pg_get_serial_sequence('tasks', 'id'), 5)", autocommit=True)
    result = ok(migrated_db, pg_url, "--sync")
    assert "id sequences and the ledger were brought up to date" in result.stdout, explain(result)
    assert "nothing written" not in result.stdout
    top = pg_query(pg_url, "SELECT max(id) FROM tasks")[0][0]
    assert pg_query(pg_url, "SELECT nextval(pg_get_serial_sequence('tasks', 'id'))")[0][0] > top
    again = ok(migrated_db, pg_url, "--sync")
    assert NOTHING in again.stdout and "nothing written" in again.stdout, explain(again)


def test_sync_with_allow_drift_fills_a_missing_column_as_a_migration_does(
    tmp_path: Path, pg_url: str
) -> None:
    """todo.db of an older app without tasks.priority (NOT NULL, default 'medium'): migrated with
    --allow-drift, then synced; a new row takes the default, an updated one keeps its value."""
    db = make_todo_db(tmp_path / "todo.db", tasks=40, users=4, patterns=3)
    src = sqlite3.connect(db, isolation_level=None)
    src.execute("ALTER TABLE tasks DROP COLUMN priority")
    src.close()
    ok(db, pg_url, "--allow-drift")
    pg_query(
        pg_url, "UPDATE tasks SET priority = 'high' WHERE id = 3", autocommit=True
    )  # hence --overwrite-changes
    src = sqlite3.connect(db, isolation_level=None)
    src.execute("UPDATE tasks SET title = 'edited' WHERE id = 3")
    src.execute(
        "INSERT INTO tasks (title, completed, user_id, is_recurring, created_at) "
        "VALUES ('new', 0, 1, 0, '2026-11-26 09:00:00.000000')"
    )
    new_id = src.execute("SELECT max(id) FROM tasks").fetchone()[0]
    src.close()
    ok(db, pg_url, "--sync", "--allow-drift", "--overwrite-changes", "--dry-run")
    result = ok(db, pg_url, "--sync", "--allow-drift", "--overwrite-changes")
    assert SYNCED in result.stdout, explain(result)
    rows = dict(pg_query(pg_url, f"SELECT id, priority || ' ' || title FROM tasks WHERE id IN (3, {new_id})"))
    assert rows == {3: "high edited", new_id: "medium new"}


@pytest.mark.parametrize(
    ("rule", "named"),
    [
        (
            "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN NEW.updated_at := now(); "
            "RETURN NEW; END'; CREATE TRIGGER tasks_touch BEFORE UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION touch()",
            "trigger tasks_touch",
        ),
        (
            "ALTER TABLE tasks ADD CONSTRAINT prio_chk CHECK (priority <> 'someday') NOT VALID",
            "check constraint prio_chk",
        ),
        ("CREATE UNIQUE INDEX users_email_ci ON users (lower(email))", "unique index users_email_ci"),
    ],
    ids=["trigger", "check", "unique-expression-index"],
)
def test_rules_beyond_the_models_in_postgresql_refuse_the_sync_and_its_dry_run(
    migrated_db: Path, pg_url: str, rule: str, named: str
) -> None:
    """The dry run passed, then the real sync failed ('should not happen', or a bare refusal)."""
    pg_query(pg_url, rule, autocommit=True)
    src = sqlite3.connect(migrated_db, isolation_level=None)
    src.execute("UPDATE tasks SET description = 'changed', priority = 'someday' WHERE id = 11")
    src.close()
    before = target_state(pg_url)
    for args in (["--dry-run"], []):
        line = assert_failure(cli(migrated_db, pg_url, "--sync", *args), 1, "models.py does not make", named)
        assert "--force-recreate" in line and "should not happen" not in line
    assert target_state(pg_url) == before


def test_a_delete_balanced_by_an_insert_is_named_as_both(migrated_db: Path, pg_url: str) -> None:
    """The row count alone would not show it: one pattern deleted, one inserted by someone else."""
    pg_query(
        pg_url,
        "INSERT INTO recurring_patterns (id, task_id, user_id, frequency, interval, is_active, created_at) "
        "SELECT max(id) + 1, min(task_id), min(user_id), 'daily', 1, true, now() FROM recurring_patterns",
        autocommit=True,
    )
    pg_query(
        pg_url,
        "DELETE FROM recurring_patterns WHERE id = (SELECT min(id) FROM recurring_patterns)",
        autocommit=True,
    )
    assert_failure(
        cli(migrated_db, pg_url, "--sync"),
        1,
        "recurring_patterns: 1 row inserted or updated by someone else, 1 of the rows left deleted or updated",
    )


def test_a_target_without_a_ledger_is_refused(migrated_db: Path, pg_url: str) -> None:
    """Migrated by an older version, or by hand: nothing says what was left there."""
    pg_query(pg_url, "DROP TABLE todo_migration_ledger", autocommit=True)
    assert_failure(cli(migrated_db, pg_url, "--sync"), 1, "no record", "--overwrite-changes")
    ok(migrated_db, pg_url, "--sync", "--overwrite-changes")
    assert NOTHING in ok(migrated_db, pg_url, "--sync").stdout


def test_sync_needs_a_migrated_target(tmp_path: Path, pg_url: str) -> None:
    db = make_todo_db(tmp_path / "todo.db")
    assert_failure(cli(db, pg_url, "--sync"), 1, "run the migration first")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--sync", "--force-recreate"], "--force-recreate"),
        (["--sync", "--verify-only"], "--verify-only"),
        (["--sync", "--no-verify"], "--no-verify"),
        (["--overwrite-changes"], "--sync"),
        (["--sync", "--reverse", "--strip-nul"], "--strip-nul"),
    ],
)
def test_flags_that_make_no_sense_with_sync(
    tmp_path: Path, pg_url: str, args: list[str], needle: str
) -> None:
    db = make_todo_db(tmp_path / "todo.db")
    assert_failure(cli(db, pg_url, *args), 2, needle)


# --- a sync that is stopped, and an app that keeps writing --------------------------------------


def test_a_killed_sync_leaves_the_target_as_it_was_and_a_rerun_converges(tmp_path: Path, pg_url: str) -> None:
    db = make_todo_db(tmp_path / "todo.db", tasks=60_000)
    ok(db, pg_url)
    src = sqlite3.connect(db, isolation_level=None)
    src.execute("UPDATE tasks SET title = title || ' (changed)' WHERE id % 3 = 0")
    src.close()
    before = target_state(pg_url)
    # Readers may read the ledger, nobody may write it: the sync compares, applies every change
    # and verifies, then waits to record the ledger, its last step before COMMIT. Killed there.
    blocker = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, psycopg2; c = psycopg2.connect(sys.argv[1]); c.cursor().execute("
            "'LOCK TABLE todo_migration_ledger IN SHARE MODE'); print('locked', flush=True); sys.stdin.read()"
        ), pg_url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert blocker.stdout.readline().strip() == "locked"
        sync = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--sqlite-path", str(db), "--postgres-url", pg_url, "--sync",
             "--lock-timeout", "10min"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE 'INSERT INTO%todo_migration_ledger%'"
        )
        assert wait_for(lambda: pg_query(pg_url, waiting)[0][0] == 1)
        sync.send_signal(signal.SIGKILL)
        sync.wait()
    finally:
        blocker.stdin.close()
        blocker.wait()
    assert target_state(pg_url) == before
    result = ok(db, pg_url, "--sync")
    assert SYNCED in result.stdout, explain(result)
    compare(db, pg_url)


def test_runbook_with_the_app_writing_throughout(tmp_path: Path, pg_url: str) -> None:
    """The cutover runbook: migrate and sync while the app writes to a WAL todo.db, stop the app,
    one last sync; PostgreSQL then equals todo.db, value for value."""
    db = make_todo_db(tmp_path / "todo.db", tasks=3_000, users=20, patterns=100)
    stop = tmp_path / "stop-writing"
    writer = subprocess.Popen(
        [sys.executable, str(WRITER), str(db), str(stop)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:

        def progressed(by: int) -> None:
            start = int(writer.stdout.readline())
            while int(writer.stdout.readline()) < start + by:
                pass

        progressed(5)
        ok(db, pg_url, "--dry-run")
        ok(db, pg_url)  # migrate while the app runs: one WAL snapshot
        for _ in range(3):
            progressed(20)
            result = ok(db, pg_url, "--sync")
            assert SYNCED in result.stdout or NOTHING in result.stdout, explain(result)
        stop.touch()
        assert wait_for(lambda: writer.stdout.readline().strip() == "stopped")
        assert writer.wait(timeout=600) == 0
    finally:
        stop.touch()
        if writer.poll() is None:
            writer.kill()
    final = ok(db, pg_url, "--sync")
    assert SYNCED in final.stdout, explain(final)
    compare(db, pg_url)
    assert NOTHING in ok(db, pg_url, "--sync").stdout
    assert not Path(f"{db}-journal").exists()


# --- the way back: --reverse --sync brings a todo.db up to date with PostgreSQL ------------------


def back(url: str, dest: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli("--reverse", "--postgres-url", url, "--sqlite-path", str(dest), *args, timeout=600)


def back_ok(url: str, dest: Path, *args: str) -> subprocess.CompletedProcess:
    result = back(url, dest, *args)
    assert result.returncode == 0, explain(result)
    assert "Traceback" not in result.stdout + result.stderr
    return result


def assert_file_equals_postgres(dest: Path, url: str) -> None:
    assert_app_schema(dest)
    assert_same(sqlite_dump(dest), pg_as_sqlite(url), "todo.db", "PostgreSQL")


@pytest.fixture
def exported_db(migrated_db: Path, pg_url: str, tmp_path: Path) -> Path:
    dest = tmp_path / "back" / "todo.db"
    dest.parent.mkdir()
    back_ok(pg_url, dest)
    return dest


def test_reverse_sync_brings_todo_db_up_to_date(exported_db: Path, pg_url: str, tmp_path: Path) -> None:
    dest = exported_db
    pg_query(
        pg_url,
        "UPDATE tasks SET title = 'it''s new', description = E'two\\nlines, ''quoted''', completed = true, "
        "due_date = due_date + interval '1 microsecond' WHERE id = 7; "
        "DELETE FROM tasks WHERE id = (SELECT task_id FROM recurring_patterns ORDER BY id LIMIT 1); "
        "INSERT INTO users (email, username, hashed_password, is_active, created_at) "
        "VALUES ('back@example.com', 'back', 'h', true, '2026-11-25 10:00:00'); "
        "INSERT INTO tasks (title, user_id, parent_task_id, created_at) "
        "VALUES ('subtask', (SELECT max(id) FROM users), 7, '2026-11-25 10:00:00.5')",
        autocommit=True,
    )
    before = file_digest(dest)
    dry = back_ok(pg_url, dest, "--sync", "--dry-run")
    assert "Dry run passed" in dry.stdout, explain(dry)
    assert file_digest(dest) == before
    report = tmp_path / "back.json"
    result = back_ok(pg_url, dest, "--sync", "--report", str(report))
    assert "todo.db now equals PostgreSQL" in result.stdout, explain(result)
    assert_file_equals_postgres(dest, pg_url)
    delta = json.loads(report.read_text())["delta"]
    assert delta["users"]["inserted"] == 1 and delta["tasks"]["inserted"] == 1
    assert 7 in delta["tasks"]["first_ids"]["updated"] and delta["recurring_patterns"]["deleted"] >= 1
    after = file_digest(dest)
    again = back_ok(pg_url, dest, "--sync")
    assert "todo.db already equals PostgreSQL" in again.stdout, explain(again)
    assert file_digest(dest) == after, "a sync with nothing to do wrote to todo.db"
    back_ok(pg_url, dest, "--verify-only")


def test_reverse_sync_applies_swapped_unique_values(exported_db: Path, pg_url: str) -> None:
    (e1,), (e2,) = pg_query(pg_url, "SELECT email FROM users WHERE id IN (1, 2) ORDER BY id")
    pg_query(
        pg_url,
        "BEGIN; UPDATE users SET email = 'swap' WHERE id = 1; UPDATE users SET email = %s WHERE id = 2; "
        "UPDATE users SET email = %s WHERE id = 1; COMMIT",
        (e1, e2),
        autocommit=True,
    )
    before = pg_query(pg_url, "SELECT email FROM users WHERE id = 2")
    back_ok(pg_url, exported_db, "--sync")
    src = sqlite3.connect(exported_db)
    assert src.execute("SELECT email FROM users WHERE id = 2").fetchall() == before
    src.close()
    assert_file_equals_postgres(exported_db, pg_url)


def test_reverse_sync_refuses_a_file_written_since(exported_db: Path, pg_url: str) -> None:
    src = sqlite3.connect(exported_db, isolation_level=None)
    src.execute("UPDATE tasks SET title = 'written by the app on SQLite' WHERE id = 4")
    src.close()
    before = file_digest(exported_db)
    line = assert_failure(
        back(pg_url, exported_db, "--sync"), 1, "changed since the last export/sync", "tasks"
    )
    assert "--overwrite-changes" in line
    assert file_digest(exported_db) == before
    back_ok(pg_url, exported_db, "--sync", "--overwrite-changes")
    assert_file_equals_postgres(exported_db, pg_url)


def test_overwrite_changes_on_a_file_that_already_agrees_records_the_ledger(
    exported_db: Path, pg_url: str
) -> None:
    """Values equal, ledger gone: --overwrite-changes has nothing to apply but must still leave a
    ledger, or every later --reverse --sync would refuse it again."""
    src = sqlite3.connect(exported_db, isolation_level=None)
    src.execute("DROP TABLE todo_migration_ledger")
    src.close()
    assert_failure(back(pg_url, exported_db, "--sync"), 1, "not made by --reverse", "--overwrite-changes")
    back_ok(pg_url, exported_db, "--sync", "--overwrite-changes")
    before = file_digest(exported_db)
    again = back_ok(pg_url, exported_db, "--sync")
    assert "todo.db already equals PostgreSQL" in again.stdout, explain(again)
    assert file_digest(exported_db) == before


def test_reverse_sync_on_a_full_disk_leaves_todo_db_as_it_was(exported_db: Path, pg_url: str) -> None:
    """`ulimit -f` just above todo.db's size: the catch-up cannot grow the file, as on a full disk.
    One line that says so and that the file was left as it was; and it was."""
    pg_query(
        pg_url,
        "INSERT INTO tasks (title, description, user_id, created_at) "
        "SELECT 'bulk ' || n, repeat('x', 2000), 1, '2026-11-25 10:00:00' FROM generate_series(1, 2000) AS n",
        autocommit=True,
    )
    before = file_digest(exported_db)
    limit_kb = exported_db.stat().st_size // 1024 + 64
    argv = [
        sys.executable,
        str(SCRIPT),
        "--reverse",
        "--sync",
        "--postgres-url",
        pg_url,
        "--sqlite-path",
        str(exported_db),
    ]
    result = subprocess.run(
        ["bash", "-c", f'ulimit -f {limit_kb} && exec "$@"', "bash", *argv],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ENVIRONMENT")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    line = assert_failure(result, 1, "no room to write", "left as it was")
    assert "free space" in line.lower()
    assert file_digest(exported_db) == before, "todo.db changed"
    assert not Path(f"{exported_db}-journal").exists()
    back_ok(pg_url, exported_db, "--sync")
    assert_file_equals_postgres(exported_db, pg_url)


def test_reverse_sync_and_verify_only_check_the_files_schema(exported_db: Path, pg_url: str) -> None:
    """The values alone would pass: a todo.db without the unique index on users.email lets the
    app register the same email twice. Refused by the sync, failed by --verify-only, unchanged."""
    src = sqlite3.connect(exported_db, isolation_level=None)
    src.execute("DROP INDEX ix_users_email")
    src.execute("CREATE INDEX ix_users_email ON users (email)")  # same name, no longer unique
    src.close()
    before = file_digest(exported_db)
    for args in (["--sync"], ["--verify-only"]):
        result = back(pg_url, exported_db, *args)
        assert_failure(result, 1, "users: unique index on (email) missing", "--reverse --force-recreate")
        assert file_digest(exported_db) == before
    back_ok(pg_url, exported_db, "--force-recreate", "--yes")
    back_ok(pg_url, exported_db, "--sync")
    back_ok(pg_url, exported_db, "--verify-only")


def test_reverse_sync_says_when_postgresql_is_another_than_last_time(
    migrated_db: Path, exported_db: Path, pg_url: str
) -> None:
    """The export read schema public; the same rows migrated into another schema are another
    database to keep todo.db equal to: said, then done as told."""
    ok(migrated_db, pg_url, "--schema", "elsewhere")
    result = back_ok(pg_url, exported_db, "--sync", "--schema", "elsewhere")
    assert "the last export/sync read" in result.stderr and "(schema public)" in result.stderr, explain(
        result
    )
    same = back_ok(pg_url, exported_db, "--sync")
    assert "the last export/sync read" not in same.stdout + same.stderr, explain(same)


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        ("CREATE UNIQUE INDEX uq_task_title ON tasks (user_id, title)", "unique index on (user_id, title), which"),
        ("DROP INDEX ix_users_email; CREATE UNIQUE INDEX ix_users_email ON users (email COLLATE NOCASE)",
         "not in the default collation"),
        ("CREATE TRIGGER no_new_tasks BEFORE INSERT ON tasks BEGIN SELECT RAISE(ABORT, 'no'); END",
         "trigger no_new_tasks"),
    ],
    ids=["extra-unique", "nocase", "trigger"],
)  # fmt: skip
def test_what_a_file_has_beyond_the_apps_schema_and_would_refuse_its_writes_is_named(
    exported_db: Path, pg_url: str, statement: str, named: str
) -> None:
    src = sqlite3.connect(exported_db, isolation_level=None)
    src.executescript(statement)
    src.close()
    before = file_digest(exported_db)
    for args in (["--verify-only"], ["--sync"]):
        result = back(pg_url, exported_db, *args)
        assert_failure(result, 1, "schema differs", "--reverse --force-recreate")
        assert named in result.stdout, explain(result)  # every difference listed above the line
        assert file_digest(exported_db) == before


def test_reverse_sync_refuses_a_timestamp_the_app_cannot_keep(exported_db: Path, pg_url: str) -> None:
    """As the export: named by the dry run and the real run alike, todo.db unchanged."""
    pg_query(pg_url, "UPDATE tasks SET due_date = '10000-01-01' WHERE id = 4", autocommit=True)
    before = file_digest(exported_db)
    for args in (["--dry-run"], []):
        result = back(pg_url, exported_db, "--sync", *args)
        assert_failure(result, 1, "tasks id 4 due_date = 10000-01-01", "years 1 to 9999")
        assert file_digest(exported_db) == before


def test_reverse_sync_needs_an_exported_file_that_no_app_has_open(
    exported_db: Path, pg_url: str, tmp_path: Path
) -> None:
    assert_failure(back(pg_url, tmp_path / "absent.db", "--sync"), 2, "does not exist", "--reverse")
    with sqlite3.connect(exported_db) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    app = subprocess.Popen(  # the app, running on the file in WAL mode (idle: no transaction open)
        [sys.executable, "-c", HOLD_OPEN, str(exported_db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.stdout.readline().strip() == "holding"
        assert_failure(back(pg_url, exported_db, "--sync"), 2, "open in an app")
    finally:
        app.stdin.close()
        app.wait(timeout=60)
        app.stdout.close()
    # Read by a connection that could not remove its -wal (read-only: this tool's forward runs), the
    # file keeps an empty -wal and a -shm that no process holds: nothing has it open.
    reader = sqlite3.connect(f"file:{exported_db}?mode=ro", uri=True)
    reader.execute("SELECT count(*) FROM tasks").fetchone()
    reader.close()
    assert Path(f"{exported_db}-wal").exists()
    back_ok(pg_url, exported_db, "--sync")
    original = make_todo_db(tmp_path / "original.db", tasks=5)  # the app's own file: no ledger
    line = assert_failure(back(pg_url, original, "--sync"), 1, "not made by --reverse", "export afresh")
    assert "changed since the last export" not in line


def test_reverse_runbook_with_the_app_writing_to_postgresql(exported_db: Path, pg_url: str) -> None:
    """The way back while the app runs on PostgreSQL: catch up, catch up again, stop the app, one
    last catch-up; todo.db then equals PostgreSQL."""
    done = threading.Event()
    commits = [0]
    failure: list[BaseException] = []

    def app() -> None:
        conn = psycopg2.connect(pg_url)
        try:
            with conn.cursor() as cur:
                while not done.is_set():
                    n = commits[0]
                    cur.execute(
                        "INSERT INTO tasks (title, user_id, created_at, description) "
                        "VALUES (%s, 1, now(), %s)", (f"pg task {n}", "a\nb" if n % 2 else None),
                    )  # fmt: skip
                    cur.execute("UPDATE tasks SET completed = NOT completed WHERE id = %s", (n % 50 + 1,))
                    cur.execute(
                        "DELETE FROM tasks WHERE id = (SELECT max(id) FROM tasks) AND %s %% 5 = 0", (n,)
                    )
                    conn.commit()
                    commits[0] += 1
        except BaseException as exc:
            failure.append(exc)
        finally:
            conn.close()

    writer = threading.Thread(target=app, daemon=True)
    writer.start()
    try:
        for target in (10, 40, 80):
            assert wait_for(lambda target=target: commits[0] >= target or bool(failure))
            result = back_ok(pg_url, exported_db, "--sync")
            assert "equals PostgreSQL" in result.stdout, explain(result)
    finally:
        done.set()
        writer.join()
    assert not failure, failure
    back_ok(pg_url, exported_db, "--sync")
    assert_file_equals_postgres(exported_db, pg_url)
