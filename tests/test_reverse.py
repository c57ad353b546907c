"""Issue 12, the way back: `--reverse` exports PostgreSQL to a todo.db the app runs on.

Every test runs the CLI as a user does, against a real PostgreSQL and real files, and judges the
export with tests/export_compare.py (which reads both sides itself and never imports the tool): the
schema is what the app's create_all makes on SQLite, every value is in the app's SQLite form, and a
failure leaves the destination exactly as it was (absent stays absent, an existing file byte for byte)
with no temporary file beside it.

Waits are on events (a file appearing, a backend in pg_stat_activity, a line from a child process),
never on sleeps; no test asserts how long anything took.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from compare import compare
from conftest import (
    ROOT,
    SCRIPT,
    TABLES,
    assert_failure,
    assert_one_line_error,
    explain,
    pg_query,
    run_cli,
    run_on_terminal,
    sqlite_rows,
    wait_for,
)
from export_compare import (
    Dump,
    assert_app_schema,
    assert_same,
    counts,
    pg_as_sqlite,
    pg_rows,
    sqlite_dump,
    sqlite_timestamp,
)
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from servers import PgBouncer, start_tls_server
from sqlalchemy import func
from sqlalchemy import select as sql_select
from sqlalchemy.orm import Session

from database import get_engine
from models import RecurringPattern, Task, User
from tools.make_todo_db import make_todo_db
from tools.pgserver import LocalPostgres

SUCCESS = "Export completed and verified"
SAMPLE_COUNTS = {"users": 5, "tasks": 23, "recurring_patterns": 3}
HELPER_APP = "reverse-test-helper"  # application_name of the tests' own long-lived connections
BIG_TASKS = 300_000


# --- helpers ---------------------------------------------------------------------------------------


def forward(db: Path, url: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return run_cli("--sqlite-path", str(db), "--postgres-url", url, *args, timeout=timeout)


def migrated(db: Path, url: str, *args: str) -> None:
    result = forward(db, url, *args)
    assert result.returncode == 0, explain(result)


def export(url: str, dest: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return run_cli("--reverse", "--postgres-url", url, "--sqlite-path", str(dest), *args, timeout=timeout)


def exported(url: str, dest: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """An export that must succeed."""
    result = export(url, dest, *args, timeout=timeout)
    assert result.returncode == 0, explain(result)
    assert "Traceback" not in result.stdout + result.stderr
    assert SUCCESS in result.stdout, explain(result)
    return result


def destination(tmp_path: Path, name: str = "out.db") -> Path:
    """A destination path in a folder of its own, so the folder's listing shows every leftover."""
    folder = tmp_path / "export"
    folder.mkdir(exist_ok=True)
    return folder / name


def existing_destination(tmp_path: Path) -> Path:
    """A todo.db already at the destination, holding other rows than any PostgreSQL here."""
    return make_todo_db(destination(tmp_path), tasks=7, users=2, patterns=1, seed=7)


def dir_state(folder: Path, *, shm: bool = True) -> dict[str, str]:
    """Every file in `folder` (hidden ones too) and its SHA-256; -shm files (SQLite's shared memory
    index, which a reader may touch) left out with shm=False."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
        for p in sorted(folder.iterdir())
        if shm or not p.name.endswith("-shm")
    }


def temp_files(dest: Path) -> list[str]:
    """The export's temporary files: '.out.db.*.tmp' beside 'out.db' (and any companion of one)."""
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}."))


def assert_export_of(dest: Path, url: str, schema: str = "public") -> Dump:
    """`dest` is the app's todo.db holding exactly PostgreSQL's rows, in the app's SQLite form."""
    assert_app_schema(dest)
    got = sqlite_dump(dest)
    assert_same(got, pg_as_sqlite(url, schema), "export", "PostgreSQL")
    assert temp_files(dest) == []
    return got


def backends(url: str) -> dict[int, tuple[datetime | None, str]]:
    """Client backends on the database other than this query's and the tests' helpers: pid ->
    (xact_start, None when not in a transaction; its current or last query)."""
    rows = pg_query(
        url,
        "SELECT pid, xact_start, coalesce(query, '') FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
        "AND application_name IS DISTINCT FROM %s",
        (HELPER_APP,),
    )
    return {pid: (xact, query) for pid, xact, query in rows}


def temp_has_data(dest: Path) -> bool:
    for name in temp_files(dest):
        with contextlib.suppress(OSError):
            if (dest.parent / name).stat().st_size > 0:
                return True
    return False


def copying(url: str, dest: Path, before: set[int]) -> tuple[int, datetime] | None:
    """The export's backend (pid, xact_start) while it copies the tasks (the longest table): a backend
    that was not there before the run, inside a transaction, running a COPY of tasks or with rows
    already in the temporary file."""
    for pid, (xact, query) in backends(url).items():
        if pid in before or xact is None:
            continue
        q = query.lower()
        if ("copy" in q and "tasks" in q) or temp_has_data(dest):
            return pid, xact
    return None


def cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ENVIRONMENT")}


@contextmanager
def running(argv: list[str], **kwargs) -> Iterator[subprocess.Popen]:
    """A child process that is never left behind: killed and reaped if still running at the end."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    proc = subprocess.Popen(argv, env=kwargs.pop("env", cli_env()), cwd=ROOT, text=True, **kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def export_argv(url: str, dest: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        str(SCRIPT),
        "--reverse",
        "--postgres-url",
        url,
        "--sqlite-path",
        str(dest),
        *args,
    ]


def finish(proc: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_copying(
    url: str, dest: Path, proc: subprocess.Popen, before: set[int]
) -> tuple[int, datetime] | None:
    """The export's backend (pid, xact_start) once it copies the tasks; None if the run ended first."""
    seen: list[tuple[int, datetime]] = []

    def found() -> bool:
        backend = copying(url, dest, before)
        if backend is not None:
            seen.append(backend)
        return bool(seen) or proc.poll() is not None

    wait_for(found)
    return seen[0] if seen and proc.poll() is None else None


