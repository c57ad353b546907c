"""Issue 10, "Trust": real-world todo.db files and misuse, checked by an independent comparer.

Each test runs the CLI as a user does and judges the result with tests/compare.py (which reads both
databases itself and never uses the tool's own verification): every source row is in PostgreSQL,
value for value, or in the rejects file, exactly once. The files come from tests/realworld.py, made
the way real tools make them. Section numbers are the issue's classes.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import psutil
import psycopg2
import pytest
import realworld as rw
from compare import CompareResult, ComparisonError, compare, read_rejects
from conftest import (
    ROOT,
    SCRIPT,
    assert_failure,
    explain,
    pg_query,
    pg_tables,
    run_cli,
)
from dirty import make_dirty_db

from tools.make_todo_db import make_todo_db

MB = 1024 * 1024

# --- helpers ---------------------------------------------------------------------------------------


def migrate(db: Path, url: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_cli("--sqlite-path", str(db), "--postgres-url", url, *args, timeout=timeout)


SUMMARY = re.compile(
    r"^\s*(\w+)\s+read\s+([\d,]+)\s+(?:would write|written)\s+([\d,]+)\s+rejected\s+([\d,]+)", re.MULTILINE
)


def summary(stdout: str) -> dict[str, tuple[int, int, int]]:
    """The summary's "read N … written M … rejected K" lines: table -> (N, M, K)."""
    return {
        m[1].lower(): tuple(int(x.replace(",", "")) for x in m.groups()[1:]) for m in SUMMARY.finditer(stdout)
    }


def assert_summary_adds_up(stdout: str, result: CompareResult | None = None) -> None:
    lines = summary(stdout)
    assert lines, f"no summary lines in:\n{stdout[-3000:]}"
    for table, (read, written, rejected) in lines.items():
        assert read == written + rejected, f"{table}: read {read} != written {written} + rejected {rejected}"
    if result is not None:
        for name, t in result.tables.items():
            if t.source_rows:
                assert name in lines, f"no summary line for {name}"
            if name in lines:
                assert lines[name] == (t.source_rows, t.in_pg, t.rejected), (
                    f"{name}: summary says read/written/rejected {lines[name]}, the comparer counted "
                    f"{(t.source_rows, t.in_pg, t.rejected)}"
                )


def check(
    result: subprocess.CompletedProcess,
    db: Path,
    url: str,
    *,
    rejects: Path | None = None,
    epoch_unit: str | None = None,
    schema: str = "public",
) -> CompareResult:
    """A run that must have succeeded: the comparer's verdict, and a summary that adds up to it."""
    assert result.returncode == 0, explain(result)
    assert "Traceback" not in result.stderr + result.stdout
    res = compare(db, url, schema=schema, rejects=rejects, epoch_unit=epoch_unit)
    assert_summary_adds_up(result.stdout, res)
    return res


def problem_lines(output: str, kind: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip().startswith(kind)]


def assert_named(
    result: subprocess.CompletedProcess, kind: str | tuple[str, ...], table: str, *idents: str
) -> None:
    """Some line of the problem list starts with `kind` (or one of them), names `table` and one of
    `idents`."""
    output = result.stdout + result.stderr
    kinds = (kind,) if isinstance(kind, str) else kind
    lines = [line for k in kinds for line in problem_lines(output, k)]
    for line in lines:
        if table in line and any(i in line for i in idents):
            return
    raise AssertionError(f"no {kinds} line naming {table} {idents}:\n" + "\n".join(lines or [output[-3000:]]))


def ids(*values: int) -> tuple[str, ...]:
    """An id as the output may spell it: 2147483648 or 2,147,483,648."""
    return tuple(dict.fromkeys(s for v in values for s in (str(v), f"{v:,}")))


def dry_run_agrees(
    db: Path, url: str, *args: str
) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """--dry-run, then the real run on the same empty target: both succeed or both fail, and when they
    succeed their per-table counts are equal."""
    assert pg_tables(url) == {}
    dry = migrate(db, url, "--dry-run", *args)
    assert pg_tables(url) == {}, "the dry run changed PostgreSQL"
    real = migrate(db, url, *args)
    assert (dry.returncode == 0) == (real.returncode == 0), (
        f"dry run exit {dry.returncode}, real run exit {real.returncode}\n--- dry\n{explain(dry)}\n--- real\n"
        f"{explain(real)}"
    )
    if dry.returncode == 0:
        assert summary(dry.stdout) == summary(real.stdout), (summary(dry.stdout), summary(real.stdout))
    return dry, real


def next_ids(url: str, schema: str = "public") -> dict[str, int]:
    """The id PostgreSQL gives each table's next row inserted with a DEFAULT id (rolled back)."""
    s = f'"{schema}"'
    inserts = {
        "users": f"INSERT INTO {s}.users (email, username, hashed_password, created_at) "
        "VALUES ('next@example.com', 'next_user', 'h', now()) RETURNING id",
        "tasks": f"INSERT INTO {s}.tasks (title, user_id, created_at) "
        f"VALUES ('next', (SELECT min(id) FROM {s}.users), now()) RETURNING id",
        "recurring_patterns": f"INSERT INTO {s}.recurring_patterns (task_id, user_id, frequency, created_at) "
        f"VALUES ((SELECT min(id) FROM {s}.tasks), (SELECT min(id) FROM {s}.users), 'daily', now()) RETURNING id",
    }
    return {table: pg_query(url, sql)[0][0] for table, sql in inserts.items()}


