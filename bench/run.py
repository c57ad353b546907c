"""`make bench`: this tool side by side with its baselines, in one run, on one throwaway server.

    python -m bench.run [--tasks 1000000] [--repeat 1] [--skip naive,pgloader,duckdb]

Generates a deterministic todo.db (cached in bench/data/), starts a local PostgreSQL with default
durability settings, and runs each contender into a fresh database:
  raw pipe   sqlite3 -csv | psql \\copy into bare tables, then keys, indexes, foreign keys, sequences
  DuckDB     the same bare tables, then DuckDB ATTACHes todo.db (TYPE sqlite) and the database
             (TYPE postgres) and runs INSERT INTO pg.<table> SELECT ... per table (binary COPY),
             then the raw pipe's keys, indexes, foreign keys, sequences. DuckDB lives in the bench's
             own venv (bench/.duckdb-venv, made on first use from PyPI: duckdb and the offline
             extension packages duckdb-ext-sqlite / duckdb-ext-postgres); it loads nothing from the
             network at run time. If it cannot be installed, the run says so and goes on.
  this tool  migrate_sqlite_to_postgres.py with default settings (validation and verification on)
  pgloader   when installed (apt-get install pgloader)
  naive      a typical SQLAlchemy batch-insert script (bench/naive_sqlalchemy.py)
Prints wall time, the ratio to the raw pipe, peak RSS (the whole process tree) and rows/s, then
this tool's phases. Every contender's row counts are checked afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg2

from models import Base
from todo_migration.load import create_table_sql, foreign_key_sql, key_and_index_sql, qualified
from todo_migration.plan import TablePlan
from tools.make_todo_db import make_todo_db, sizes
from tools.pgserver import LocalPostgres

ROOT = Path(__file__).resolve().parent.parent

TABLES = [t.name for t in Base.metadata.sorted_tables]

# DuckDB and its extensions are released together: the extension packages carry the files built for
# exactly one DuckDB version, so the three are pinned as one.
DUCKDB_REQUIREMENTS = [
    "duckdb==1.4.4",
    "duckdb-ext-sqlite==1.4.4.20260205",
    "duckdb-ext-postgres==1.4.4.20260205",
]
DUCKDB_ENV = ROOT / "bench" / ".duckdb-venv"


@dataclass
class Result:
    name: str
    seconds: float
    peak_rss_mb: float
    ok: bool
    note: str = ""


def measure(
    cmd: list[str] | str, *, shell: bool = False, env: dict | None = None
) -> tuple[float, float, int, str]:
    """Wall time and the peak summed RSS of the process and all its descendants."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, shell=shell, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT
    )
    peak = 0
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.append(proc.stdout.read()), daemon=True)
    reader.start()
    parent = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            procs = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    reader.join()
    return elapsed, peak / 2**20, proc.returncode, b"".join(output).decode("utf-8", "replace")


def bare_plans() -> list[TablePlan]:
    return [TablePlan(t.name, t, [], [], [], 0, True) for t in Base.metadata.sorted_tables]


def schema_sql() -> str:
    """The bare typed tables: columns, types, NOT NULLs, defaults, serial ids; no keys yet."""
    return ";\n".join(create_table_sql(tp) for tp in bare_plans()) + ";"


def after_sql() -> str:
    """Primary keys, indexes, foreign keys and sequences, as the tool builds them after its copy."""
    plans = bare_plans()
    after = ";\n".join(s for tp in plans for s in key_and_index_sql(tp))
    after += ";\n" + ";\n".join(s for tp in plans for s in foreign_key_sql(tp))
    after += ";\n" + ";\n".join(
        f"SELECT setval(pg_get_serial_sequence('{tp.name}', 'id'), max(id)) FROM {qualified(tp)}"
        for tp in plans
    )
    return after + ";"


def raw_pipe_script(db: Path, url: str) -> str:
    """The fastest honest baseline: no checks, but the same tables, keys, indexes and sequences."""
    lines = ["set -eo pipefail", f"psql -X -q '{url}' <<'SQL'\n{schema_sql()}\nSQL"]
    for name in TABLES:
        lines.append(
            f"sqlite3 -csv '{db}' 'SELECT * FROM {name}' | psql -X -q '{url}' -c '\\copy {name} FROM STDIN CSV'"
        )
    lines.append(f"psql -X -q '{url}' <<'SQL'\n{after_sql()}\nSQL")
    return "\n".join(lines)