def fill_big(url: str, tasks: int = BIG_TASKS) -> None:
    """Many more tasks and patterns beside the sample's (already migrated into `url`): an export that
    takes long enough to be interrupted mid-way. Written by PostgreSQL itself, in seconds."""
    pg_query(
        url,
        f"""
        INSERT INTO tasks (id, title, description, completed, priority, tags, due_date, user_id,
                           parent_task_id, is_recurring, created_at, updated_at)
        SELECT g, 'Bulk task #' || g, repeat('déjà vu — 🚀 ', 8) || g, g % 3 = 0,
               (ARRAY['low', 'medium', 'high', 'urgent'])[1 + g % 4],
               CASE WHEN g % 4 = 0 THEN NULL ELSE '["work", "家"]' END,
               CASE WHEN g % 5 = 0 THEN NULL ELSE timestamp '2024-01-01 08:00:00' + g * interval '1.000001 second' END,
               1 + g % 5, CASE WHEN g % 10 = 0 AND g > 1000 THEN g - 1 END, g % 20 = 0,
               timestamp '2023-06-01 00:00:00.5' + g * interval '37.123457 second',
               CASE WHEN g % 2 = 0 THEN timestamp '2024-06-01 00:00:00' + g * interval '1 second' END
        FROM generate_series(1000, {999 + tasks}) g;
        INSERT INTO recurring_patterns (id, task_id, user_id, frequency, interval, days_of_week, day_of_month,
                                        end_date, next_occurrence, is_active, created_at)
        SELECT g, 1000 + g, 1 + (1000 + g) % 5, 'weekly', 1 + g % 3, '[1, 3]', NULL, NULL,
               timestamp '2025-01-01 00:00:00' + g * interval '1 minute', g % 9 <> 0,
               timestamp '2024-01-01 00:00:00.000001' + g * interval '1 second'
        FROM generate_series(1000, {999 + tasks // 20}) g;
        ANALYZE;
        """,
        autocommit=True,
    )


@pytest.fixture(scope="module")
def big_pg(pg_server, tmp_path_factory) -> Iterator[str]:
    """A database with the sample plus 300,000 tasks and 15,000 patterns, shared by the tests that
    interrupt an export (the export only reads it)."""
    name = f"rev_big_{uuid.uuid4().hex[:8]}"
    pg_server.execute(f'CREATE DATABASE "{name}"')
    url = pg_server.url(name)
    try:
        migrated(make_todo_db(tmp_path_factory.mktemp("bigsrc") / "todo.db"), url)
        fill_big(url)
        yield url
    finally:
        pg_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url_b(pg_server) -> Iterator[str]:
    """A second fresh database for the same test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_server.url(name)
    finally:
        pg_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- 1. the export equals the original todo.db -----------------------------------------------------


def assert_round_trip_of(original: Path, url: str, dest: Path) -> None:
    before = pg_rows(url)
    exported(url, dest)
    assert_app_schema(dest)
    for table in TABLES:  # the plain reading first: SELECT * ORDER BY id from both files
        assert sqlite_rows(dest, table) == sqlite_rows(original, table), table
    got = sqlite_dump(dest)
    assert_same(got, sqlite_dump(original), "export", "original todo.db")
    assert_same(got, pg_as_sqlite(url), "export", "PostgreSQL")
    compare(dest, url)  # and the forward comparer: every row of the export is in PostgreSQL, no other
    assert pg_rows(url) == before, "the export changed PostgreSQL"
    assert sorted(os.listdir(dest.parent)) == [dest.name], "something was left beside the export"


def test_export_after_migration_equals_the_original(sample_db, pg_url, tmp_path):
    migrated(sample_db, pg_url)
    dest = destination(tmp_path)
    assert_round_trip_of(sample_db, pg_url, dest)
    assert counts(sqlite_dump(dest)) == SAMPLE_COUNTS


def test_export_of_a_bigger_database_equals_the_original(pg_url, tmp_path):
    original = make_todo_db(tmp_path / "big.db", tasks=20_000)
    migrated(original, pg_url)
    dest = destination(tmp_path)
    assert_round_trip_of(original, pg_url, dest)
    assert counts(sqlite_dump(dest)) == {"users": 200, "tasks": 20_000, "recurring_patterns": 1_000}


def test_schema_option_exports_that_schema(sample_db, pg_url, tmp_path):
    other = make_todo_db(tmp_path / "other.db", tasks=9, users=3, patterns=2, seed=3)
    migrated(sample_db, pg_url, "--schema", "todo")
    migrated(other, pg_url)  # public holds other rows
    dest = destination(tmp_path)
    exported(pg_url, dest, "--schema", "todo")
    assert_export_of(dest, pg_url, "todo")
    assert_same(sqlite_dump(dest), sqlite_dump(sample_db), "export of --schema todo", "original")
    public = destination(tmp_path, "public.db")
    exported(pg_url, public)
    assert_same(sqlite_dump(public), sqlite_dump(other), "export of public", "other.db")


# --- 2. the app's own SQLAlchemy session on the export ---------------------------------------------

FIXED = datetime(2025, 3, 1, 12, 0, 0, 123456)


def app_engine(path: Path):
    return get_engine({"ENVIRONMENT": "development", "DATABASE_URL": f"sqlite:///{path}"}, echo_banner=False)


def orm_rows(path: Path) -> dict[str, list[tuple]]:
    """Every row read through the app's models, as Python values."""
    engine = app_engine(path)
    try:
        with Session(engine) as session:
            out = {}
            for model in (User, Task, RecurringPattern):
                names = [c.key for c in model.__table__.columns]
                objs = session.scalars(sql_select(model).order_by(model.id)).all()
                out[model.__tablename__] = [tuple(getattr(o, n) for n in names) for o in objs]
            return out
    finally:
        engine.dispose()


