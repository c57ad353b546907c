"""todo.db files as real tools and older app versions leave them (issue 10, "Trust").

Each `make_X(path) -> Path` builds one kind of file the way the named tool makes it, starting from the
app's own sample (tools/make_todo_db.make_todo_db): the real `sqlite3` shell for `.import`, the SQLite
library (the same one the shell uses) for DDL the app never wrote, a real child process killed with
SIGKILL for the hot journal. The module-level constants name the rows the tests look for.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tools.make_todo_db import make_todo_db

TABLES = ("users", "tasks", "recurring_patterns")
TS = "2024-05-01 10:00:00.123456"
TASK_INSERT = (
    "INSERT INTO tasks (id, title, description, completed, priority, tags, due_date, user_id, "
    "parent_task_id, is_recurring, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)
PATTERN_INSERT = (
    "INSERT INTO recurring_patterns (id, task_id, user_id, frequency, interval, created_at) "
    "VALUES (?,?,?,?,?,?)"
)


def file_digest(path: Path) -> str | None:
    """SHA-256 of a file's bytes, None if it does not exist."""
    path = Path(path)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _sample(path: Path, tasks: int = 23) -> Path:
    """The app's own sample next to `path` (a scratch file the caller removes)."""
    sample = Path(f"{path}.sample")
    return make_todo_db(sample, tasks=tasks)


def _fresh(path: Path) -> Path:
    path = Path(path)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def _app_ddl(sample: Path) -> dict[str, str]:
    """The CREATE TABLE statements SQLAlchemy wrote for the app (models.py)."""
    with sqlite3.connect(sample) as conn:
        return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())


def _with_key(sql: str, id_definition: str) -> str:
    """An app CREATE TABLE with its `id INTEGER NOT NULL … PRIMARY KEY (id)` replaced by a column
    definition (`id INTEGER PRIMARY KEY DESC`, `id INTEGER PRIMARY KEY AUTOINCREMENT`)."""
    sql = sql.replace("id INTEGER NOT NULL,", f"id {id_definition},", 1)
    return re.sub(r",\s*PRIMARY KEY \(id\)", "", sql, count=1)