def duckdb_pipe_script(python: Path, db: Path, url: str) -> str:
    """What a data engineer types: DuckDB reads todo.db with its sqlite extension and writes through
    its postgres extension (binary COPY), into the raw pipe's bare tables, in foreign-key order;
    then the raw pipe's keys, indexes, foreign keys and sequences. No checks."""
    inserts = []
    for table in Base.metadata.sorted_tables:
        cols = ", ".join(f'"{c.name}"' for c in table.columns)
        inserts.append(f"INSERT INTO pg.{table.name} ({cols}) SELECT {cols} FROM todo.{table.name};")
    duck = "\n".join(
        [
            f"ATTACH '{db}' AS todo (TYPE sqlite, READ_ONLY);",
            f"ATTACH '{url}' AS pg (TYPE postgres);",
            *inserts,
        ]
    )
    return "\n".join(
        [
            "set -eo pipefail",
            f"psql -X -q '{url}' <<'SQL'\n{schema_sql()}\nSQL",
            f"'{python}' '{ROOT / 'bench' / 'duckdb_pipe.py'}' <<'SQL'\n{duck}\nSQL",
            f"psql -X -q '{url}' <<'SQL'\n{after_sql()}\nSQL",
        ]
    )


def duckdb_python(env_dir: Path) -> Path | None:
    """The bench venv's python with DuckDB and its two extensions, made on first use, or None. Either
    way one line is printed when something was attempted. The project's own venv never gets DuckDB."""
    python = env_dir / "bin" / "python"
    stamp = env_dir / ".installed"
    wanted = " ".join(DUCKDB_REQUIREMENTS)
    step = "load its extensions offline"
    try:
        if not (stamp.exists() and stamp.read_text().strip() == wanted and python.exists()):
            step = f"install {wanted}"
            print(f"DuckDB pipe: installing {wanted} into {env_dir} ... ", end="", flush=True)
            shutil.rmtree(env_dir, ignore_errors=True)
            subprocess.run(
                [sys.executable, "-m", "venv", str(env_dir)], check=True, capture_output=True, text=True
            )
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--retries", "1",
                 "--timeout", "30", *DUCKDB_REQUIREMENTS],
                check=True, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            stamp.write_text(wanted + "\n")
            print("done", flush=True)
            step = "load its extensions offline"
        # Both extensions load with no network, or the contender is left out rather than failing.
        subprocess.run(
            [str(python), str(ROOT / "bench" / "duckdb_pipe.py"), "--check"],
            check=True, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        last = next((line for line in reversed(detail.strip().splitlines()) if line.strip()), "?")
        lead = "failed: " if step.startswith("install") else "DuckDB pipe: "
        print(f"{lead}could not {step} ({last.strip()[:160]}): skipped", flush=True)
        return None
    return python


def counts(url: str) -> dict[str, int]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            result = {}
            for name in TABLES:
                cur.execute(f"SELECT count(*) FROM {name}")
                result[name] = cur.fetchone()[0]
            return result
    finally:
        conn.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=1, help="runs per contender; the fastest counts")
    p.add_argument("--skip", default="", help="comma-separated: raw,duckdb,tool,pgloader,naive")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT / "bench" / "data",
        help="where generated todo.db files are kept",
    )
    p.add_argument(
        "--duckdb-env",
        type=Path,
        default=DUCKDB_ENV,
        help="the bench's own venv for DuckDB (made on first use; never the project's venv)",
    )
    a = p.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    data = a.data_dir
    data.mkdir(parents=True, exist_ok=True)
    db = data / f"todo-{a.tasks}.db"
    if not db.exists():
        print(f"generating {db.name} ...", flush=True)
        make_todo_db(db, tasks=a.tasks)
    users, patterns = sizes(a.tasks)
    expected = {"users": users, "tasks": a.tasks, "recurring_patterns": patterns}
    total_rows = sum(expected.values())
    print(
        f"{db.name}: {users:,} users, {a.tasks:,} tasks, {patterns:,} patterns, {db.stat().st_size / 2**20:,.0f} MB"
    )

    contenders = {
        "raw pipe (sqlite3 | psql COPY)": ("raw", lambda url: (raw_pipe_script(db, url), True)),
        "DuckDB pipe (ATTACH + INSERT)": ("duckdb", lambda url: (duckdb_pipe_script(duck_python, db, url), True)),
        "migrate_sqlite_to_postgres.py": (
            "tool",
            lambda url: ([sys.executable, str(ROOT / "migrate_sqlite_to_postgres.py"), "--sqlite-path", str(db),
                          "--postgres-url", url, "--quiet", "--report", str(report_path)], False),  # fmt: skip
        ),
        "pgloader": ("pgloader", lambda url: (["pgloader", "--quiet", f"sqlite://{db}", url], False)),
        "naive SQLAlchemy inserts": ("naive", lambda url: ([sys.executable, str(ROOT / "bench" / "naive_sqlalchemy.py"), str(db), url], False)),
    }  # fmt: skip
    if not shutil.which("pgloader"):
        skip.add("pgloader")
        print("pgloader not installed (apt-get install pgloader): skipped")
    duck_python: Path | None = None
    if "duckdb" not in skip:
        duck_python = duckdb_python(a.duckdb_env.resolve())
        if duck_python is None:
            skip.add("duckdb")
    report_path = Path(tempfile.mkdtemp()) / "report.json"
    results: list[Result] = []
    phases: dict[str, float] = {}
    env = dict(os.environ)
    with LocalPostgres(fast=False) as server:
        env["PATH"] = f"{server.bin}:{env['PATH']}"  # the server's own psql
        for label, (key, build) in contenders.items():
            if key in skip:
                continue
            best: Result | None = None
            for attempt in range(a.repeat):
                dbname = f"bench_{key}_{attempt}"
                server.psql(f"DROP DATABASE IF EXISTS {dbname}")
                server.psql(f"CREATE DATABASE {dbname}")
                url = server.url(dbname)
                cmd, shell = build(url)
                print(f"running {label} ...", flush=True)
                seconds, rss, code, output = measure(cmd if not shell else ["bash", "-c", cmd], env=env)
                ok = code == 0 and counts(url) == expected
                note = "" if ok else (output.strip().splitlines() or ["?"])[-1][:120]
                result = Result(label, seconds, rss, ok, note)
                if key == "tool" and ok:
                    run_phases = json.loads(report_path.read_text())["phases"]
                    if best is None or seconds < best.seconds:
                        phases = run_phases
                if best is None or (ok and seconds < best.seconds):
                    best = result
                server.psql(f"DROP DATABASE {dbname}")
            results.append(best)
    print_table(results, total_rows, a.tasks, phases)
    if a.json:
        a.json.write_text(
            json.dumps({"tasks": a.tasks, "results": [vars(r) for r in results], "phases": phases}, indent=2)
        )
    return 0 if all(r.ok for r in results) else 1


def print_table(results: list[Result], total_rows: int, tasks: int, phases: dict[str, float]) -> None:
    raw = next((r for r in results if r.name.startswith("raw") and r.ok), None)
    cpu = platform.processor() or platform.machine()
    print(
        f"\n{tasks:,} tasks ({total_rows:,} rows) on {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GB, {cpu}"
    )
    print(
        f"| {'contender':<32} | {'wall s':>7} | {'× raw pipe':>10} | {'peak RSS MB':>11} | {'rows/s':>10} | ok |"
    )
    print(f"|{'-' * 34}|{'-' * 9}|{'-' * 12}|{'-' * 13}|{'-' * 12}|----|")
    for r in results:
        ratio = f"{r.seconds / raw.seconds:.2f}" if raw else "-"
        ok = "yes" if r.ok else f"NO: {r.note}"
        print(
            f"| {r.name:<32} | {r.seconds:>7.2f} | {ratio:>10} | {r.peak_rss_mb:>11.0f} | {total_rows / r.seconds:>10,.0f} | {ok} |"
        )
    if phases:
        print(
            "\nmigrate_sqlite_to_postgres.py phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in phases.items())
        )


if __name__ == "__main__":
    sys.exit(main())