def app_writes(path: Path, victim: int) -> dict[str, object]:
    """What the app does in a session: insert a task, update one, delete a user (the relationship's
    cascade deletes the user's tasks through the session)."""
    engine = app_engine(path)
    try:
        with Session(engine) as session:
            top = session.scalar(sql_select(func.max(Task.id)))
            task = Task(
                title="Written by the app", description="after the way back", user_id=2, created_at=FIXED
            )
            session.add(task)
            session.commit()
            new_id = task.id
            changed = session.get(Task, 5)
            changed.title = "Changed by the app — ✓"
            changed.completed = not changed.completed
            changed.due_date = FIXED
            changed.updated_at = FIXED  # set, so onupdate=utcnow does not make the two files differ
            session.commit()
            user = session.get(User, victim)
            victim_tasks = sorted(t.id for t in user.tasks)
            session.delete(user)
            session.commit()
            return {"max_before": top, "new_id": new_id, "victim_tasks": victim_tasks}
    finally:
        engine.dispose()


def test_the_apps_session_works_on_the_export_as_on_the_original(sample_db, pg_url, tmp_path):
    migrated(sample_db, pg_url)
    dest = destination(tmp_path)
    exported(pg_url, dest)
    original = tmp_path / "original.db"
    shutil.copyfile(sample_db, original)

    # reads: every row, typed as the models say, equal to the original's
    rows = orm_rows(dest)
    assert rows == orm_rows(original)
    assert {t: len(r) for t, r in rows.items()} == SAMPLE_COUNTS
    for model in (User, Task, RecurringPattern):
        for row in rows[model.__tablename__]:
            for column, value in zip(model.__table__.columns, row, strict=True):
                if value is None:
                    assert column.nullable, (model.__tablename__, column.name)
                elif column.type.python_type is bool:
                    assert isinstance(value, bool), (model.__tablename__, column.name, value)
                elif column.type.python_type is datetime:
                    assert isinstance(value, datetime), (model.__tablename__, column.name, value)

    # writes: the same session work on both files has the same outcome
    with sqlite3.connect(f"file:{dest}?mode=ro", uri=True) as conn:
        victim = conn.execute(  # the user with most tasks, neither task 5's owner nor user 2
            "SELECT user_id FROM tasks WHERE user_id <> 2 AND user_id <> (SELECT user_id FROM tasks WHERE id = 5) "
            "GROUP BY user_id ORDER BY count(*) DESC, user_id"
        ).fetchone()[0]
        max_id, was_completed = conn.execute(
            "SELECT (SELECT max(id) FROM tasks), completed FROM tasks WHERE id = 5"
        ).fetchone()
    conn.close()
    done = app_writes(dest, victim)
    assert done == app_writes(original, victim)
    # What the app does: the session deletes the user's tasks (cascade="all, delete-orphan"); their
    # recurring patterns stay, on both files alike, because the app's engine does not turn on
    # PRAGMA foreign_keys (the next test has SQLite's own ON DELETE CASCADE do it).
    assert done["new_id"] == max_id + 1 == done["max_before"] + 1
    assert done["victim_tasks"], "the deleted user had tasks"
    assert_same(
        sqlite_dump(dest), sqlite_dump(original), "export after the app's writes", "original after them"
    )
    with sqlite3.connect(f"file:{dest}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE id = ?", (victim,)).fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM tasks WHERE user_id = ?", (victim,)).fetchone() == (0,)
        assert conn.execute(
            "SELECT title, completed, due_date, updated_at FROM tasks WHERE id = 5"
        ).fetchone() == (
            "Changed by the app — ✓",
            1 - was_completed,
            sqlite_timestamp(FIXED),
            sqlite_timestamp(FIXED),
        )
        stored = conn.execute(
            "SELECT created_at, typeof(completed) FROM tasks WHERE id = ?", (done["new_id"],)
        )
        assert stored.fetchone() == (sqlite_timestamp(FIXED), "integer")
    conn.close()


def test_foreign_keys_cascade_in_the_export_as_in_the_original(sample_db, pg_url, tmp_path):
    """With PRAGMA foreign_keys=ON the export's own foreign keys cascade (ON DELETE CASCADE / SET NULL)
    exactly as the original's do."""
    migrated(sample_db, pg_url)
    dest = destination(tmp_path)
    exported(pg_url, dest)
    original = tmp_path / "original.db"
    shutil.copyfile(sample_db, original)
    with sqlite3.connect(f"file:{dest}?mode=ro", uri=True) as conn:
        victim = conn.execute("SELECT user_id FROM recurring_patterns ORDER BY id").fetchone()[0]
    conn.close()
    for path in (dest, original):
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            with conn:
                conn.execute("DELETE FROM users WHERE id = ?", (victim,))
            assert conn.execute("SELECT count(*) FROM tasks WHERE user_id = ?", (victim,)).fetchone() == (0,)
            assert conn.execute(
                "SELECT count(*) FROM recurring_patterns WHERE user_id = ?", (victim,)
            ).fetchone() == (0,)
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        finally:
            conn.close()
    assert_same(sqlite_dump(dest), sqlite_dump(original), "export after the cascade", "original after it")


# --- 3. one snapshot while the app writes to PostgreSQL -------------------------------------------

WRITER = r"""
import sys
import psycopg2
conn = psycopg2.connect(sys.argv[1], application_name=sys.argv[2])
k = 0
while True:  # until terminated; each loop one transaction, as the app writes
    k += 1
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO users (id, email, username, hashed_password, created_at) "
            "VALUES (%s, %s, %s, 'h', localtimestamp)",
            (1_000_000 + k, f"live{k}@example.com", f"live_{k}"),
        )
        cur.execute(
            "INSERT INTO tasks (id, title, user_id, created_at) VALUES (%s, %s, %s, localtimestamp)",
            (10_000_000 + k, f"live {k}", 1_000_000 + k),
        )
        cur.execute(
            "INSERT INTO recurring_patterns (id, task_id, user_id, frequency, created_at) "
            "VALUES (%s, %s, %s, 'daily', localtimestamp)",
            (10_000_000 + k, 10_000_000 + k, 1_000_000 + k),
        )
        cur.execute("UPDATE users SET full_name = %s WHERE id = 1", (f"generation {k}",))
"""