def _rebuild(path: Path, ddl: dict[str, str], *, tasks: int = 23, indexes: bool = True) -> Path:
    """A file with the given CREATE TABLE statements (table -> SQL; None drops the table) holding the
    sample's rows, as `sqlite3 new.db` + `ATTACH` + `INSERT … SELECT` makes it."""
    path = _fresh(path)
    sample = _sample(path, tasks)
    app = _app_ddl(sample)
    conn = sqlite3.connect(path)
    conn.execute("ATTACH DATABASE ? AS sample", (str(sample),))
    with conn:
        for table in TABLES:
            sql = ddl.get(table, app[table])
            if sql is None:
                continue
            conn.execute(sql)
            name = conn.execute(
                "SELECT name FROM main.sqlite_master WHERE type = 'table' AND lower(name) = ?", (table,)
            ).fetchone()[0]
            cols = ", ".join(r[1] for r in conn.execute(f"PRAGMA sample.table_info({table})"))
            conn.execute(f'INSERT INTO main."{name}" ({cols}) SELECT {cols} FROM sample.{table}')
        if indexes:
            for sql, table in conn.execute(
                "SELECT sql, tbl_name FROM sample.sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            ).fetchall():
                if ddl.get(table, app[table]) is not None:
                    conn.execute(sql)
    conn.execute("DETACH DATABASE sample")
    conn.close()
    sample.unlink()
    return path


# --- 1. sqlite3 .import: every column TEXT, ids TEXT, no key --------------------------------------

IMPORT_TASKS = 6_000  # three of the old 2,000-row chunks, and a part


def make_sqlite3_import(path: Path, tasks: int = IMPORT_TASKS, *, empty_as_null: bool = True) -> Path:
    """The layout `sqlite3` (the shell, 3.x) produces with `.mode csv` + `.import FILE TABLE` into a
    table that does not exist yet: the CSV header names the columns, every column is declared TEXT
    (TEXT affinity, so ids, integers and booleans are stored as text), no primary key, no indexes.

    The CSV is exported from the app's sample with `sqlite3 -csv -header` (NULL becomes an empty field,
    which `.import` stores as ''). Choice made here: after the import the file gets the clean-up the
    SQLite FAQ suggests, `UPDATE t SET c = NULL WHERE c = ''`, on every column the models allow NULL
    in, so NULLs survive and nothing else changes; ids, integers, booleans and datetimes stay TEXT.
    Without `empty_as_null`, the file as .import leaves it."""
    path = _fresh(path)
    sample = _sample(path, tasks)
    workdir = path.parent / f"{path.name}.csv"
    workdir.mkdir(exist_ok=True)
    nullable: dict[str, list[str]] = {}
    with sqlite3.connect(sample) as conn:
        for table in TABLES:
            nullable[table] = [r[1] for r in conn.execute(f"PRAGMA table_info({table})") if not r[3]]
    script = [".mode csv"]
    for table in TABLES:
        csv_file = workdir / f"{table}.csv"
        with csv_file.open("w") as out:
            subprocess.run(
                ["sqlite3", "-csv", "-header", str(sample), f"SELECT * FROM {table} ORDER BY id"],
                stdout=out,
                check=True,
            )
        script.append(f".import '{csv_file}' {table}")
    for table, columns in nullable.items() if empty_as_null else ():
        for col in columns:
            script.append(f"UPDATE {table} SET {col} = NULL WHERE {col} = '';")
    subprocess.run(["sqlite3", str(path)], input="\n".join(script) + "\n", text=True, check=True)
    shutil.rmtree(workdir)
    sample.unlink()
    return path


# --- 2. CREATE TABLE … AS SELECT: no key, no constraints, duplicate ids ------------------------------

CTAS_EXACT_DUPLICATE = 3  # task 3 appears twice, byte for byte
CTAS_CHANGED_DUPLICATE = 4  # task 4 appears again later with another title
CTAS_LOWER_ROWID_DUPLICATE = 9  # task 9 appears again at a lower rowid (0): that copy is the first


def make_create_table_as(path: Path, tasks: int = 23, *, duplicates: bool = True) -> Path:
    """The file after someone "rebuilt" the tables by hand in the sqlite3 shell (or DB Browser for
    SQLite's copy-table) — `CREATE TABLE t2 AS SELECT * FROM t; DROP TABLE t; ALTER TABLE t2 RENAME TO
    t`: columns keep only an affinity (INT, TEXT, NUM), no primary key, no NOT NULL, no unique or other
    index. Rows were later added twice by an import script run twice:

    - task 3 twice, byte for byte (rowids 3 and tasks+1): the first copy is kept;
    - task 4 again with another title (rowid tasks+2): the first (rowid 4) is kept;
    - task 9 again at rowid 0 (an explicit rowid, lower than the original's 9): the copy at rowid 0 is
      the first by rowid and is kept, the original at rowid 9 is the duplicate."""
    path = _fresh(path)
    sample = _sample(path, tasks)
    conn = sqlite3.connect(path)
    conn.execute("ATTACH DATABASE ? AS sample", (str(sample),))
    with conn:
        for table in TABLES:
            conn.execute(f"CREATE TABLE {table}_new AS SELECT * FROM sample.{table} ORDER BY id")
            conn.execute(f"ALTER TABLE {table}_new RENAME TO {table}")
    conn.execute("DETACH DATABASE sample")
    sample.unlink()
    with conn:
        if duplicates:
            _add_duplicates(conn)
    conn.close()
    return path


def _add_duplicates(conn: sqlite3.Connection) -> None:
    conn.execute(f"INSERT INTO tasks SELECT * FROM tasks WHERE id = {CTAS_EXACT_DUPLICATE}")
    conn.execute(
        "INSERT INTO tasks SELECT id, title || ' (imported again, edited)', description, completed, "
        "priority, tags, due_date, user_id, parent_task_id, is_recurring, created_at, updated_at "
        f"FROM tasks WHERE id = {CTAS_CHANGED_DUPLICATE}"
    )
    conn.execute(
        "INSERT INTO tasks (rowid, id, title, description, completed, priority, tags, due_date, user_id, "
        "parent_task_id, is_recurring, created_at, updated_at) SELECT 0, id, 'kept: lowest rowid', "
        "description, completed, priority, tags, due_date, user_id, parent_task_id, is_recurring, "
        f"created_at, updated_at FROM tasks WHERE id = {CTAS_LOWER_ROWID_DUPLICATE}"
    )


# --- 3. INTEGER PRIMARY KEY DESC: id is not the rowid, and may be NULL ------------------------------

NULL_ID_TITLE = "inserted with id NULL"


def make_pk_desc(path: Path) -> Path:
    """Hand-written DDL with `id INTEGER PRIMARY KEY DESC` (users and tasks) — the documented SQLite
    quirk: with DESC the column is *not* an alias of the rowid, so it is an ordinary column in which
    SQLite (for backwards compatibility) accepts NULL in a PRIMARY KEY. App code that inserted
    `id = NULL` expecting an automatic id got a row whose id is NULL: one task here."""
    sample = _sample(Path(path))
    app = _app_ddl(sample)
    sample.unlink()
    ddl = {t: _with_key(app[t], "INTEGER PRIMARY KEY DESC") for t in ("users", "tasks")}
    path = _rebuild(path, ddl)
    with sqlite3.connect(path) as conn:
        assert (
            "PRIMARY KEY DESC"
            in conn.execute("SELECT sql FROM sqlite_master WHERE name = 'tasks'").fetchone()[0]
        )
        conn.execute(TASK_INSERT, (None, NULL_ID_TITLE, None, 0, "low", None, None, 1, None, 0, TS))
    conn.close()
    return path


# --- 4. WITHOUT ROWID, one text id ---------------------------------------------------------------

TEXT_ID = "T-1001"


def make_without_rowid(path: Path) -> Path:
    """Tables declared `WITHOUT ROWID` (users and tasks; an app that tuned SQLite for clustered keys,
    or a schema written for another database). The INTEGER PRIMARY KEY is then an ordinary NOT NULL
    key with INTEGER affinity, so a text id that does not look like a number is stored as text: one
    task was inserted with id 'T-1001' by a client that had switched to string ids."""
    sample = _sample(Path(path))
    app = _app_ddl(sample)
    sample.unlink()
    ddl = {t: app[t].rstrip().removesuffix(")").rstrip() + "\n) WITHOUT ROWID" for t in ("users", "tasks")}
    path = _rebuild(path, ddl)
    with sqlite3.connect(path) as conn:
        conn.execute(
            TASK_INSERT, (TEXT_ID, "a task with a string id", None, 0, "low", None, None, 2, None, 0, TS)
        )
        assert conn.execute("SELECT typeof(id) FROM tasks WHERE id = ?", (TEXT_ID,)).fetchone() == ("text",)
    conn.close()
    return path


# --- 5. AUTOINCREMENT with the last rows deleted -------------------------------------------------


def make_autoincrement_deleted(path: Path) -> Path:
    """Tables declared `id INTEGER PRIMARY KEY AUTOINCREMENT` (what Django, Rails and many hand-written
    SQLite schemas declare), after the newest rows were deleted: sqlite_sequence remembers the
    high-water mark (users 9, tasks 40, recurring_patterns 10), above max(id) (5, 23, 3)."""
    sample = _sample(Path(path))
    app = _app_ddl(sample)
    sample.unlink()
    ddl = {t: _with_key(sql, "INTEGER PRIMARY KEY AUTOINCREMENT") for t, sql in app.items()}
    path = _rebuild(path, ddl)
    with sqlite3.connect(path) as conn:
        for i in range(6, 10):
            conn.execute(
                "INSERT INTO users (email, username, hashed_password, is_active, created_at) VALUES (?,?,?,?,?)",
                (f"gone{i}@example.com", f"gone{i}", "h", 1, TS),
            )
        for _ in range(24, 41):
            conn.execute(
                "INSERT INTO tasks (title, completed, priority, user_id, is_recurring, created_at) "
                "VALUES ('deleted later', 0, 'low', 1, 0, ?)",
                (TS,),
            )
        for _ in range(4, 11):
            conn.execute(
                "INSERT INTO recurring_patterns (task_id, user_id, frequency, interval, is_active, created_at) "
                "VALUES (1, 1, 'daily', 1, 1, ?)",
                (TS,),
            )
        conn.execute("DELETE FROM recurring_patterns WHERE id > 3")
        conn.execute("DELETE FROM tasks WHERE id > 23")
        conn.execute("DELETE FROM users WHERE id > 5")
        seq = dict(conn.execute("SELECT name, seq FROM sqlite_sequence"))
        assert seq == {"users": 9, "tasks": 40, "recurring_patterns": 10}, seq
    conn.close()
    return path


AUTOINCREMENT_SEQ = {"users": 9, "tasks": 40, "recurring_patterns": 10}

# --- 6. epoch numbers in DateTime columns ----------------------------------------------------------

EPOCH_MS = 1730041281935  # 2024-10-27 15:01:21.935 UTC
EPOCH_S = 1730041281  # 2024-10-27 15:01:21 UTC
EPOCH_REAL_S = 1730041281.5  # exact in binary: 2024-10-27 15:01:21.5 UTC
# task id -> (column, value as stored, SQLite type)
EPOCH_ROWS = {
    201: ("created_at", EPOCH_S, "integer"),
    202: ("created_at", EPOCH_MS, "integer"),
    203: ("due_date", str(EPOCH_MS), "text"),
    204: ("created_at", EPOCH_REAL_S, "real"),
}
BASIC_FORMAT_ROWS = {
    205: ("due_date", "20240301T123000"),  # ISO 8601 basic format: never guessed
    206: ("due_date", "2024-03-01 12:30:00.1234567"),  # 7 fractional digits
}


def make_epoch_values(path: Path) -> Path:
    """Timestamps as JavaScript / Prisma / knex apps store them in SQLite: `Date.now()` milliseconds
    (Prisma's SQLite DateTime is an INTEGER of milliseconds), Unix seconds (`strftime('%s')`, Python
    `int(time.time())`), a float of seconds (`time.time()`), and a 13-digit millisecond string from a
    client that bound `String(Date.now())`. The app's DATETIME columns have NUMERIC affinity, which
    turns numeric-looking text into numbers, so tasks.due_date is declared TEXT here (as a JS schema
    declares it) to keep the millisecond string text. Two ISO basic-format values (no dashes, and seven
    fractional digits) sit beside them."""
    sample = _sample(Path(path))
    app = _app_ddl(sample)
    sample.unlink()
    path = _rebuild(path, {"tasks": app["tasks"].replace("due_date DATETIME", "due_date TEXT", 1)})
    with sqlite3.connect(path) as conn:
        for row_id, (column, value, _) in EPOCH_ROWS.items():
            created = value if column == "created_at" else TS
            due = value if column == "due_date" else None
            conn.execute(
                TASK_INSERT, (row_id, f"epoch {column}", None, 0, "low", None, due, 1, None, 0, created)
            )
        for row_id, (_, value) in BASIC_FORMAT_ROWS.items():
            conn.execute(TASK_INSERT, (row_id, "basic format", None, 0, "low", None, value, 1, None, 0, TS))
        for row_id, (column, _, kind) in EPOCH_ROWS.items():
            got = conn.execute(f"SELECT typeof({column}) FROM tasks WHERE id = ?", (row_id,)).fetchone()[0]
            assert got == kind, (row_id, got, kind)
    conn.close()
    return path


# --- 7. numbers in text columns --------------------------------------------------------------------

REAL_IN_TEXT = 0.1 + 0.2  # 0.30000000000000004; '0.3' would be another number
REAL_ROW = 301
INT_ROW = 302
INFINITY_ROW = 303  # tags = +Infinity, nothing else wrong
NUL_AND_INFINITY_ROW = 304  # a NUL in the title (rejected for that) and tags = -Infinity


def _js_schema(path: Path) -> Path:
    sample = _sample(Path(path))
    app = _app_ddl(sample)
    sample.unlink()
    tasks_sql = (
        app["tasks"].replace("description TEXT", "description STRING", 1).replace("tags TEXT", "tags JSON", 1)
    )
    return _rebuild(path, {"tasks": tasks_sql})


def make_numbers_in_text(path: Path) -> Path:
    """A schema written by knex / Sequelize for SQLite: tasks.tags declared `JSON` and
    tasks.description `STRING` — both NUMERIC affinity in SQLite (only CHAR/CLOB/TEXT give TEXT), so a
    number bound by the client stays a number: tags = 0.30000000000000004 (a REAL: JavaScript's
    0.1 + 0.2), description = 42 (an INTEGER)."""
    path = _js_schema(path)
    with sqlite3.connect(path) as conn:
        conn.execute(
            TASK_INSERT, (REAL_ROW, "a real in tags", None, 0, "low", REAL_IN_TEXT, None, 1, None, 0, TS)
        )
        conn.execute(
            TASK_INSERT, (INT_ROW, "an integer in description", 42, 0, "low", None, None, 1, None, 0, TS)
        )
        assert conn.execute("SELECT typeof(tags), tags FROM tasks WHERE id = ?", (REAL_ROW,)).fetchone() == (
            "real",
            REAL_IN_TEXT,
        )
        assert conn.execute("SELECT typeof(description) FROM tasks WHERE id = ?", (INT_ROW,)).fetchone() == (
            "integer",
        )
    conn.close()
    return path


def make_infinities(path: Path) -> Path:
    """The same knex-style schema (tags declared JSON, NUMERIC affinity) where a client bound
    JavaScript's `Infinity` (JSON.parse('1e999')): task 303's tags = +Infinity (a REAL with no exact
    text form); task 304 has tags = -Infinity and a NUL byte in its title (so it is rejected for the
    NUL, and its original row, infinity included, must go to the rejects file as strict JSON)."""
    path = _js_schema(path)
    inf = float("inf")
    with sqlite3.connect(path) as conn:
        conn.execute(
            TASK_INSERT, (INFINITY_ROW, "infinity in tags", None, 0, "low", inf, None, 1, None, 0, TS)
        )
        conn.execute(
            TASK_INSERT,
            (NUL_AND_INFINITY_ROW, "nul \x00 and -inf", None, 0, "low", -inf, None, 1, None, 0, TS),
        )
        assert (
            conn.execute("SELECT typeof(tags) FROM tasks WHERE id IN (303, 304)").fetchall()
            == [("real",)] * 2
        )
    conn.close()
    return path


# --- 8. a crashed writer's hot rollback journal --------------------------------------------------------

_CRASHING_WRITER = r"""
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode = DELETE")
conn.execute("PRAGMA cache_size = 8")  # a few pages: the change spills into the file before COMMIT
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE tasks SET description = printf('%.4000c', 'x') || id")
print("written, not committed", flush=True)
sys.stdin.read()  # killed here
"""


def make_hot_journal(path: Path) -> Path:
    """A todo.db whose writer (the app, rollback-journal mode, SQLite's default) was killed with
    SIGKILL (OOM killer, power loss) in the middle of a transaction big enough to spill changed pages
    into the file: `todo.db-journal` is left behind, hot — the original pages a writer must copy back
    before anyone may read the file. Checked here on a copy: opening it read-write rolls the journal
    back and restores the original rows."""
    path = make_todo_db(_fresh(path), tasks=500)
    before = file_digest(path)
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_WRITER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "written, not committed"
        journal = Path(f"{path}-journal")
        assert journal.exists() and journal.stat().st_size > 0
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert journal.read_bytes()[:8] == bytes.fromhex("d9d505f920a163d7")  # a journal header, not zeroed
    assert file_digest(path) != before  # changed pages reached the file: only the journal can undo them
    check = path.parent / f"{path.name}.hotcheck"
    check.mkdir(exist_ok=True)
    shutil.copy(path, check / "todo.db")
    shutil.copy(journal, check / "todo.db-journal")
    with sqlite3.connect(check / "todo.db") as conn:  # read-write: rolls the hot journal back
        assert conn.execute("SELECT count(*) FROM tasks WHERE description LIKE 'xxxx%'").fetchone() == (0,)
    conn.close()
    assert not (check / "todo.db-journal").exists()
    shutil.rmtree(check)
    return path


# --- 8b. a WAL database, -wal present, in a read-only directory -----------------------------------


def make_wal_in_readonly_dir(directory: Path, *, with_wal: bool = True) -> Path:
    """A WAL-mode todo.db copied while the app had un-checkpointed changes, then put in a read-only
    directory (a backup mount, a directory owned by another user). With `with_wal`, copied as
    `cp todo.db todo.db-wal backup/` (the -shm left out as "temporary"); without, `cp todo.db backup/`
    alone (the header still says WAL). Either way SQLite must create files next to it to read it.
    Returns the db path; the caller makes the directory read-only."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    live = make_todo_db(directory.parent / f"{directory.name}-live.db")
    conn = sqlite3.connect(live)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    with conn:
        conn.execute("UPDATE tasks SET title = title || ' (edited)' WHERE id <= 5")
    target = directory / "todo.db"
    shutil.copy(live, target)
    if with_wal:
        shutil.copy(f"{live}-wal", f"{target}-wal")
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{live}{suffix}").unlink(missing_ok=True)
    assert target.read_bytes()[18:20] == b"\x02\x02"  # the header's WAL-mode read/write versions
    assert not with_wal or Path(f"{target}-wal").stat().st_size > 0
    return target


# --- 9. an older app version's file ----------------------------------------------------------------


def make_users_capitalised(path: Path) -> Path:
    """An older app version whose model said `__tablename__ = "Users"`: the same table, its name in
    another case (SQLite names are case-insensitive: `SELECT * FROM users` reads it)."""
    path = make_todo_db(_fresh(path))
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE users RENAME TO users_renaming")  # a rename to itself is refused
        conn.execute("ALTER TABLE users_renaming RENAME TO Users")
    conn.close()
    return path


def make_without_recurring_patterns(path: Path) -> Path:
    """A todo.db from an app version before recurring tasks existed: no recurring_patterns table."""
    path = make_todo_db(_fresh(path))
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE recurring_patterns")
    conn.close()
    return path


# --- 10. ids at and past PostgreSQL integer's end, ids ≤ 0 -----------------------------------------

INT_MAX = 2**31 - 1
BIG_ID = 2**31


def _set_task_id(path: Path, old: int, new: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE tasks SET id = ? WHERE id = ?", (new, old))
        conn.execute("UPDATE tasks SET parent_task_id = ? WHERE parent_task_id = ?", (new, old))
        conn.execute("UPDATE recurring_patterns SET task_id = ? WHERE task_id = ?", (new, old))
    conn.close()


def make_max_int_id(path: Path) -> Path:
    """Task 23 renumbered to 2147483647 (an import that used "a big id nobody will reach", or a
    client id scheme): valid in PostgreSQL integer, but the id sequence has nowhere to go after it."""
    path = make_todo_db(_fresh(path))
    _set_task_id(path, 23, INT_MAX)
    return path


def make_big_id(path: Path) -> Path:
    """Task 23 with id 2147483648 = 2^31 (SQLite integers are 64-bit; PostgreSQL integer ends at
    2^31-1): a Twitter-style / timestamp-derived id from a sync client."""
    path = make_todo_db(_fresh(path))
    _set_task_id(path, 23, BIG_ID)
    return path


def make_nonpositive_ids(path: Path) -> Path:
    """recurring_patterns whose ids are all ≤ 0 (0, -1, -2): a sync tool that gave locally created rows
    negative ids until the server assigned real ones."""
    path = make_todo_db(_fresh(path))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE recurring_patterns SET id = 1 - id")
        assert conn.execute("SELECT max(id) FROM recurring_patterns").fetchone() == (0,)
    conn.close()
    return path


# --- 11. the realistic dirty file of class 3 ----------------------------------------------------------

CASCADE_BAD_USER = 60  # NUL byte in full_name
CASCADE_ROWS = {
    ("users", 60): "nul_byte",
    ("tasks", 200): "parent_rejected",  # owned by user 60
    ("tasks", 150): "parent_rejected",  # user 3's task, parent_task_id = 200
    ("tasks", 140): "parent_rejected",  # user 4's task, parent_task_id = 150 (lower id than its parent)
    ("recurring_patterns", 50): "parent_rejected",  # pattern of task 140, user 4
}


def make_cascade_dirty(path: Path) -> Path:
    """What years of app use leave: user 60's full_name holds a NUL byte (pasted from a PDF); their task
    200; user 3 made task 150 a subtask of 200 (shared list); user 4 made 140 a subtask of 150, and
    a recurring pattern for 140. Written in id order, so a child (140) comes before its parent (150)."""
    path = make_todo_db(_fresh(path))
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO users VALUES (?, 'pdf@example.com', 'pdf_paster', 'h', ?, 1, ?, NULL)",
            (CASCADE_BAD_USER, "Ann\x00 Smith", TS),
        )
        conn.execute(TASK_INSERT, (200, "owned by the NUL user", None, 0, "low", None, None, 60, None, 0, TS))
        conn.execute(TASK_INSERT, (150, "another user's subtask", None, 0, "low", None, None, 3, 200, 0, TS))
        conn.execute(TASK_INSERT, (140, "a subtask of that", None, 0, "low", None, None, 4, 150, 0, TS))
        conn.execute(PATTERN_INSERT, (50, 140, 4, "daily", 1, TS))
    conn.close()
    return path


# --- 12. wide rows -------------------------------------------------------------------------------------

WIDE_TASKS = 3_000
WIDE_BYTES = 50_000


def make_wide_descriptions(path: Path, tasks: int = WIDE_TASKS, width: int = WIDE_BYTES) -> Path:
    """The app's sample where every task's description is a 50 KB note (pasted e-mails, meeting
    transcripts): 3,000 tasks, about 150 MB. Deterministic text, different in every row."""
    path = make_todo_db(_fresh(path), tasks=tasks)
    rng = random.Random(7)
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "UPDATE tasks SET description = ? WHERE id = ?",
            (((f"{i}:" + rng.randbytes(width // 2).hex())[:width], i) for i in range(1, tasks + 1)),
        )
    conn.close()
    return path


# --- 13. views, triggers, extra indexes ---------------------------------------------------------------

SQLITE_EXTRAS = {"view": "open_tasks", "trigger": "tasks_touch_updated_at", "index": "idx_tasks_due_date"}


def make_views_triggers(path: Path) -> Path:
    """The app's sample after a developer added, with the sqlite3 shell, a view for a report, a trigger
    that keeps updated_at current, and an index for a slow query — none of them in models.py."""
    path = make_todo_db(_fresh(path))
    with sqlite3.connect(path) as conn:
        conn.execute(
            f"CREATE VIEW {SQLITE_EXTRAS['view']} AS SELECT id, title FROM tasks WHERE completed = 0"
        )
        conn.execute(
            f"CREATE TRIGGER {SQLITE_EXTRAS['trigger']} AFTER UPDATE ON tasks BEGIN "
            "UPDATE tasks SET updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE id = NEW.id; END"
        )
        conn.execute(f"CREATE INDEX {SQLITE_EXTRAS['index']} ON tasks (due_date)")
    conn.close()
    return path


# --- 14. text the target encoding cannot hold ------------------------------------------------------

EMOJI_TASK = 400
MULTIBYTE_USER = 70


def make_non_latin1(path: Path) -> Path:
    """The app's sample (its tags and the em dash in task 17's title normalised, so one row stands out)
    plus task 400 whose title has an emoji: fine in UTF-8, no equivalent in LATIN1; and user 1 named
    'Zoë', which LATIN1 holds."""
    path = make_todo_db(_fresh(path))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE users SET full_name = 'Zoë O''Brien' WHERE id = 1")
        conn.execute("UPDATE tasks SET tags = '[\"work\"]' WHERE tags IS NOT NULL")
        conn.execute("UPDATE tasks SET title = replace(title, '—', '-')")
        conn.execute(TASK_INSERT, (EMOJI_TASK, "ship it 🚀", None, 0, "low", None, None, 1, None, 0, TS))
    conn.close()
    return path


def make_multibyte_255(path: Path) -> Path:
    """The app's sample plus user 70 whose full_name is 255 characters of 'é' (510 bytes in UTF-8):
    fits the model's String(255), but not a varchar(255) in an SQL_ASCII database, which counts bytes."""
    path = make_todo_db(_fresh(path))
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO users VALUES (?, 'accent@example.com', 'accent', 'h', ?, 1, ?, NULL)",
            (MULTIBYTE_USER, "é" * 255, TS),
        )
    conn.close()
    return path


