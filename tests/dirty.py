"""Dirty todo.db files, as years of app use leave them: every case the data-fidelity issue names."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tools.make_todo_db import make_todo_db

# (table, id) -> why the row cannot be stored as it is
BAD_ROWS = {
    ("tasks", 101): "nul_byte",
    ("tasks", 102): "too_long",
    ("tasks", 103): "missing_parent",  # user 999 was deleted
    ("tasks", 104): "missing_parent",  # parent task 5000 was deleted
    ("tasks", 105): "bad_datetime",
    ("tasks", 106): "null_in_not_null",
    ("users", 50): "duplicate",  # same email as user 1, byte for byte
    ("recurring_patterns", 20): "missing_parent",  # task 7777 was deleted
}
# Rows that are fine themselves but point at a rejected row (rejected too in skip mode).
DEPENDENT_ROWS = {("tasks", 107): ("users", 50), ("recurring_patterns", 21): ("tasks", 101)}
# Lossless conversions, and the values PostgreSQL must end up with.
CONVERTED = {
    ("tasks", 110, "completed"): True,  # 'true'
    ("tasks", 111, "completed"): False,  # 'false'
    ("tasks", 112, "due_date"): "2024-03-01 12:30:00",  # '2024-03-01T12:30:00'
    ("tasks", 113, "due_date"): "2024-03-01 12:30:00",  # '2024-03-01T12:30:00Z'
    ("tasks", 114, "due_date"): "2024-03-01 07:00:00",  # '2024-03-01T12:30:00+05:30'
    ("tasks", 115, "due_date"): "2024-03-01 00:00:00",  # '2024-03-01'
}
CLEAN_TEXT = {
    120: "emoji 🎉🚀 CJK 中文 日本語 한국어 and RTL עברית",
    121: "quotes ' \" `` and backslashes \\ \\\\ \\N \\t",
    122: "tab\there\nnewline\r\ncarriage return",
    123: "x" * 100_000,  # very long TEXT in description
}


def make_loose_db(path: Path) -> None:
    """The guide's sample in an older app's schema: no NOT NULLs, no unique indexes, as early todo.db
    files were made (SQLite then accepts NULLs and duplicates the models forbid)."""
    sample = path.with_name(path.name + ".sample")
    make_todo_db(sample)
    conn = sqlite3.connect(path)
    conn.execute("ATTACH DATABASE ? AS sample", (str(sample),))
    ddl = conn.execute("SELECT name, sql FROM sample.sqlite_master WHERE type = 'table'").fetchall()
    with conn:
        for name, sql in ddl:
            conn.execute(sql.replace(" NOT NULL", ""))
            conn.execute(f"INSERT INTO main.{name} SELECT * FROM sample.{name}")
    conn.execute("DETACH DATABASE sample")
    conn.close()
    sample.unlink()


def make_dirty_db(path: Path) -> Path:
    """The guide's sample plus one row for each case; source of truth for the expectations above."""
    make_loose_db(path)
    conn = sqlite3.connect(path)
    ts = "2024-05-01 10:00:00.123456"
    ins = (
        "INSERT INTO tasks (id, title, description, completed, priority, tags, due_date, user_id, "
        "parent_task_id, is_recurring, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
    )
    with conn:
        conn.execute(
            "INSERT INTO users VALUES (50, 'user1@example.com', 'dup_email', 'h', NULL, 1, ?, NULL)", (ts,)
        )
        conn.execute(
            "INSERT INTO users VALUES (51, 'USER1@EXAMPLE.COM', 'case_only', 'h', NULL, 1, ?, NULL)", (ts,)
        )
        rows = [
            (101, "nul \x00 byte", None, 0, "low", None, None, 1, None, 0, ts),
            (102, "t" * 9000, None, 0, "low", None, None, 1, None, 0, ts),
            (103, "orphan of deleted user", None, 0, "low", None, None, 999, None, 0, ts),
            (104, "child of deleted task", None, 0, "low", None, None, 1, 5000, 0, ts),
            (105, "bad date", None, 0, "low", None, "next tuesday", 1, None, 0, ts),
            (106, None, None, 0, "low", None, None, 1, None, 0, ts),
            (107, "task of the duplicate user", None, 0, "low", None, None, 50, None, 0, ts),
            (110, "bool as text true", None, "true", "low", None, None, 1, None, 0, ts),
            (111, "bool as text false", None, "false", "low", None, None, 1, None, 0, ts),
            (112, "iso T", None, 0, "low", None, "2024-03-01T12:30:00", 1, None, 0, ts),
            (113, "iso Z", None, 0, "low", None, "2024-03-01T12:30:00Z", 1, None, 0, ts),
            (114, "iso offset", None, 0, "low", None, "2024-03-01T12:30:00+05:30", 1, None, 0, ts),
            (115, "date only", None, 0, "low", None, "2024-03-01", 1, None, 0, ts),
        ]
        rows += [
            (i, text[:200], text, 0, "low", None, None, 2, None, 0, ts) for i, text in CLEAN_TEXT.items()
        ]
        conn.executemany(ins, rows)
        pat = "INSERT INTO recurring_patterns (id, task_id, user_id, frequency, interval, created_at) VALUES (?,?,?,?,?,?)"
        conn.execute(pat, (20, 7777, 1, "daily", 1, ts))
        conn.execute(pat, (21, 101, 1, "daily", 1, ts))
    conn.close()
    return path


def add_schema_drift(path: Path) -> None:
    """An unknown column, a model column the source lacks, and an extra table."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("ALTER TABLE tasks ADD COLUMN color TEXT")
        conn.execute("UPDATE tasks SET color = 'red' WHERE id = 1")
        conn.execute("ALTER TABLE users DROP COLUMN updated_at")
        conn.execute("CREATE TABLE audit_log (id INTEGER PRIMARY KEY, what TEXT)")
        conn.execute("INSERT INTO audit_log (what) VALUES ('login'), ('logout')")
    conn.close()