def committed(url: str) -> int:
    return pg_query(url, "SELECT count(*) FROM tasks WHERE id > 10000000")[0][0]


def test_export_is_one_snapshot_while_the_app_writes(sample_db, pg_url, tmp_path):
    migrated(sample_db, pg_url)
    fill_big(pg_url)
    dest = destination(tmp_path)
    before = set(backends(pg_url))
    with running([sys.executable, "-c", WRITER, pg_url, HELPER_APP], stdout=subprocess.DEVNULL) as writer:
        assert wait_for(lambda: writer.poll() is not None or committed(pg_url) >= 20), (
            "the writer never wrote"
        )
        assert writer.poll() is None, writer.stderr.read()
        with running(export_argv(pg_url, dest)) as proc:
            seen = wait_copying(pg_url, dest, proc, before)
            if seen is None:
                pytest.fail("the export finished before it could be watched:\n" + explain(finish(proc)))
            at_start = committed(pg_url)
            assert wait_for(lambda: writer.poll() is not None or committed(pg_url) >= at_start + 3)
            assert writer.poll() is None, writer.stderr.read()
            # the writer committed while the export's transaction was open (same backend, same transaction)
            overlapped = backends(pg_url).get(seen[0], (None,))[0] == seen[1]
            result = finish(proc)
        writer.terminate()
    assert overlapped, "the export finished before the writer committed during it; nothing was tested"
    assert result.returncode == 0, explain(result)
    assert SUCCESS in result.stdout

    assert_app_schema(dest)
    got = sqlite_dump(dest)
    live = {
        "users": {k - 1_000_000 for k in got["users"] if k > 1_000_000},
        "tasks": {k - 10_000_000 for k in got["tasks"] if k > 10_000_000},
        "recurring_patterns": {k - 10_000_000 for k in got["recurring_patterns"] if k > 10_000_000},
    }
    n = len(live["tasks"])
    assert n >= 20
    for table, ks in live.items():  # every transaction wholly in, or wholly out, in commit order
        assert ks == set(range(1, n + 1)), f"{table}: {len(ks)} live rows, not generations 1..{n}"
    assert got["users"][1][4] == ("text", f"generation {n}".encode()), "users and tasks are from two moments"

    # the whole export is PostgreSQL as it was at that moment (its rows then are unchanged since)
    want = pg_as_sqlite(pg_url)
    want["users"] = {k: r for k, r in want["users"].items() if k <= 1_000_000 + n}
    want["tasks"] = {k: r for k, r in want["tasks"].items() if k <= 10_000_000 + n}
    want["recurring_patterns"] = {k: r for k, r in want["recurring_patterns"].items() if k <= 10_000_000 + n}
    user1 = list(want["users"][1])
    user1[4] = ("text", f"generation {n}".encode())
    want["users"][1] = tuple(user1)
    assert_same(got, want, "export", "PostgreSQL at the export's moment")


# --- 4. refusals ---------------------------------------------------------------------------------


def test_existing_destination_is_refused(sample_db, pg_url, tmp_path):
    migrated(sample_db, pg_url)
    dest = existing_destination(tmp_path)
    before = dir_state(dest.parent)
    result = export(pg_url, dest)
    assert_failure(result, 2, "--force-recreate")
    assert dir_state(dest.parent) == before


@pytest.mark.parametrize(
    "flags", [("--force-recreate", "--yes"), ("--force-recreate",)], ids=["yes", "no-terminal"]
)
def test_force_recreate_replaces_an_existing_destination(sample_db, pg_url, tmp_path, flags):
    """--force-recreate replaces it; without a terminal nothing asks, so --yes is not needed."""
    migrated(sample_db, pg_url)
    dest = existing_destination(tmp_path)
    exported(pg_url, dest, *flags)
    assert_export_of(dest, pg_url)
    assert_same(sqlite_dump(dest), sqlite_dump(sample_db), "replaced export", "original")
    assert sorted(os.listdir(dest.parent)) == [dest.name]


def test_force_recreate_asks_on_a_terminal(sample_db, pg_url, tmp_path):
    migrated(sample_db, pg_url)
    dest = existing_destination(tmp_path)
    before = dir_state(dest.parent)
    argv = export_argv(pg_url, dest, "--force-recreate")[
        2:
    ]  # run_on_terminal adds the interpreter and script
    code, out = run_on_terminal(argv, "no")
    assert code == 1, out
    assert dir_state(dest.parent) == before
    code, out = run_on_terminal(argv, "yes")
    assert code == 0, out
    assert SUCCESS in out
    assert_export_of(dest, pg_url)