# --- 15. a corrupt page met during the copy ---------------------------------------------------------

CORRUPT_TASK = 20


def make_corrupt_overflow(path: Path) -> Path:
    """A todo.db with one damaged page (a bad sector, a copy taken mid-write): task 20's description
    is long enough to need overflow pages and the first one's next-page pointer is overwritten, so the
    file opens, counts its rows and lists its tables normally; only reading that value fails
    ("database disk image is malformed")."""
    path = make_todo_db(_fresh(path), tasks=200)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE tasks SET description = ? WHERE id = ?", ("long " * 4000, CORRUPT_TASK))
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = [
            r[0]
            for r in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = 'tasks' AND pagetype = 'overflow' ORDER BY pageno"
            )
        ]
    conn.close()
    assert pages
    with open(path, "r+b") as f:
        f.seek((pages[0] - 1) * page_size)
        f.write(b"\xff\xff\xff\xf0")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM tasks").fetchone() == (200,)
        try:
            conn.execute("SELECT description FROM tasks WHERE id = ?", (CORRUPT_TASK,)).fetchall()
        except sqlite3.DatabaseError as e:
            assert "malformed" in str(e)
        else:
            raise AssertionError("the damaged page reads back")
    conn.close()
    return path


# --- 16. no indexes at all, many rows --------------------------------------------------------------


def make_no_indexes(path: Path, tasks: int = 40_000) -> Path:
    """A large todo.db rebuilt with `CREATE TABLE … AS SELECT` (no key, no index of any kind): every
    lookup by id is a full scan unless the reader builds its own."""
    return make_create_table_as(path, tasks=tasks, duplicates=False)