def max_ids(url: str) -> dict[str, int | None]:
    return {t: pg_query(url, f"SELECT max(id) FROM {t}")[0][0] for t in rw.TABLES}


def digests(db: Path) -> dict[str, str | None]:
    return {s: rw.file_digest(Path(f"{db}{s}")) for s in ("", "-wal", "-journal")}


@pytest.fixture
def rejects(tmp_path: Path) -> Path:
    return tmp_path / "rejects.jsonl"


@pytest.fixture
def make_db(pg_server):
    """Databases with a given encoding, dropped afterwards: make_db("LATIN1") -> URL."""
    made = []

    def make(encoding: str) -> str:
        name = f"t_{encoding.lower()}_{uuid.uuid4().hex[:8]}"
        pg_server.execute(
            f"CREATE DATABASE \"{name}\" ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        )
        made.append(name)
        return pg_server.url(name)

    yield make
    for name in made:
        pg_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_role(pg_server, pg_db):
    """Login roles that may create tables in pg_db's public schema: make_role(password) -> name."""
    made = []

    def make(password: str) -> str:
        name = f"r_{uuid.uuid4().hex[:10]}"
        pg_server.execute(f'CREATE ROLE "{name}" LOGIN PASSWORD %s', params=(password,))
        made.append(name)
        pg_server.execute(f'GRANT CREATE, CONNECT ON DATABASE "{pg_db}" TO "{name}"')
        pg_server.execute(f'GRANT CREATE, USAGE ON SCHEMA public TO "{name}"', dbname=pg_db)
        return name

    yield make
    for name in made:
        pg_server.execute(f'DROP OWNED BY "{name}" CASCADE', dbname=pg_db)
        pg_server.execute(f'DROP ROLE "{name}"')


@pytest.fixture(scope="module")
def import_db(tmp_path_factory) -> Path:
    if shutil.which("sqlite3") is None:
        pytest.skip("needs the sqlite3 shell (apt-get install sqlite3) to make the .import layout")
    return rw.make_sqlite3_import(tmp_path_factory.mktemp("import") / "todo.db")


def test_empty_fields_of_an_import_are_refused_with_the_update_that_makes_them_null(tmp_path, pg_url):
    """Straight after `.import`, every NULL is '' (an empty CSV field): refused, never guessed; each
    group says the UPDATE that makes them NULL, and with those run the migration is exact."""
    if shutil.which("sqlite3") is None:
        pytest.fail("needs the sqlite3 shell (apt-get install sqlite3) to make the .import layout")
    db = rw.make_sqlite3_import(tmp_path / "todo.db", tasks=60, empty_as_null=False)
    result = run_cli("--sqlite-path", str(db), "--postgres-url", pg_url)
    assert result.returncode == 1
    updates = re.findall(r"if it means (?:no value|the model's default): (UPDATE .*)", result.stdout)
    assert any("due_date" in u for u in updates) and any("parent_task_id" in u for u in updates), (
        result.stdout
    )
    subprocess.run(["sqlite3", str(db)], input=";\n".join(updates) + ";\n", text=True, check=True)
    check(migrate(db, pg_url), db, pg_url)


def test_placeholders_in_not_null_columns_get_an_update_that_can_run(sample_db, tmp_path, pg_url):
    """'' where a cell was cleared in an editor, 'NULL' typed as text: for a NOT NULL column the
    hint is the model's default (SET completed = NULL would fail), for a nullable one NULL."""
    db = tmp_path / "edited.db"
    shutil.copy(sample_db, db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE tasks SET completed = '' WHERE id = 6")
        conn.execute("UPDATE tasks SET updated_at = 'NULL' WHERE id = 3")
    conn.close()
    result = migrate(db, pg_url)
    assert result.returncode == 1
    updates = re.findall(r"if it means (?:no value|the model's default): (UPDATE .*)", result.stdout)
    assert "UPDATE tasks SET completed = 0 WHERE completed = ''" in updates, result.stdout
    assert "UPDATE tasks SET updated_at = NULL WHERE updated_at = 'NULL'" in updates, result.stdout
    subprocess.run(["sqlite3", str(db)], input=";\n".join(updates) + ";\n", text=True, check=True)
    check(migrate(db, pg_url), db, pg_url)


# --- the comparer itself ---------------------------------------------------------------------------


def test_the_comparer_sees_a_lost_a_changed_an_invented_and_a_double_counted_row(sample_db, pg_url, tmp_path):
    res = check(migrate(sample_db, pg_url), sample_db, pg_url)
    assert res.counts() == {"users": (5, 5, 0), "tasks": (23, 23, 0), "recurring_patterns": (3, 3, 0)}
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE tasks DROP CONSTRAINT tasks_parent_task_id_fkey")
        cur.execute("ALTER TABLE recurring_patterns DROP CONSTRAINT recurring_patterns_task_id_fkey")
        cur.execute("DELETE FROM tasks WHERE id = 12")
        cur.execute("UPDATE tasks SET created_at = created_at + interval '1 microsecond' WHERE id = 7")
        cur.execute("UPDATE users SET full_name = full_name || ' ' WHERE id = 1")
        cur.execute("INSERT INTO tasks (id, title, user_id, created_at) VALUES (999, 'invented', 1, now())")
    conn.close()
    with sqlite3.connect(sample_db) as src:  # a rejects record for a row that was also migrated
        src.row_factory = sqlite3.Row
        row = dict(src.execute("SELECT * FROM recurring_patterns WHERE id = 1").fetchone())
    src.close()
    fake = tmp_path / "fake.jsonl"
    record = {"table": "recurring_patterns", "id": 1, "rowid": 1, "reason": "x", "kind": "x", "row": row}
    fake.write_text(json.dumps(record) + "\n")
    with pytest.raises(ComparisonError) as e:
        compare(sample_db, pg_url, rejects=fake)
    text = str(e.value)
    assert "tasks rowid 12 id 12: neither in PostgreSQL nor in the rejects file" in text
    assert "tasks rowid 7 id 7: differs in PostgreSQL: created_at" in text
    assert "users rowid 1 id 1: differs in PostgreSQL: full_name" in text
    assert "tasks: PostgreSQL holds id 999" in text
    assert "recurring_patterns: PostgreSQL holds id 1, which no unrejected source row accounts for" in text
    fake.write_text("NaN\n")
    with pytest.raises(ComparisonError, match="not strict JSON"):
        compare(sample_db, pg_url, rejects=fake)


# --- 1. rows lost, exit 0 ---------------------------------------------------------------------------


def test_sqlite3_import_layout_text_ids_every_row_arrives(import_db, pg_url):
    """(1a) .import: TEXT ids, > 2,000 rows per table: all 6,000 tasks arrive, not the first chunk."""
    res = check(migrate(import_db, pg_url), import_db, pg_url)
    assert res.tables["tasks"].in_pg == rw.IMPORT_TASKS
    assert res.counts()["recurring_patterns"] == (300, 300, 0)


def test_sqlite3_import_layout_dry_run_agrees(import_db, pg_url):
    dry, real = dry_run_agrees(import_db, pg_url)
    assert real.returncode == 0, explain(real)
    assert summary(real.stdout)["tasks"] == (rw.IMPORT_TASKS, rw.IMPORT_TASKS, 0)


def test_verify_only_after_migrating_text_ids(import_db, pg_url):
    """(9) --verify-only after a migration of TEXT ids (sorting bytes with ints crashed)."""
    check(migrate(import_db, pg_url), import_db, pg_url)
    result = migrate(import_db, pg_url, "--verify-only")
    assert result.returncode == 0, explain(result)


def test_null_id_in_a_primary_key_desc_table_is_named_not_skipped(tmp_path, pg_url):
    """(1b, 9) INTEGER PRIMARY KEY DESC: a NULL id is a null_in_not_null problem, the row named."""
    db = rw.make_pk_desc(tmp_path / "todo.db")
    result = migrate(db, pg_url)
    assert_failure(result, 1)
    assert_named(result, "null_in_not_null", "tasks", "NULL", "None", "rowid")
    assert pg_tables(pg_url) == {}


def test_null_id_in_a_primary_key_desc_table_is_rejected_in_skip_mode(tmp_path, pg_url, rejects):
    db = rw.make_pk_desc(tmp_path / "todo.db")
    dry, real = dry_run_agrees(db, pg_url, "--on-invalid", "skip", "--rejects", str(rejects))
    res = check(real, db, pg_url, rejects=rejects)
    assert res.counts()["tasks"] == (24, 23, 1)
    (only,) = res.tables["tasks"].rejected_rows
    assert (only.id, only.kind) == (None, "null_in_not_null")
    assert only.rowid is not None


def test_without_rowid_text_id_is_named(tmp_path, pg_url):
    """(1b, 9) WITHOUT ROWID with a text id: not_an_integer, the row named, no crash."""
    db = rw.make_without_rowid(tmp_path / "todo.db")
    result = migrate(db, pg_url)
    assert_failure(result, 1)
    assert_named(result, "not_an_integer", "tasks", rw.TEXT_ID)
    assert pg_tables(pg_url) == {}


def test_without_rowid_tables_migrate_in_skip_mode(tmp_path, pg_url, rejects):
    db = rw.make_without_rowid(tmp_path / "todo.db")
    dry, real = dry_run_agrees(db, pg_url, "--on-invalid", "skip", "--rejects", str(rejects))
    res = check(real, db, pg_url, rejects=rejects)
    assert res.counts()["users"] == (5, 5, 0)
    assert res.tables["tasks"].rejected_ids() == {rw.TEXT_ID: "not_an_integer"}
    assert res.counts()["tasks"] == (24, 23, 1)
    verify = migrate(db, pg_url, "--on-invalid", "skip", "--verify-only")
    assert verify.returncode == 0, explain(verify)


# --- 2. the tool writes to the source ------------------------------------------------------------------


@pytest.fixture
def live_wal_db(tmp_path):
    """A dirty file (rows to reject) in WAL mode with the app still connected: -wal and -shm exist."""
    (tmp_path / "app").mkdir()
    db = make_dirty_db(tmp_path / "app" / "todo.db")
    app = sqlite3.connect(db)
    app.execute("PRAGMA journal_mode = WAL")
    app.execute("PRAGMA wal_autocheckpoint = 0")
    with app:
        app.execute("UPDATE tasks SET title = title || '!' WHERE id = 1")
    assert Path(f"{db}-wal").exists() and Path(f"{db}-shm").exists()
    yield db
    app.close()


OUTPUT_TARGETS = ["", "-wal", "-shm", "-journal", "symlink", "symlink to -wal", "dotdot"]


@pytest.mark.parametrize("flag", ["--rejects", "--report"])
@pytest.mark.parametrize("target", OUTPUT_TARGETS)
def test_output_path_on_the_source_or_its_companions_is_refused(live_wal_db, pg_url, tmp_path, flag, target):
    db = live_wal_db
    if target == "symlink":
        path = tmp_path / "rejects.jsonl"
        path.symlink_to(db)
    elif target == "symlink to -wal":
        path = tmp_path / "report.json"
        path.symlink_to(f"{db}-wal")
    elif target == "dotdot":
        (db.parent / "sub").mkdir()
        path = db.parent / "sub" / ".." / db.name
    else:
        path = Path(f"{db}{target}")
    before = digests(db)
    shm_before = Path(f"{db}-shm").read_bytes()[:1]
    result = migrate(db, pg_url, "--on-invalid", "skip", flag, str(path))
    assert_failure(result, 2)
    assert digests(db) == before
    assert Path(f"{db}-shm").read_bytes()[:1] == shm_before
    assert pg_tables(pg_url) == {}


# --- 3. skip mode reaches a fixed point over all foreign keys ----------------------------------------------


def test_rejection_cascades_over_every_foreign_key_whatever_the_order(tmp_path, pg_url, rejects):
    db = rw.make_cascade_dirty(tmp_path / "todo.db")
    dry, real = dry_run_agrees(db, pg_url, "--on-invalid", "skip", "--rejects", str(rejects))
    res = check(real, db, pg_url, rejects=rejects)
    got = {(t, r.id): r.kind for t, tr in res.tables.items() for r in tr.rejected_rows}
    assert got == rw.CASCADE_ROWS


def test_realistic_dirty_file_is_refused_in_fail_mode_with_the_root_cause(tmp_path, pg_url):
    db = rw.make_cascade_dirty(tmp_path / "todo.db")
    result = migrate(db, pg_url)
    assert_failure(result, 1)
    assert_named(result, "nul_byte", "users", *ids(rw.CASCADE_BAD_USER))
    assert pg_tables(pg_url) == {}


# --- 4. altered values called lossless; epoch numbers --------------------------------------------------


def test_epoch_numbers_are_refused_without_epoch_unit(tmp_path, pg_url):
    db = rw.make_epoch_values(tmp_path / "todo.db")
    result = migrate(db, pg_url)
    assert_failure(result, 1)
    for row_id in rw.EPOCH_ROWS:
        assert_named(result, "epoch_number", "tasks", *ids(row_id))
    for row_id in rw.BASIC_FORMAT_ROWS:
        assert_named(result, "bad_datetime", "tasks", *ids(row_id))
    assert pg_tables(pg_url) == {}


def test_epoch_numbers_are_rejected_in_skip_mode_without_epoch_unit(tmp_path, pg_url, rejects):
    db = rw.make_epoch_values(tmp_path / "todo.db")
    dry, real = dry_run_agrees(db, pg_url, "--on-invalid", "skip", "--rejects", str(rejects))
    res = check(real, db, pg_url, rejects=rejects)
    want = {i: "epoch_number" for i in rw.EPOCH_ROWS} | {i: "bad_datetime" for i in rw.BASIC_FORMAT_ROWS}
    assert res.tables["tasks"].rejected_ids() == want


def test_epoch_unit_milliseconds_converts_exactly(tmp_path, pg_url, rejects):
    db = rw.make_epoch_values(tmp_path / "todo.db")
    args = ("--epoch-unit", "milliseconds", "--on-invalid", "skip", "--rejects", str(rejects))
    dry, real = dry_run_agrees(db, pg_url, *args)
    res = check(real, db, pg_url, rejects=rejects, epoch_unit="milliseconds")
    assert res.tables["tasks"].rejected_ids() == {i: "bad_datetime" for i in rw.BASIC_FORMAT_ROWS}
    ms = datetime(2024, 10, 27, 15, 1, 21, 935000)
    assert pg_query(pg_url, "SELECT created_at FROM tasks WHERE id = 202") == [(ms,)]
    assert pg_query(pg_url, "SELECT due_date FROM tasks WHERE id = 203") == [(ms,)]


def test_epoch_unit_seconds_converts_exactly(tmp_path, pg_url, rejects):
    db = rw.make_epoch_values(tmp_path / "todo.db")
    args = ("--epoch-unit", "seconds", "--on-invalid", "skip", "--rejects", str(rejects))
    dry, real = dry_run_agrees(db, pg_url, *args)
    res = check(real, db, pg_url, rejects=rejects, epoch_unit="seconds")
    rejected = res.tables["tasks"].rejected_ids()
    assert {i: rejected.get(i) for i in rw.BASIC_FORMAT_ROWS} == {
        i: "bad_datetime" for i in rw.BASIC_FORMAT_ROWS
    }
    assert pg_query(pg_url, "SELECT created_at FROM tasks WHERE id = 201") == [
        (datetime(2024, 10, 27, 15, 1, 21),)
    ]
    assert pg_query(pg_url, "SELECT created_at FROM tasks WHERE id = 204") == [
        (datetime(2024, 10, 27, 15, 1, 21, 500000),)
    ]


def test_numbers_in_text_columns_arrive_exactly(tmp_path, pg_url):
    db = rw.make_numbers_in_text(tmp_path / "todo.db")
    dry, real = dry_run_agrees(db, pg_url)
    check(real, db, pg_url)
    ((tags,),) = pg_query(pg_url, "SELECT tags FROM tasks WHERE id = %s", (rw.REAL_ROW,))
    assert float(tags) == rw.REAL_IN_TEXT and tags != "0.3"
    assert pg_query(pg_url, "SELECT description FROM tasks WHERE id = %s", (rw.INT_ROW,)) == [("42",)]


def test_a_real_without_exact_text_is_inexact_real(tmp_path, pg_url):
    db = rw.make_infinities(tmp_path / "todo.db")
    dry = migrate(db, pg_url, "--dry-run")
    assert_failure(dry, 1)
    assert_named(dry, "inexact_real", "tasks", *ids(rw.INFINITY_ROW))
    result = migrate(db, pg_url)
    assert_failure(result, 1)
    assert_named(result, "inexact_real", "tasks", *ids(rw.INFINITY_ROW))


# --- 5. a dry run passes where the real run fails ------------------------------------------------------


def test_id_past_integer_range_is_found_by_the_dry_run_and_the_real_run(tmp_path, pg_url):
    db = rw.make_big_id(tmp_path / "todo.db")
    dry = migrate(db, pg_url, "--dry-run")
    assert_failure(dry, 1)
    assert_named(dry, "integer_out_of_range", "tasks", *ids(rw.BIG_ID))
    real = migrate(db, pg_url)
    assert_failure(real, 1)
    assert_named(real, "integer_out_of_range", "tasks", *ids(rw.BIG_ID))
    assert pg_tables(pg_url) == {}


def test_id_past_integer_range_is_rejected_in_skip_mode(tmp_path, pg_url, rejects):
    db = rw.make_big_id(tmp_path / "todo.db")
    dry, real = dry_run_agrees(db, pg_url, "--on-invalid", "skip", "--rejects", str(rejects))
    res = check(real, db, pg_url, rejects=rejects)
    assert res.tables["tasks"].rejected_ids()[rw.BIG_ID] == "integer_out_of_range"


def test_latin1_target_and_an_emoji(tmp_path, make_db):
    url = make_db("LATIN1")
    db = rw.make_non_latin1(tmp_path / "todo.db")
    dry = migrate(db, url, "--dry-run")
    assert_failure(dry, 1)
    assert_named(dry, "not_in_target_encoding", "tasks", *ids(rw.EMOJI_TASK))
    real = migrate(db, url)
    assert_failure(real, 1)
    assert pg_tables(url) == {}


def test_latin1_target_skip_mode_rejects_the_row_and_dry_run_agrees(tmp_path, make_db, rejects):
    url = make_db("LATIN1")
    db = rw.make_non_latin1(tmp_path / "todo.db")
    dry, real = dry_run_agrees(db, url, "--on-invalid", "skip", "--rejects", str(rejects))
    res = check(real, db, url, rejects=rejects)
    assert res.target_encoding == "LATIN1"
    assert res.tables["tasks"].rejected_ids() == {rw.EMOJI_TASK: "not_in_target_encoding"}
    assert pg_query(url, "SELECT full_name FROM users WHERE full_name LIKE 'Zo%' LIMIT 1")[0][0].startswith(
        "Zoë"
    )


def test_sql_ascii_target_and_255_multibyte_characters(tmp_path, make_db):
    url = make_db("SQL_ASCII")
    db = rw.make_multibyte_255(tmp_path / "todo.db")
    dry = migrate(db, url, "--dry-run")
    assert_failure(dry, 1)
    assert_named(dry, ("too_long", "not_in_target_encoding"), "users", *ids(rw.MULTIBYTE_USER))
    assert (
        "encoding is SQL_ASCII" in dry.stdout and "UnicodeDecodeError" in dry.stdout
    )  # what the app would meet
    real = migrate(db, url)
    assert_failure(real, 1)
    assert pg_tables(url) == {}


def test_ids_all_at_or_below_zero(tmp_path, pg_url):
    db = rw.make_nonpositive_ids(tmp_path / "todo.db")
    dry, real = dry_run_agrees(db, pg_url)
    check(real, db, pg_url)
    assert max_ids(pg_url)["recurring_patterns"] == 0
    nxt = next_ids(pg_url)
    assert nxt["recurring_patterns"] > 0


# --- 6. search_path ------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["ALTER ROLE SET search_path", "a schema named after the user"])
def test_tables_go_to_the_schema_the_output_names_whatever_the_search_path(
    sample_db, pg_server, pg_db, make_role, how
):
    role = make_role("pw")
    if how == "ALTER ROLE SET search_path":
        pg_server.execute(f'CREATE SCHEMA other AUTHORIZATION "{role}"', dbname=pg_db)
        pg_server.execute(f'ALTER ROLE "{role}" SET search_path = other')
        elsewhere = "other"
    else:
        pg_server.execute(f'CREATE SCHEMA "{role}" AUTHORIZATION "{role}"', dbname=pg_db)
        elsewhere = role
    url = pg_server.url(pg_db, user=role, password="pw")
    admin = pg_server.url(pg_db)
    result = migrate(sample_db, url)
    assert "(schema public)" in result.stdout
    check(result, sample_db, admin)
    assert pg_tables(admin, elsewhere) == {}
    assert pg_tables(admin) == {"recurring_patterns": 3, "tasks": 23, "users": 5}
    verify = migrate(sample_db, url, "--verify-only")
    assert verify.returncode == 0, explain(verify)
    again = migrate(sample_db, url, "--force-recreate", "--yes")
    check(again, sample_db, admin)
    assert pg_tables(admin, elsewhere) == {}


# --- 7. an older todo.db -----------------------------------------------------------------------------


def test_users_table_named_in_another_case_is_migrated_as_users(tmp_path, pg_url):
    db = rw.make_users_capitalised(tmp_path / "todo.db")
    dry, real = dry_run_agrees(db, pg_url, "--allow-drift")
    res = check(real, db, pg_url)
    assert res.tables["users"].source_name == "Users"
    assert res.counts()["users"] == (5, 5, 0)


def test_users_table_in_another_case_dry_run_agrees_without_allow_drift(tmp_path, pg_url):
    db = rw.make_users_capitalised(tmp_path / "todo.db")
    dry, real = dry_run_agrees(db, pg_url)
    if real.returncode:
        assert_failure(real, 1)


def test_missing_table_migrates_as_an_empty_table(tmp_path, pg_url):
    db = rw.make_without_recurring_patterns(tmp_path / "todo.db")
    dry, real = dry_run_agrees(db, pg_url, "--allow-drift")
    check(real, db, pg_url)
    assert pg_tables(pg_url) == {"recurring_patterns": 0, "tasks": 23, "users": 5}


def test_missing_table_dry_run_agrees_without_allow_drift(tmp_path, pg_url):
    db = rw.make_without_recurring_patterns(tmp_path / "todo.db")
    dry, real = dry_run_agrees(db, pg_url)
    if real.returncode:
        assert_failure(real, 1, "--allow-drift")


# --- 8. passwords ----------------------------------------------------------------------------------------


def test_password_with_a_bare_percent_is_never_printed(sample_db, pg_server, pg_db, make_role, tmp_path):
    password = "pa%zzword"
    role = make_role(password)
    for dbname in (pg_db, "no_such_database_here"):
        report = tmp_path / f"{dbname}.json"
        url = pg_server.url(dbname, user=role, password=password)
        result = migrate(sample_db, url, "--report", str(report))
        if result.returncode:
            assert_failure(result, None)
        written = report.read_text() if report.exists() else ""
        for text in (result.stdout, result.stderr, written):
            assert password not in text
            assert "zzword" not in text


def test_password_with_an_unencoded_at_sign_says_percent_40(sample_db, pg_server, pg_db, make_role, tmp_path):
    password = "sec@ret-Xq9"
    role = make_role(password)
    report = tmp_path / "report.json"
    result = migrate(sample_db, pg_server.url(pg_db, user=role, password=password), "--report", str(report))
    err = assert_failure(result, None)
    assert "%40" in err
    written = report.read_text() if report.exists() else ""
    for text in (result.stdout, result.stderr, written):
        assert password not in text and "ret-Xq9" not in text


def test_a_corrupt_page_met_during_the_copy_is_reported_as_corruption(tmp_path, pg_url):
    """(9) The file opens and counts normally; one value's overflow page is damaged."""
    db = rw.make_corrupt_overflow(tmp_path / "todo.db")
    before = digests(db)
    dry = migrate(db, pg_url, "--dry-run")
    assert_failure(dry, None, "corrupt")
    result = migrate(db, pg_url)
    assert_failure(result, None, "corrupt", ".recover")
    assert digests(db) == before
    assert pg_tables(pg_url) == {}


# --- 10. sequences ------------------------------------------------------------------------------------------


def test_an_id_at_the_end_of_integer_says_the_sequence_is_exhausted_before_writing(tmp_path, pg_url):
    db = rw.make_max_int_id(tmp_path / "todo.db")
    dry = migrate(db, pg_url, "--dry-run")
    assert dry.returncode == 0, explain(dry)
    assert "exhausted" in dry.stdout, dry.stdout
    result = migrate(db, pg_url)
    check(result, db, pg_url)
    out = result.stdout
    assert "exhausted" in out, out
    assert "Migrating" not in out[: out.index("exhausted")], out


def test_an_autoincrement_counter_past_integer_is_named_as_the_cause(sample_db, tmp_path, pg_url):
    """Small ids, but sqlite_sequence at 3,000,000,000 (SQLite's next id): the warning names the
    counter, not the ids, which do not reach the limit."""
    db = tmp_path / "counter.db"
    rebuilt = sqlite3.connect(db)
    rebuilt.execute("ATTACH DATABASE ? AS s", (str(sample_db),))
    for (statement,) in rebuilt.execute("SELECT sql FROM s.sqlite_master WHERE type = 'table'").fetchall():
        rebuilt.execute(statement.replace("id INTEGER NOT NULL,", "id INTEGER PRIMARY KEY AUTOINCREMENT,", 1)
                        .replace(", \n\tPRIMARY KEY (id)", "").replace(",\n\tPRIMARY KEY (id)", ""))  # fmt: skip
    for table in ("users", "tasks", "recurring_patterns"):
        rebuilt.execute(f"INSERT INTO main.{table} SELECT * FROM s.{table}")
    rebuilt.execute("UPDATE sqlite_sequence SET seq = 3000000000 WHERE name = 'tasks'")
    rebuilt.commit()
    rebuilt.close()
    result = migrate(db, pg_url)
    assert result.returncode == 0, explain(result)
    assert "AUTOINCREMENT counter for tasks (sqlite_sequence) is at 3,000,000,000" in result.stdout, (
        result.stdout
    )
    assert "tasks: ids reach" not in result.stdout


def test_autoincrement_high_water_mark_is_not_handed_out_again(tmp_path, pg_url):
    db = rw.make_autoincrement_deleted(tmp_path / "todo.db")
    dry, real = dry_run_agrees(db, pg_url)
    check(real, db, pg_url)
    nxt, top = next_ids(pg_url), max_ids(pg_url)
    for table, seq in rw.AUTOINCREMENT_SEQ.items():
        assert nxt[table] > seq and nxt[table] > top[table], (table, nxt[table], seq, top[table])


def test_next_id_after_an_ordinary_migration(sample_db, pg_url):
    check(migrate(sample_db, pg_url), sample_db, pg_url)
    assert next_ids(pg_url) == {"users": 6, "tasks": 24, "recurring_patterns": 4}


# --- 11. duplicate ids -------------------------------------------------------------------------------------


def test_duplicate_ids_keep_the_first_copy_by_rowid(tmp_path, pg_url, rejects):
    db = rw.make_create_table_as(tmp_path / "todo.db")
    dry, real = dry_run_agrees(db, pg_url, "--on-invalid", "skip", "--rejects", str(rejects))
    res = check(real, db, pg_url, rejects=rejects)
    assert res.counts()["tasks"] == (26, 23, 3)
    got = sorted((r.rowid, r.id, r.kind) for r in res.tables["tasks"].rejected_rows)
    assert got == [(9, 9, "duplicate"), (24, 3, "duplicate"), (25, 4, "duplicate")]
    title = "SELECT title FROM tasks WHERE id = %s"
    assert pg_query(pg_url, title, (rw.CTAS_LOWER_ROWID_DUPLICATE,)) == [("kept: lowest rowid",)]
    assert "edited" not in pg_query(pg_url, title, (rw.CTAS_CHANGED_DUPLICATE,))[0][0]


def test_duplicate_ids_are_named_in_fail_mode(tmp_path, pg_url):
    db = rw.make_create_table_as(tmp_path / "todo.db")
    result = migrate(db, pg_url)
    assert_failure(result, 1)
    for row_id in (3, 4, 9):
        assert_named(result, "duplicate", "tasks", *ids(row_id))
    assert pg_tables(pg_url) == {}


# --- 12. the exact pre-flight is linear whatever indexes the source has ---------------------------------------


def _cpu_seconds_of(db: Path, url: str, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        result = migrate(db, url, *args, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{db.name}: still running after 240 s")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), result


def test_exact_preflight_without_indexes_costs_about_what_it_costs_with_them(tmp_path, pg_url):
    """CPU time (not wall time) of --dry-run (the exact pre-flight), 10,000 tasks, no index vs the
    app's indexes: quadratic orphan checks take ~15x; a linear one stays within a small factor."""
    bare = rw.make_no_indexes(tmp_path / "bare.db", tasks=10_000)
    indexed = make_todo_db(tmp_path / "indexed.db", tasks=10_000)
    cpu_indexed, r1 = _cpu_seconds_of(indexed, pg_url, "--dry-run")
    assert r1.returncode == 0, explain(r1)
    cpu_bare, r2 = _cpu_seconds_of(bare, pg_url, "--dry-run")
    assert r2.returncode == 0, explain(r2)
    assert cpu_bare <= 3 * cpu_indexed + 3, (cpu_bare, cpu_indexed)


# --- 13. memory with wide rows --------------------------------------------------------------------------------


def test_wide_rows_peak_memory_stays_under_100_mb(tmp_path, pg_url):
    db = rw.make_wide_descriptions(tmp_path / "todo.db")
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ENVIRONMENT")}
    cmd = [sys.executable, str(SCRIPT), "--sqlite-path", str(db), "--postgres-url", pg_url]
    with out.open("w") as fout, err.open("w") as ferr:
        proc = subprocess.Popen(cmd, stdout=fout, stderr=ferr, env=env, cwd=ROOT)
    ps = psutil.Process(proc.pid)
    peak, deadline = 0, time.monotonic() + 600
    # The kernel's high-water mark of the tool's own memory (VmHWM) catches what sampling misses.
    # Not wait4's ru_maxrss: a child started by vfork inherits the parent's (this pytest's) peak.
    status_file = Path(f"/proc/{proc.pid}/status")
    while True:
        try:
            peak = max(peak, ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(True)))
            hwm = next(line for line in status_file.read_text().splitlines() if line.startswith("VmHWM:"))
            peak = max(peak, int(hwm.split()[1]) * 1024)
        except (psutil.Error, OSError, StopIteration, ValueError):
            pass
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the migration did not finish in 10 minutes")
        time.sleep(0.02)  # the sampling interval
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = subprocess.CompletedProcess(cmd, proc.returncode, out.read_text(), err.read_text())
    check(result, db, pg_url)
    assert peak <= 100 * MB, f"peak RSS {peak / MB:.0f} MB"


# --- 14. messages that mislead ------------------------------------------------------------------------------


@pytest.mark.parametrize("through", ["the-file", "a-symlink"])
def test_hot_journal_is_explained_and_left_alone(tmp_path, pg_url, through):
    (tmp_path / "real").mkdir()
    db = rw.make_hot_journal(tmp_path / "real" / "todo.db")
    given = db
    if through == "a-symlink":  # SQLite names the journal after the file the link points at
        given = tmp_path / "link.db"
        given.symlink_to(db)
    before = digests(db)
    result = migrate(given, pg_url)
    err = assert_failure(result, None)
    assert "journal" in err.lower() or "interrupted" in err.lower(), err
    assert "link.db-journal" not in err and f"{db}-journal" in err, err
    assert "readonly database" not in err.lower()
    assert digests(db) == before
    assert pg_tables(pg_url) == {}


def _without_root_powers() -> list[str]:
    """A command prefix under which directory permissions apply (root ignores them otherwise)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to drop root's file-permission override")
    # The interpreter lives under /root here, so another user could not run it; root without
    # CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH is held to the permission bits like any owner.
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps=-all", "--"]


@pytest.mark.parametrize("with_wal", [True, False], ids=["with -wal", "db file alone"])
def test_wal_database_in_a_read_only_directory_says_copy_it_somewhere_writable(tmp_path, pg_url, with_wal):
    directory = tmp_path / "backup"
    db = rw.make_wal_in_readonly_dir(directory, with_wal=with_wal)
    before = digests(db)
    directory.chmod(0o555)
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ENVIRONMENT")}
        result = subprocess.run(
            [
                *_without_root_powers(),
                sys.executable,
                str(SCRIPT),
                "--sqlite-path",
                str(db),
                "--postgres-url",
                pg_url,
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
        )
    finally:
        directory.chmod(0o755)
    err = assert_failure(result, None, "copy", "writable")
    assert "readonly database" not in err.lower()
    assert digests(db) == before
    assert not Path(f"{db}-shm").exists()
    assert pg_tables(pg_url) == {}


def test_verify_only_with_a_sequence_behind_names_the_sequence(sample_db, pg_url):
    check(migrate(sample_db, pg_url), sample_db, pg_url)
    pg_query(pg_url, "SELECT setval(pg_get_serial_sequence('public.tasks', 'id'), 5)", autocommit=True)
    result = migrate(sample_db, pg_url, "--verify-only")
    err = assert_failure(result, 1, "sequence")
    assert not re.search(r"\b(\d+) rows vs \1\b", err), err


def test_force_recreate_blocked_by_a_view_names_the_view(sample_db, pg_url):
    check(migrate(sample_db, pg_url), sample_db, pg_url)
    pg_query(pg_url, "CREATE VIEW open_tasks_report AS SELECT id, title FROM tasks", autocommit=True)
    result = migrate(sample_db, pg_url, "--force-recreate", "--yes")
    assert_failure(result, 1, "open_tasks_report")
    compare(sample_db, pg_url)  # the old tables and rows survive
    assert pg_query(pg_url, "SELECT count(*) FROM open_tasks_report") == [(23,)]


# --- 15. said nowhere -------------------------------------------------------------------------------------------


def test_sqlite_views_triggers_and_indexes_are_listed_as_not_migrated(tmp_path, pg_url):
    db = rw.make_views_triggers(tmp_path / "todo.db")
    result = migrate(db, pg_url, "--allow-drift")
    check(result, db, pg_url)
    output = result.stdout + result.stderr
    for what, name in rw.SQLITE_EXTRAS.items():
        assert any(name in line and "not migrated" in line for line in output.splitlines()), (
            what,
            name,
            output,
        )
    assert "view     open_tasks: not migrated" in output  # not "(on open_tasks)": a view is on no one table
    assert "trigger  tasks_touch_updated_at (on tasks): not migrated" in output


SCHEMA_CHANGES = [
    ("unique index", "DROP INDEX ix_users_email", ("ix_users_email", "users.email", "users: unique index on (email)"), ("unique", "index")),
    ("foreign key", "ALTER TABLE tasks DROP CONSTRAINT tasks_user_id_fkey",
     ("tasks_user_id_fkey", "tasks.user_id"), ("foreign key",)),
    ("not null", "ALTER TABLE tasks ALTER COLUMN title DROP NOT NULL", ("tasks.title",), ("not null", "nullable")),
    ("default", "ALTER TABLE tasks ALTER COLUMN priority DROP DEFAULT", ("tasks.priority",), ("default",)),
    ("type", "ALTER TABLE tasks ALTER COLUMN title TYPE text", ("tasks.title",), ("type", "varchar", "character varying")),
    # beyond the models: the values still match, but the app's writes would be refused or changed
    ("extra unique index", "CREATE UNIQUE INDEX uq_title ON tasks (title)", ("uq_title",), ("unique index",)),
    ("extra partial unique index", "CREATE UNIQUE INDEX uq_open ON tasks (user_id) WHERE id < 0", ("uq_open",), ("unique index",)),
    ("trigger", "CREATE FUNCTION up() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN NEW.title := upper(NEW.title); "
     "RETURN NEW; END'; CREATE TRIGGER up BEFORE INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION up()", ("tasks: trigger up",), ("trigger",)),
    ("check constraint", "ALTER TABLE tasks ADD CONSTRAINT prio CHECK (length(title) > 0)",
     ("prio",), ("check constraint",)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "change", "names", "words"), SCHEMA_CHANGES, ids=[c[0] for c in SCHEMA_CHANGES]
)
def test_verify_only_checks_the_schema(sample_db, pg_url, what, change, names, words):
    check(migrate(sample_db, pg_url), sample_db, pg_url)
    ok = migrate(sample_db, pg_url, "--verify-only")
    assert ok.returncode == 0, explain(ok)
    pg_query(pg_url, change, autocommit=True)
    result = migrate(sample_db, pg_url, "--verify-only")
    assert_failure(result, 1)
    output = (result.stdout + result.stderr).lower()
    assert any(n in output for n in names) and any(w in output for w in words), (what, explain(result))


def test_rejects_file_is_strict_json_with_the_source_rowid(tmp_path, pg_url, rejects):
    db = rw.make_infinities(tmp_path / "todo.db")
    result = migrate(db, pg_url, "--on-invalid", "skip", "--rejects", str(rejects))
    assert result.returncode == 0, explain(result)
    records = read_rejects(rejects)  # strict: a bare -Infinity fails here
    for record in records:
        assert {"table", "id", "rowid", "reason", "kind", "row"} <= set(record), record
        assert record["rowid"] == record["id"]  # an INTEGER PRIMARY KEY is the rowid
    res = check(result, db, pg_url, rejects=rejects)
    assert res.tables["tasks"].rejected_ids() == {
        rw.INFINITY_ROW: "inexact_real",
        rw.NUL_AND_INFINITY_ROW: "nul_byte",
    }