def hold_open(dest: Path, how: str, stack: list) -> None:
    """Leave `dest` the way a running (or crashed) app leaves it."""
    if how == "wal":  # the app runs in WAL mode, with writes not yet checkpointed into the file
        with sqlite3.connect(dest) as conn:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.close()
        app = sqlite3.connect(dest)
        app.execute("PRAGMA wal_autocheckpoint = 0")
        with app:
            app.execute("UPDATE tasks SET title = 'only in the wal' WHERE id = 1")
        stack.append(app.close)
        assert Path(f"{dest}-wal").exists()
        return
    script = {
        # an app mid-write in rollback-journal mode, killed: a hot journal and no lock
        "journal": "conn.execute('BEGIN IMMEDIATE'); conn.execute(\"UPDATE tasks SET title = 'half-written'\")",
        # an app inside a write transaction: an exclusive lock
        "exclusive-lock": "conn.execute('BEGIN EXCLUSIVE')",
        # an app inside a read transaction: a shared lock
        "shared-lock": "conn.execute('BEGIN'); conn.execute('SELECT count(*) FROM tasks').fetchone()",
        # an app idle in rollback-journal mode (the app's own default): no lock, no file beside it,
        # only its open descriptor; replaced, it would go on writing to the old file
        "idle": "conn.execute('SELECT count(*) FROM tasks').fetchone()",
        # an app in WAL mode, killed with writes not yet checkpointed: a -wal nobody holds, which
        # SQLite would replay into whatever file then bears the name
        "wal-crashed": "conn.execute('PRAGMA journal_mode = WAL'); conn.execute('PRAGMA wal_autocheckpoint = 0'); "
        "conn.execute(\"UPDATE tasks SET title = 'only in the wal'\")",
    }[how]
    code = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        f"{script}\n"
        "print('holding', flush=True)\n"
        "sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(dest)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )

    def release() -> None:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=60)
        holder.stdin.close()
        holder.stdout.close()

    stack.append(release)
    assert holder.stdout.readline().strip() == "holding"
    if how in ("journal", "wal-crashed"):
        holder.kill()  # the app crashed mid-write
        holder.wait(timeout=60)
        companion = Path(f"{dest}-journal" if how == "journal" else f"{dest}-wal")
        assert companion.exists() and companion.stat().st_size > 0


@pytest.mark.parametrize("how", ["wal", "wal-crashed", "journal", "exclusive-lock", "shared-lock", "idle"])
def test_destination_an_app_has_open_is_refused_even_with_force_recreate(sample_db, pg_url, tmp_path, how):
    migrated(sample_db, pg_url)
    dest = existing_destination(tmp_path)
    cleanup: list = []
    try:
        hold_open(dest, how, cleanup)
        before = dir_state(dest.parent, shm=False)
        result = export(pg_url, dest, "--force-recreate", "--yes")
        hint = {"wal-crashed": ["wal_checkpoint"], "journal": ["hot rollback journal", "integrity_check"]}
        assert_failure(result, 2, dest.name, *hint.get(how, []))
        assert dir_state(dest.parent, shm=False) == before
    finally:
        for release in reversed(cleanup):
            release()


def test_a_replaced_destination_keeps_its_owner_and_mode(sample_db, pg_url, tmp_path):
    """The app may run as another user than the one exporting: the new file must stay its own."""
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root (CI runs as root)")
    migrated(sample_db, pg_url)
    dest = existing_destination(tmp_path)
    os.chown(dest, 65534, 65534)
    os.chmod(dest, 0o660)
    exported(pg_url, dest, "--force-recreate", "--yes")
    st = dest.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o660)
    assert_export_of(dest, pg_url)


def test_a_wal_file_that_a_closed_reader_left_is_no_reason_to_refuse(sample_db, pg_url, tmp_path):
    """A WAL-mode todo.db read by a connection that could not remove its -wal when it closed (a
    read-only one: this tool's own forward run, say) keeps an empty -wal and a -shm, with no
    process holding them: no app has it open, and the export replaces it."""
    migrated(sample_db, pg_url)
    dest = existing_destination(tmp_path)
    with sqlite3.connect(dest) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    checked = run_cli("--sqlite-path", str(dest), "--postgres-url", pg_url, "--verify-only")  # reads it
    assert checked.returncode == 1 and "Traceback" not in checked.stderr, explain(checked)  # other rows
    assert Path(f"{dest}-wal").exists() and Path(f"{dest}-wal").stat().st_size == 0
    exported(pg_url, dest, "--force-recreate", "--yes")
    assert_export_of(dest, pg_url)


# --- 5. failures: the destination untouched, no temporary file left --------------------------------


def prepare(tmp_path: Path, existing: bool) -> Path:
    return existing_destination(tmp_path) if existing else destination(tmp_path)


@pytest.mark.parametrize("existing", [False, True], ids=["absent", "existing"])
def test_ctrl_c_mid_export_exits_130_and_leaves_the_destination(big_pg, tmp_path, existing):
    dest = prepare(tmp_path, existing)
    before = dir_state(dest.parent)
    before_backends = set(backends(big_pg))
    with running(export_argv(big_pg, dest, "--force-recreate", "--yes")) as proc:
        if wait_copying(big_pg, dest, proc, before_backends) is None:
            pytest.fail("the export finished before it could be interrupted:\n" + explain(finish(proc)))
        proc.send_signal(signal.SIGINT)
        result = finish(proc)
    assert result.returncode == 130, explain(result)
    assert_one_line_error(result, "interrupted")
    assert dir_state(dest.parent) == before


@pytest.mark.parametrize("existing", [False, True], ids=["absent", "existing"])
def test_lost_connection_mid_export_exits_1_and_leaves_the_destination(big_pg, tmp_path, existing):
    dest = prepare(tmp_path, existing)
    before = dir_state(dest.parent)
    before_backends = set(backends(big_pg))
    with running(export_argv(big_pg, dest, "--force-recreate", "--yes")) as proc:
        seen = wait_copying(big_pg, dest, proc, before_backends)
        if seen is None:
            pytest.fail("the export finished before its connection could be cut:\n" + explain(finish(proc)))
        assert pg_query(big_pg, "SELECT pg_terminate_backend(%s)", (seen[0],)) == [(True,)]
        result = finish(proc)
    assert_failure(result, 1, "connection")  # said as a lost connection, as forward says it
    assert dir_state(dest.parent) == before


