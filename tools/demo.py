"""`make demo`: the main job end to end, as a user would run it.

Uses ./todo.db if there is one (else makes the guide's sample: 5 users, 23 tasks, 3 patterns in
.demo/todo.db), and DATABASE_URL if set (else starts a throwaway PostgreSQL and stops it after).
Runs --dry-run, then the migration, then --verify-only, then the way back (--reverse into
.demo/todo-back.db) and its --verify-only, through the real CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tools.make_todo_db import make_todo_db

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str]) -> None:
    cmd = [sys.executable, str(ROOT / "migrate_sqlite_to_postgres.py"), *args]
    print(f"\n$ python migrate_sqlite_to_postgres.py {' '.join(args)}", flush=True)
    code = subprocess.run(cmd, env=env, cwd=ROOT).returncode
    if code != 0:
        sys.exit(f"demo: the migration tool exited with {code}")


def main() -> int:
    demo_dir = ROOT / ".demo"
    demo_dir.mkdir(exist_ok=True)
    sqlite_path = ROOT / "todo.db"
    if not sqlite_path.exists():
        sqlite_path = make_todo_db(demo_dir / "todo.db")
        print(
            f"demo: made the sample {sqlite_path.relative_to(ROOT)} (5 users, 23 tasks, 3 recurring patterns)"
        )
    env = dict(os.environ)
    server = None
    url = env.get("DATABASE_URL")
    if not url or url.startswith("sqlite"):
        from dotenv import dotenv_values

        url = dotenv_values(ROOT / ".env").get("DATABASE_URL") if (ROOT / ".env").exists() else None
    if not url or url.startswith("sqlite"):
        from tools.pgserver import LocalPostgres

        server = LocalPostgres(demo_dir / "pg").start()
        server.psql("DROP DATABASE IF EXISTS todo_phase5")
        server.psql("CREATE DATABASE todo_phase5")
        url = server.url("todo_phase5")
        print(f"demo: started a throwaway PostgreSQL on 127.0.0.1:{server.port}")
    env["DATABASE_URL"] = url
    try:
        run_cli("--sqlite-path", str(sqlite_path), "--dry-run", env=env)
        run_cli("--sqlite-path", str(sqlite_path), "--force-recreate", "--yes", env=env)
        run_cli("--sqlite-path", str(sqlite_path), "--verify-only", "--quiet", env=env)
        back = demo_dir / "todo-back.db"
        back.unlink(missing_ok=True)
        run_cli("--reverse", "--sqlite-path", str(back), "--quiet", env=env)
        run_cli("--reverse", "--sqlite-path", str(back), "--verify-only", "--quiet", env=env)
    finally:
        if server is not None:
            server.destroy()
            print("demo: stopped the throwaway PostgreSQL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
