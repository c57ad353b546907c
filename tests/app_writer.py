"""A stand-in for the running app: writes to a WAL todo.db what the app writes, until told to stop.

    python tests/app_writer.py TODO_DB STOP_FILE [SEED]

Each transaction does what a request would: a new user now and then, new tasks (some subtasks of
an existing task), updates (completing a task, moving a due date by one microsecond, editing a
title), deletes of tasks and patterns (cascading as PostgreSQL would: foreign keys on), new
recurring patterns. Timestamps are in SQLAlchemy's SQLite form. After every commit it prints the
number of transactions so far, so a test can wait for progress instead of sleeping; it stops at
the first commit after STOP_FILE exists, prints "stopped" and exits.
"""

from __future__ import annotations

import random
import sqlite3
import sys
from datetime import datetime, timedelta
from pathlib import Path


def stamp(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")


def one_request(db: sqlite3.Connection, rnd: random.Random, n: int) -> None:
    now = datetime(2026, 11, 25, 12, 0, 0) + timedelta(microseconds=n * 1_000_003)
    (max_user,) = db.execute("SELECT max(id) FROM users").fetchone()
    task_ids = [r[0] for r in db.execute("SELECT id FROM tasks ORDER BY random() LIMIT 6")]
    if n % 7 == 0 or not max_user:
        db.execute(
            "INSERT INTO users (email, username, hashed_password, full_name, is_active, created_at) "
            "VALUES (?, ?, 'x', ?, 1, ?)",
            (f"writer{n}@example.com", f"writer{n}", f"Writer Nº{n} 'quoted'", stamp(now)),
        )
        (max_user,) = db.execute("SELECT max(id) FROM users").fetchone()
    user = rnd.randint(1, max_user)
    if not db.execute("SELECT 1 FROM users WHERE id = ?", (user,)).fetchone():
        user = max_user
    for _ in range(rnd.randint(1, 3)):
        parent = rnd.choice(task_ids) if task_ids and rnd.random() < 0.3 else None
        db.execute(
            "INSERT INTO tasks (title, description, completed, priority, tags, due_date, user_id, "
            "parent_task_id, is_recurring, created_at) VALUES (?, ?, 0, ?, ?, ?, ?, ?, 0, ?)",
            (f"task {n} ✓", "line one\nline two, with 'quotes'" if rnd.random() < 0.5 else None,
             rnd.choice(["low", "medium", "high"]), '["work"]', stamp(now + timedelta(days=3)), user, parent,
             stamp(now)),
        )  # fmt: skip
    for task in task_ids[:3]:
        choice = rnd.random()
        if choice < 0.4:
            db.execute("UPDATE tasks SET completed = 1, updated_at = ? WHERE id = ?", (stamp(now), task))
        elif choice < 0.7:
            row = db.execute("SELECT due_date FROM tasks WHERE id = ?", (task,)).fetchone()
            if row and row[0]:
                moved = datetime.fromisoformat(row[0]) + timedelta(microseconds=1)
                db.execute("UPDATE tasks SET due_date = ? WHERE id = ?", (stamp(moved), task))
        else:
            db.execute(
                "UPDATE tasks SET title = title || ' (edited)', updated_at = ? WHERE id = ?",
                (stamp(now), task),
            )
    if len(task_ids) > 4 and rnd.random() < 0.5:
        db.execute("DELETE FROM tasks WHERE id = ?", (task_ids[4],))  # patterns cascade, subtasks SET NULL
    if task_ids and rnd.random() < 0.3:
        db.execute(
            "INSERT INTO recurring_patterns (task_id, user_id, frequency, interval, is_active, created_at, "
            "next_occurrence) SELECT id, user_id, 'weekly', 1, 1, ?, ? FROM tasks WHERE id = ?",
            (stamp(now), stamp(now + timedelta(days=7)), task_ids[0]),
        )
    if rnd.random() < 0.1:
        db.execute("DELETE FROM recurring_patterns WHERE id = (SELECT min(id) FROM recurring_patterns)")


def main(argv: list[str]) -> int:
    path, stop = Path(argv[1]), Path(argv[2])
    rnd = random.Random(int(argv[3]) if len(argv) > 3 else 1)
    db = sqlite3.connect(path, isolation_level=None, timeout=60)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    n = 0
    while True:
        db.execute("BEGIN IMMEDIATE")
        one_request(db, rnd, n)
        db.execute("COMMIT")
        n += 1
        print(n, flush=True)
        if stop.exists():
            print("stopped", flush=True)
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