@pytest.mark.parametrize("existing", [False, True], ids=["absent", "existing"])
def test_disk_full_exits_1_and_leaves_the_destination(big_pg, tmp_path, existing):
    """`ulimit -f 2000` (2 MB per file): the export cannot be written, as on a full disk."""
    dest = prepare(tmp_path, existing)
    before = dir_state(dest.parent)
    argv = [
        "bash",
        "-c",
        'ulimit -f 2000 && exec "$@"',
        "bash",
        *export_argv(big_pg, dest, "--force-recreate", "--yes"),
    ]
    result = subprocess.run(argv, env=cli_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert_failure(result, 1)
    assert dir_state(dest.parent) == before


def test_a_destination_that_appears_during_the_export_is_not_replaced(big_pg, tmp_path):
    """Two exports to one new path: the one that finishes second must not silently replace the
    other's file (it had no --force-recreate). Here the other's file appears while this one copies."""
    dest = destination(tmp_path)
    before_backends = set(backends(big_pg))
    with running(export_argv(big_pg, dest)) as proc:
        if wait_copying(big_pg, dest, proc, before_backends) is None:
            pytest.fail("the export finished before the other file could appear:\n" + explain(finish(proc)))
        dest.write_bytes(b"the other export's file")
        result = finish(proc)
    assert_failure(result, 2, "appeared while the export ran", "--force-recreate")
    assert dest.read_bytes() == b"the other export's file"
    assert temp_files(dest) == []


def test_a_symlinked_destination_replaces_the_file_it_names(sample_db, pg_url, tmp_path):
    """--force-recreate through a link replaces the app's file, and the link stays a link."""
    migrated(sample_db, pg_url)
    real = existing_destination(tmp_path)
    link = tmp_path / "link.db"
    link.symlink_to(real)
    exported(pg_url, link, "--force-recreate", "--yes")
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert_export_of(real, pg_url)


@pytest.mark.parametrize("existing", [False, True], ids=["absent", "existing"])
def test_kill_9_mid_export_leaves_the_destination_and_a_rerun_succeeds(big_pg, tmp_path, existing):
    dest = prepare(tmp_path, existing)
    before = dir_state(dest.parent)
    before_backends = set(backends(big_pg))
    with running(export_argv(big_pg, dest, "--force-recreate", "--yes")) as proc:
        if wait_copying(big_pg, dest, proc, before_backends) is None:
            pytest.fail("the export finished before it could be killed:\n" + explain(finish(proc)))
        proc.kill()
        proc.wait(timeout=60)
    after = dir_state(dest.parent)
    leftovers = set(after) - set(before)
    assert all(name.startswith(f".{dest.name}.") for name in leftovers), leftovers
    assert {k: v for k, v in after.items() if k not in leftovers} == before, "the destination was touched"
    rerun = exported(big_pg, dest, "--force-recreate", "--yes")
    assert set(temp_files(dest)) <= leftovers, "the re-run left a temporary file of its own"
    temps = {name for name in leftovers if name.endswith(".tmp")}
    if temps:  # the killed run's file is named, for someone to delete
        assert "did not finish" in rerun.stderr and sorted(temps)[0] in rerun.stderr, explain(rerun)
    assert_app_schema(dest)
    got = sqlite_dump(dest)
    assert_same(got, pg_as_sqlite(big_pg), "export", "PostgreSQL")
    assert counts(got)["tasks"] == 23 + BIG_TASKS


# --- 6. schema drift ------------------------------------------------------------------------------


def test_drift_is_refused_with_the_difference(sample_db, pg_url, tmp_path):
    migrated(sample_db, pg_url)
    pg_query(pg_url, "ALTER TABLE tasks ADD COLUMN color text DEFAULT 'red'", autocommit=True)
    dest = destination(tmp_path)
    result = export(pg_url, dest)
    assert_failure(result, 1, "--allow-drift")
    assert "color" in result.stdout + result.stderr, explain(result)
    assert dir_state(dest.parent) == {}


def test_a_missing_column_is_refused(sample_db, pg_url, tmp_path):
    migrated(sample_db, pg_url)
    pg_query(pg_url, "ALTER TABLE tasks DROP COLUMN tags", autocommit=True)
    dest = destination(tmp_path)
    result = export(pg_url, dest)
    assert_failure(result, 1)
    assert "tags" in result.stdout + result.stderr, explain(result)
    assert dir_state(dest.parent) == {}


def test_allow_drift_exports_the_models_columns_and_says_so(sample_db, pg_url, tmp_path):
    migrated(sample_db, pg_url)
    pg_query(pg_url, "ALTER TABLE tasks ADD COLUMN color text DEFAULT 'red'", autocommit=True)
    dest = destination(tmp_path)
    result = exported(pg_url, dest, "--allow-drift")
    assert "color" in result.stdout, explain(result)
    assert_export_of(dest, pg_url)  # the models' schema, so no color column
    assert_same(sqlite_dump(dest), sqlite_dump(sample_db), "export", "original")


# --- 7. --dry-run, --verify-only, --report, --quiet, flags of the other direction -------------------


def test_dry_run_writes_nothing(sample_db, pg_url, tmp_path):
    migrated(sample_db, pg_url)
    dest = destination(tmp_path)
    result = export(pg_url, dest, "--dry-run")
    assert result.returncode == 0, explain(result)
    assert dir_state(dest.parent) == {}
    existing = existing_destination(tmp_path)
    before = dir_state(dest.parent)
    assert_failure(export(pg_url, existing, "--dry-run"), 2, "--force-recreate")
    forced = export(pg_url, existing, "--dry-run", "--force-recreate", "--yes")
    assert forced.returncode == 0, explain(forced)
    assert dir_state(dest.parent) == before


def test_dry_run_fails_where_the_export_would(sample_db, pg_url, tmp_path):
    migrated(sample_db, pg_url)
    pg_query(pg_url, "ALTER TABLE tasks ADD COLUMN color text", autocommit=True)
    dest = destination(tmp_path)
    dry = export(pg_url, dest, "--dry-run")
    assert dry.returncode == 1, explain(dry)
    assert dir_state(dest.parent) == {}


def test_a_timestamp_the_app_cannot_keep_is_refused_by_the_dry_run_and_the_export(
    sample_db, pg_url, tmp_path
):
    """PostgreSQL takes infinity and BC dates; the app's SQLAlchemy reads SQLite's text into a
    Python datetime (years 1 to 9999). Named before anything is written, dry run and real run alike."""
    migrated(sample_db, pg_url)
    pg_query(pg_url, "UPDATE tasks SET due_date = 'infinity' WHERE id = 3", autocommit=True)
    pg_query(pg_url, "UPDATE tasks SET created_at = '0044-03-15 BC' WHERE id = 5", autocommit=True)
    dest = destination(tmp_path)
    for args in (["--dry-run"], []):
        result = export(pg_url, dest, *args)
        assert_failure(
            result, 1, "2 rows", "tasks id 3 due_date = infinity", "tasks id 5 created_at = 0044-03-15"
        )
        assert "should not happen" not in result.stdout + result.stderr, explain(result)
        assert dir_state(dest.parent) == {}


def test_verify_only_passes_after_an_export_and_names_a_changed_value(sample_db, pg_url, tmp_path):
    migrated(sample_db, pg_url)
    dest = destination(tmp_path)
    exported(pg_url, dest)
    before = dir_state(dest.parent)
    same = export(pg_url, dest, "--verify-only")
    assert same.returncode == 0, explain(same)
    assert dir_state(dest.parent) == before
    pg_query(pg_url, "UPDATE tasks SET title = 'changed in PostgreSQL' WHERE id = 17", autocommit=True)
    changed = export(pg_url, dest, "--verify-only")
    assert changed.returncode == 1, explain(changed)
    output = changed.stdout + changed.stderr
    lines = [line for line in output.splitlines() if "tasks" in line and "17" in line and "title" in line]
    assert lines, f"no line names tasks, id 17 and title:\n{output}"
    # PostgreSQL is the side kept here: the advice brings todo.db up to date, never the other way.
    assert "PostgreSQL → SQLite" in changed.stdout and "--reverse --sync" in output, explain(changed)
    assert "re-run the migration" not in output, explain(changed)
    assert dir_state(dest.parent) == before
    forward_check = forward(dest, pg_url, "--verify-only")  # the forward direction agrees
    assert forward_check.returncode == 1, explain(forward_check)
    assert "--sync" in forward_check.stdout + forward_check.stderr, explain(forward_check)


def test_verify_only_names_each_difference_once_with_the_side_it_is_on(sample_db, pg_url, tmp_path):
    migrated(sample_db, pg_url)
    dest = destination(tmp_path)
    exported(pg_url, dest)
    conn = sqlite3.connect(dest, isolation_level=None)
    conn.execute(
        "INSERT INTO users (email, username, hashed_password, is_active, created_at) "
        "VALUES ('n@example.com', 'newcomer', 'x', 1, '2024-01-01 00:00:00.000000')"
    )
    conn.execute("UPDATE tasks SET title = 'sqlite side' WHERE id = 3")
    conn.close()
    result = export(pg_url, dest, "--verify-only")
    assert result.returncode == 1, explain(result)
    new_id = sqlite_rows(dest, "users")[-1][0]
    assert result.stdout.count(f"users id {new_id}: row only in todo.db") == 1, explain(result)
    assert "tasks id 3 column title: todo.db 'sqlite side' != PostgreSQL" in result.stdout, explain(result)


def test_report_and_quiet(sample_db, pg_url, tmp_path):
    migrated(sample_db, pg_url)
    dest = destination(tmp_path)
    report = tmp_path / "report.json"
    result = exported(pg_url, dest, "--quiet", "--report", str(report))
    assert len(result.stdout.strip().splitlines()) == 1, result.stdout
    data = json.loads(report.read_text())
    assert data["result"] == "ok", data
    assert pg_url.split("@")[0].split(":")[-1] not in report.read_text()  # no password
    # The way back's own terms: PostgreSQL is the source, the file the target.
    assert data["mode"] == "export" and data["target"] == str(dest) and data["source"] != str(dest)
    assert data["source_tables"] == {"users": 5, "tasks": 23, "recurring_patterns": 3}
    checked = {v["table"]: (v["ok"], v["source_rows"], v["target_rows"]) for v in data["verification"]}
    assert checked == {"users": (True, 5, 5), "tasks": (True, 23, 23), "recurring_patterns": (True, 3, 3)}


@pytest.mark.parametrize(
    "flag",
    [
        ("--on-invalid", "skip"),
        ("--rejects", "x.jsonl"),
        ("--strip-nul",),
        ("--epoch-unit", "seconds"),
        ("--no-verify",),
    ],
    ids=lambda f: f[0],
)
def test_flags_of_the_other_direction_are_usage_errors(sample_db, pg_url, tmp_path, flag):
    migrated(sample_db, pg_url)
    dest = destination(tmp_path)
    result = export(pg_url, dest, *flag)
    assert_failure(result, 2, flag[0])
    assert dir_state(dest.parent) == {}


# --- 8. round trip: SQLite -> PostgreSQL -> SQLite -> PostgreSQL ----------------------------------

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
int32 = st.integers(INT32_MIN, INT32_MAX)
stamps = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999))
bools = st.booleans()


