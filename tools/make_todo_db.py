"""Make a todo.db as the app would: schema from models.py, values in SQLAlchemy's SQLite formats.

    python tools/make_todo_db.py todo.db                      # the guide's sample: 5 users, 23 tasks, 3 patterns
    python tools/make_todo_db.py big.db --tasks 1000000       # the benchmark: 10,000 users, 50,000 patterns

Deterministic for a given size and --seed, so benchmark runs compare like with like.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine

from models import Base

WORDS = (
    "review plan write call email fix deploy test refactor design buy book pay clean update prepare "
    "read draft sync ship schedule migrate document backup invoice renew order cancel verify"
).split()
NOUNS = (
    "report budget slides roadmap invoice groceries tickets dentist database release notes backlog "
    "contract garden newsletter server laptop passport meeting proposal"
).split()
TAGS = ["work", "home", "urgent", "errand", "health", "finance", "later", "büro", "家", "🚀"]
PRIORITIES = ["low", "medium", "high", "urgent"]
FREQUENCIES = ["daily", "weekly", "monthly", "custom"]
EPOCH = datetime(2024, 1, 1, 8, 0, 0)


def ts(dt: datetime | None) -> str | None:
    """SQLAlchemy's SQLite DateTime storage format."""
    return None if dt is None else dt.strftime("%Y-%m-%d %H:%M:%S.%f")


def sizes(tasks: int) -> tuple[int, int]:
    """Users and patterns for a task count, in the benchmark's proportions (1M: 10,000 / 50,000)."""
    return max(1, tasks // 100), max(0, tasks // 20)


def gen_users(rng: random.Random, n: int) -> Iterator[tuple]:
    for i in range(1, n + 1):
        created = EPOCH + timedelta(
            seconds=rng.randrange(0, 300 * 86400), microseconds=rng.randrange(1_000_000)
        )
        name = f"User {i}" if i % 7 else f"Zoë O'Brien-{i}"
        yield (
            i,
            f"user{i}@example.com" if i % 11 else f"User{i}@Example.com",
            f"user_{i}",
            "$2b$12$"
            + "".join(
                rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./")
                for _ in range(53)
            ),
            None if i % 5 == 0 else name,
            0 if i % 13 == 0 else 1,
            ts(created),
            ts(created + timedelta(days=rng.randrange(1, 30))) if i % 3 == 0 else None,
        )


def gen_tasks(rng: random.Random, n: int, users: int) -> Iterator[tuple]:
    for i in range(1, n + 1):
        title = f"{rng.choice(WORDS).capitalize()} the {rng.choice(NOUNS)} #{i}"
        if i % 17 == 0:
            title += " — «quoted» \"text\" with 'apostrophes' and a \\ backslash"
        description = None
        if i % 3:
            description = " ".join(rng.choice(WORDS + NOUNS) for _ in range(rng.randrange(4, 40)))
            if i % 29 == 0:
                description += "\n\tsecond line with a tab, émoji 🎉 and 中文"
        created = EPOCH + timedelta(
            seconds=rng.randrange(0, 600 * 86400), microseconds=rng.randrange(1_000_000)
        )
        due = (
            None
            if rng.random() < 0.3
            else created + timedelta(days=rng.randrange(0, 60), hours=rng.randrange(24))
        )
        parent = rng.randrange(1, i) if i > 10 and i % 10 == 0 else None
        tags = json.dumps(rng.sample(TAGS, rng.randrange(0, 4)), ensure_ascii=False) if i % 4 else None
        yield (
            i,
            title,
            description,
            1 if rng.random() < 0.4 else 0,
            rng.choice(PRIORITIES),
            tags,
            ts(due),
            rng.randrange(1, users + 1),
            parent,
            1 if i % 20 == 0 else 0,
            ts(created),
            ts(created + timedelta(hours=rng.randrange(1, 500))) if i % 2 else None,
        )


def gen_patterns(
    rng: random.Random, n: int, tasks: int, task_owner: dict[int, int] | None
) -> Iterator[tuple]:
    for i in range(1, n + 1):
        task_id = rng.randrange(1, tasks + 1)
        freq = FREQUENCIES[i % 4]
        created = EPOCH + timedelta(days=rng.randrange(0, 500), microseconds=rng.randrange(1_000_000))
        yield (
            i,
            task_id,
            task_owner[task_id] if task_owner else 1,
            freq,
            rng.randrange(1, 4),
            json.dumps(sorted(rng.sample(range(7), 3))) if freq == "weekly" else None,
            rng.randrange(1, 29) if freq == "monthly" else None,
            ts(created + timedelta(days=365)) if i % 2 else None,
            ts(created + timedelta(days=rng.randrange(1, 30))),
            0 if i % 9 == 0 else 1,
            ts(created),
        )


def make_todo_db(
    path: Path, *, tasks: int = 23, users: int | None = None, patterns: int | None = None, seed: int = 42
) -> Path:
    """Create `path` (replacing it) with the app's schema and deterministic data."""
    if users is None or patterns is None:
        default_users, default_patterns = (5, 3) if tasks == 23 else sizes(tasks)
        users = default_users if users is None else users
        patterns = default_patterns if patterns is None else patterns
    path = Path(path)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    engine.dispose()
    rng = random.Random(seed)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    with conn:
        conn.executemany("INSERT INTO users VALUES (?,?,?,?,?,?,?,?)", gen_users(rng, users))
        owners: dict[int, int] = {}

        def tasks_recording_owner() -> Iterator[tuple]:
            for row in gen_tasks(rng, tasks, users):
                if patterns:
                    owners[row[0]] = row[7]
                yield row

        conn.executemany("INSERT INTO tasks VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", tasks_recording_owner())
        if tasks:
            conn.executemany(
                "INSERT INTO recurring_patterns VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                gen_patterns(rng, patterns, tasks, owners),
            )
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", type=Path)
    p.add_argument("--tasks", type=int, default=23)
    p.add_argument("--users", type=int)
    p.add_argument("--patterns", type=int)
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()
    make_todo_db(a.path, tasks=a.tasks, users=a.users, patterns=a.patterns, seed=a.seed)
    with sqlite3.connect(f"file:{a.path}?mode=ro", uri=True) as conn:
        counts = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("users", "tasks", "recurring_patterns")
        }
    print(f"{a.path}: " + ", ".join(f"{n:,} {t}" for t, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