def texts(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=CHARS, max_size=n)


def maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


@st.composite
def todo_data(draw) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Rows for the three tables, in model column order, every foreign key satisfied."""
    user_ids = draw(st.lists(int32, min_size=1, max_size=3, unique=True))
    n = len(user_ids)
    emails = draw(st.lists(texts(255), min_size=n, max_size=n, unique=True))
    names = draw(st.lists(texts(100), min_size=n, max_size=n, unique=True))
    users = [
        (
            uid,
            email,
            name,
            draw(texts(255)),
            draw(maybe(texts(255))),
            draw(bools),
            draw(stamps),
            draw(maybe(stamps)),
        )
        for uid, email, name in zip(user_ids, emails, names, strict=True)
    ]
    task_ids = draw(st.lists(int32, max_size=4, unique=True))
    tasks = [
        (
            tid,
            draw(texts(255)),
            draw(maybe(texts(2000))),
            draw(bools),
            draw(texts(20)),
            draw(maybe(texts(200))),
            draw(maybe(stamps)),
            draw(st.sampled_from(user_ids)),
            draw(maybe(st.sampled_from(task_ids))),
            draw(bools),
            draw(stamps),
            draw(maybe(stamps)),
        )  # fmt: skip
        for tid in task_ids
    ]
    patterns = []
    if task_ids:
        patterns = [
            (
                pid,
                draw(st.sampled_from(task_ids)),
                draw(st.sampled_from(user_ids)),
                draw(texts(20)),
                draw(int32),
                draw(maybe(texts(100))),
                draw(maybe(int32)),
                draw(maybe(stamps)),
                draw(maybe(stamps)),
                draw(bools),
                draw(stamps),
            )  # fmt: skip
            for pid in draw(st.lists(int32, max_size=3, unique=True))
        ]
    return users, tasks, patterns


LIMITS = (
    [(INT32_MAX, "", "x", "", None, True, datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999)),
     (INT32_MIN, "é" * 255, "名" * 100, "\r\n\t'\"\\", "🚀" * 255, False, datetime(1970, 1, 1), None)],
    [(INT32_MIN, "t" * 255, "", False, "", None, datetime(2000, 2, 29, 0, 0, 0, 1), INT32_MIN, INT32_MIN, True,
      datetime(1, 1, 1, 0, 0, 0, 999999), None),
     (0, "\u2028\u2029\ufeff\uffff", None, True, "urgent", "[]", None, INT32_MAX, None, False,
      datetime(9999, 12, 31, 23, 59, 59, 999999), datetime(2024, 1, 1))],
    [(INT32_MAX, 0, INT32_MAX, "custom", INT32_MIN, None, INT32_MAX, None, None, True, datetime(2024, 1, 1)),
     (-1, INT32_MIN, INT32_MIN, "daily", INT32_MAX, "", None, datetime(1, 1, 1), datetime(1, 1, 1), False,
      datetime(1, 1, 1))],
)  # fmt: skip


def app_value(value: object) -> object:
    """A Python value as the app's SQLAlchemy stores it in SQLite."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        return sqlite_timestamp(value)
    return value


def write_source(path: Path, data: tuple[list[tuple], list[tuple], list[tuple]]) -> Path:
    make_todo_db(path, tasks=0, users=0, patterns=0)  # the app's empty schema
    with sqlite3.connect(path) as conn:
        for table, rows in zip(TABLES, data, strict=True):
            if rows:
                marks = ",".join("?" * len(rows[0]))
                conn.executemany(
                    f"INSERT INTO {table} VALUES ({marks})", [tuple(map(app_value, r)) for r in rows]
                )
    conn.close()
    return path


@pytest.fixture(scope="module")
def roundtrip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reverse-roundtrip")


@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # each example is five CLI runs: no shrinking
)
@given(data=todo_data())
@example(data=LIMITS)
def test_round_trip_keeps_every_value(pg_url, pg_url_b, roundtrip_dir, data):
    source = write_source(roundtrip_dir / "todo.db", data)
    out = roundtrip_dir / "out.db"
    replace = ("--force-recreate", "--yes")

    migrated(source, pg_url, *replace)  # SQLite -> PostgreSQL A
    compare(source, pg_url)
    exported(pg_url, out, *replace)  # -> SQLite
    assert_app_schema(out)
    got = sqlite_dump(out)
    assert_same(got, sqlite_dump(source), "export", "source")
    assert_same(got, pg_as_sqlite(pg_url), "export", "PostgreSQL A")
    migrated(out, pg_url_b, *replace)  # -> PostgreSQL B
    assert pg_rows(pg_url_b) == pg_rows(pg_url)

    back = forward(out, pg_url_b, "--verify-only")
    assert back.returncode == 0, explain(back)
    there = export(pg_url, out, "--verify-only")
    assert there.returncode == 0, explain(there)
    assert export(pg_url_b, source, "--verify-only").returncode == 0


# --- 9. TLS and PgBouncer, as forward -------------------------------------------------------------


@pytest.fixture(scope="module")
def tls():
    server, ca = start_tls_server()
    try:
        server.psql("CREATE DATABASE tls_export")
        yield server, ca
    finally:
        server.destroy()
        shutil.rmtree(ca.parent.parent, ignore_errors=True)


def test_export_over_tls(sample_db, tls, tmp_path):
    server, ca = tls
    url = server.url("tls_export", query=f"sslmode=verify-full&sslrootcert={ca}").replace(
        "127.0.0.1", "localhost"
    )
    migrated(sample_db, url)
    dest = destination(tmp_path)
    exported(url, dest)
    assert_app_schema(dest)
    assert_same(sqlite_dump(dest), sqlite_dump(sample_db), "export over TLS", "original")
    plain = export(server.url("tls_export", query="sslmode=disable"), destination(tmp_path, "plain.db"))
    assert_failure(plain, None, "only accepts TLS")
    assert sorted(os.listdir(dest.parent)) == [dest.name]


@pytest.fixture(scope="module")
def bouncer():
    server = LocalPostgres().start()
    try:
        server.psql("CREATE DATABASE pooled_export")
        pool = PgBouncer(server, "pooled_export").start()
        try:
            yield server, pool
        finally:
            pool.stop()
    finally:
        server.destroy()


def test_export_through_pgbouncer_transaction_pooling(sample_db, bouncer, tmp_path):
    server, pool = bouncer
    migrated(sample_db, pool.url())
    dest = destination(tmp_path)
    exported(pool.url(), dest)
    assert_app_schema(dest)
    assert_same(sqlite_dump(dest), sqlite_dump(sample_db), "export through PgBouncer", "original")
    again = export(pool.url(), dest, "--verify-only")
    assert again.returncode == 0, explain(again)
