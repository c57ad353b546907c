"""`make bench`: this tool side by side with its baselines, in one run, on one throwaway server.

    python -m bench.run [--tasks 1000000] [--repeat 1] [--skip naive,pgloader,duckdb,db-to-sqlite]

Generates a deterministic todo.db (cached in bench/data/), starts a local PostgreSQL with default
durability settings, and runs each forward contender into a fresh database:
  raw pipe   sqlite3 -csv | psql \\copy into bare tables, then keys, indexes, foreign keys, sequences
  DuckDB     the same bare tables, then DuckDB ATTACHes todo.db (TYPE sqlite) and the database
             (TYPE postgres) and runs INSERT INTO pg.<table> SELECT ... per table (binary COPY),
             then the raw pipe's keys, indexes, foreign keys, sequences. DuckDB lives in the bench's
             own venv (bench/.duckdb-venv, made on first use from PyPI: duckdb and the offline
             extension packages duckdb-ext-sqlite / duckdb-ext-postgres); it loads nothing from the
             network at run time. If it cannot be installed, the run says so and goes on.
  this tool  migrate_sqlite_to_postgres.py with default settings (validation and verification on)
  this tool on a WAL-mode copy of the same todo.db (PRAGMA journal_mode = WAL; nothing writing)
  pgloader   when installed (apt-get install pgloader)
  naive      a typical SQLAlchemy batch-insert script (bench/naive_sqlalchemy.py)
Then the way back, from one database holding the migrated data (this tool's forward result, or an
untimed forward migration when the tool was skipped; VACUUM ANALYZE first, untimed), each reverse
contender writing a NEW SQLite file:
  raw pipe   the app's bare SQLite tables (models.py through SQLAlchemy's SQLite dialect, without
             the indexes), then per table psql COPY (SELECT ... ORDER BY id) TO STDOUT (FORMAT csv)
             | sqlite3 .import --csv, booleans printed as 0/1 and timestamps in SQLAlchemy's form by
             the SELECT; then NULLs put back (.import reads an empty field as ''), then the indexes
  this tool  migrate_sqlite_to_postgres.py --reverse with default settings (verification on)
  db-to-sqlite  simonw's db-to-sqlite --all, in the bench's own venv (bench/.db-to-sqlite-venv, made
             on first use from PyPI); left out with one line if it cannot be installed
Prints wall time, the ratio to the raw pipe (of the same direction), peak RSS (the whole process
tree) and rows/s, then this tool's phases. Every contender's row counts are checked afterwards.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg2
from sqlalchemy import Boolean, DateTime
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.schema import CreateIndex, CreateTable

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

# db-to-sqlite 1.5 with the versions of its dependencies it was benchmarked with: psycopg2 as the
# binary wheel (nothing compiled), and SQLAlchemy 2.0, whose postgresql:// means psycopg2 (2.1's
# means psycopg 3).
DB_TO_SQLITE_REQUIREMENTS = [
    "db-to-sqlite==1.5",
    "sqlite-utils==4.2.1",
    "SQLAlchemy==2.0.58",
    "psycopg2-binary==2.9.13",
]
DB_TO_SQLITE_ENV = ROOT / "bench" / ".db-to-sqlite-venv"


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


def read_once(path: Path) -> None:
    """Every contender reads its todo.db from the OS's cache, not the first one to run from disk
    (the WAL-mode copy, read by one contender only, paid about a second of disk reads)."""
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass


def wal_copy(db: Path) -> Path:
    """The same todo.db in WAL mode (cached beside it), as an app that switched to WAL leaves it."""
    wal = db.with_name(f"{db.stem}-wal{db.suffix}")
    if not wal.exists():
        tmp = wal.with_suffix(".tmp")
        shutil.copyfile(db, tmp)
        conn = sqlite3.connect(tmp)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        finally:
            conn.close()
        tmp.replace(wal)
    return wal


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


def bench_venv(
    label: str, env_dir: Path, requirements: list[str], check: list[str], step: str
) -> Path | None:
    """A contender's own venv (never the project's), made on first use from PyPI: its python, or
    None. `check` (run with that python) must pass offline. Either way one line is printed when
    something was attempted."""
    python = env_dir / "bin" / "python"
    stamp = env_dir / ".installed"
    wanted = " ".join(requirements)
    doing = step
    try:
        if not (stamp.exists() and stamp.read_text().strip() == wanted and python.exists()):
            doing = f"install {wanted}"
            print(f"{label}: installing {wanted} into {env_dir} ... ", end="", flush=True)
            shutil.rmtree(env_dir, ignore_errors=True)
            subprocess.run(
                [sys.executable, "-m", "venv", str(env_dir)], check=True, capture_output=True, text=True
            )
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--retries", "1",
                 "--timeout", "30", *requirements],
                check=True, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            stamp.write_text(wanted + "\n")
            print("done", flush=True)
            doing = step
        subprocess.run([str(python), *check], check=True, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        last = next((line for line in reversed(detail.strip().splitlines()) if line.strip()), "?")
        lead = "failed: " if doing.startswith("install") else f"{label}: "
        print(f"{lead}could not {doing} ({last.strip()[:160]}): skipped", flush=True)
        return None
    return python


def duckdb_python(env_dir: Path) -> Path | None:
    """The bench venv's python with DuckDB and its two extensions, or None. Both extensions must
    load with no network, or the contender is left out rather than failing."""
    check = [str(ROOT / "bench" / "duckdb_pipe.py"), "--check"]
    return bench_venv("DuckDB pipe", env_dir, DUCKDB_REQUIREMENTS, check, "load its extensions offline")


def db_to_sqlite_command(env_dir: Path) -> Path | None:
    """db-to-sqlite from its bench venv, or None (then the run says why in one line)."""
    # Its CLI imports, and SQLAlchemy finds the PostgreSQL driver for a postgresql:// URL (an
    # engine connects only when used).
    check = [
        "-c",
        "import db_to_sqlite.cli, sqlalchemy; sqlalchemy.create_engine('postgresql://u@127.0.0.1/db')",
    ]
    python = bench_venv("db-to-sqlite", env_dir, DB_TO_SQLITE_REQUIREMENTS, check, "run it")
    return None if python is None else python.parent / "db-to-sqlite"


# --- the way back ----------------------------------------------------------------------------

SQLITE = sqlite_dialect.dialect()


def sqlite_tables_sql() -> str:
    """The app's bare tables as its SQLAlchemy creates them on SQLite (no indexes yet)."""
    return (
        ";\n".join(str(CreateTable(t).compile(dialect=SQLITE)).strip() for t in Base.metadata.sorted_tables)
        + ";"
    )


def sqlite_after_sql() -> str:
    """NULLs back where .import left '' (it reads every empty CSV field as an empty string), then
    the app's indexes, as create_all makes them."""
    fixes = []
    for t in Base.metadata.sorted_tables:
        nullable = [c.name for c in t.columns if c.nullable]
        if nullable:
            sets = ", ".join(f'"{c}" = NULLIF("{c}", \'\')' for c in nullable)
            where = " OR ".join(f"\"{c}\" = ''" for c in nullable)
            fixes.append(f'UPDATE "{t.name}" SET {sets} WHERE {where}')
    indexes = [
        str(CreateIndex(ix).compile(dialect=SQLITE))
        for t in Base.metadata.sorted_tables
        for ix in sorted(t.indexes, key=lambda ix: ix.name or "")
    ]
    return ";\n".join(["BEGIN", *fixes, *indexes, "COMMIT"]) + ";"


def reverse_select(table) -> str:
    """A table's rows in id order, each value printed as the app's SQLAlchemy stores it in SQLite:
    booleans 0/1, timestamps with six fractional digits; the rest as PostgreSQL prints it."""
    cols = []
    for c in table.columns:
        if isinstance(c.type, Boolean):
            cols.append(f'"{c.name}"::int')
        elif isinstance(c.type, DateTime):
            cols.append(f"to_char(\"{c.name}\", 'YYYY-MM-DD HH24:MI:SS.US')")
        else:
            cols.append(f'"{c.name}"')
    return f'SELECT {", ".join(cols)} FROM "{table.name}" ORDER BY id'


def reverse_raw_pipe_script(url: str, out: Path) -> str:
    """The fastest honest way back: no checks, but the app's tables, values in the app's form and
    its indexes. No journal and no syncs until the last step, whose commit syncs the file once
    (as this tool fsyncs its file before the rename)."""
    fast = "sqlite3 -bail -cmd 'PRAGMA journal_mode = OFF' -cmd 'PRAGMA synchronous = OFF'"
    lines = ["set -eo pipefail", f"{fast} '{out}' <<'SQL'\n{sqlite_tables_sql()}\nSQL"]
    for t in Base.metadata.sorted_tables:
        copy = f"COPY ({reverse_select(t)}) TO STDOUT (FORMAT csv)"
        lines.append(
            f"psql -X -q '{url}' -c {shlex.quote(copy)} | {fast} '{out}' '.import --csv /dev/stdin {t.name}'"
        )
    lines.append(f"sqlite3 -bail -cmd 'PRAGMA journal_mode = OFF' '{out}' <<'SQL'\n{sqlite_after_sql()}\nSQL")
    return "\n".join(lines)


def sqlite_counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in TABLES}
    except sqlite3.Error:
        return {}
    finally:
        conn.close()


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


TOOL = str(ROOT / "migrate_sqlite_to_postgres.py")
REVERSE_KEYS = {"raw-reverse", "reverse", "db-to-sqlite"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=1_000_000)
    p.add_argument(
        "--repeat", type=int, default=1, help="runs per contender, taken in turns; the fastest counts"
    )
    p.add_argument(
        "--skip",
        default="",
        help="comma-separated: raw,duckdb,tool,tool-wal,pgloader,naive (forward); raw-reverse,reverse,db-to-sqlite (back); sync",
    )
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
    p.add_argument(
        "--db-to-sqlite-env",
        type=Path,
        default=DB_TO_SQLITE_ENV,
        help="the bench's own venv for db-to-sqlite (made on first use; never the project's venv)",
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

    # The tool runs as installed: its bytecode compiled, as pip does and as a first run leaves it
    # (unless PYTHONDONTWRITEBYTECODE is set, as on this project's machines: each run would then
    # compile the package again, about 0.1 s that no user pays).
    compileall.compile_dir(ROOT / "todo_migration", quiet=1)
    for module in ("models.py", "database.py"):
        compileall.compile_file(ROOT / module, quiet=1)

    work = Path(tempfile.mkdtemp(prefix="bench-"))
    report_path = work / "report.json"
    migrate = [sys.executable, TOOL, "--sqlite-path", str(db), "--quiet"]
    wal = wal_copy(db) if "tool-wal" not in skip else db
    for path in {db, wal}:
        read_once(path)
    migrate_wal = [sys.executable, TOOL, "--sqlite-path", str(wal), "--quiet"]
    contenders = {
        "raw pipe (sqlite3 | psql COPY)": ("raw", lambda url: (raw_pipe_script(db, url), True)),
        "DuckDB pipe (ATTACH + INSERT)": ("duckdb", lambda url: (duckdb_pipe_script(duck_python, db, url), True)),
        "migrate_sqlite_to_postgres.py": ("tool", lambda url: ([*migrate, "--postgres-url", url, "--report", str(report_path)], False)),
        "migrate_sqlite_to_postgres.py, WAL-mode todo.db": ("tool-wal", lambda url: ([*migrate_wal, "--postgres-url", url, "--report", str(report_path)], False)),
        "pgloader": ("pgloader", lambda url: (["pgloader", "--quiet", f"sqlite://{db}", url], False)),
        "naive SQLAlchemy inserts": ("naive", lambda url: ([sys.executable, str(ROOT / "bench" / "naive_sqlalchemy.py"), str(db), url], False)),
    }  # fmt: skip
    reverse = {
        "raw pipe (psql COPY | sqlite3 .import)": ("raw-reverse", lambda url, out: (reverse_raw_pipe_script(url, out), True)),
        "migrate_sqlite_to_postgres.py --reverse": ("reverse", lambda url, out: ([sys.executable, TOOL, "--reverse", "--postgres-url", url, "--sqlite-path", str(out), "--quiet", "--report", str(report_path)], False)),
        "db-to-sqlite --all": ("db-to-sqlite", lambda url, out: ([str(dts), url, str(out), "--all"], False)),
    }  # fmt: skip
    if not shutil.which("pgloader"):
        skip.add("pgloader")
        print("pgloader not installed (apt-get install pgloader): skipped")
    duck_python: Path | None = None
    if "duckdb" not in skip:
        duck_python = duckdb_python(a.duckdb_env.resolve())
        if duck_python is None:
            skip.add("duckdb")
    dts: Path | None = None
    if "db-to-sqlite" not in skip:
        dts = db_to_sqlite_command(a.db_to_sqlite_env.resolve())
        if dts is None:
            skip.add("db-to-sqlite")
    want_reverse = bool(REVERSE_KEYS - skip)
    synced: list[Result] = []
    results: list[Result] = []
    back: list[Result] = []
    phases: dict[str, float] = {}
    wal_phases: dict[str, float] = {}
    back_phases: dict[str, float] = {}
    env = dict(os.environ)
    try:
        with LocalPostgres(fast=False) as server:
            env["PATH"] = f"{server.bin}:{env['PATH']}"  # the server's own psql
            source: str | None = None  # the database the way back starts from
            best: dict[str, Result] = {}
            # Round robin, one run of each contender at a time: load from other jobs that comes and
            # goes then falls on every contender alike instead of on whichever ran last.
            for attempt in range(a.repeat):
                for label, (key, build) in contenders.items():
                    if key in skip:
                        continue
                    dbname = f"bench_{key.replace('-', '_')}_{attempt}"
                    server.psql(f"DROP DATABASE IF EXISTS {dbname}")
                    server.psql(f"CREATE DATABASE {dbname}")
                    url = server.url(dbname)
                    cmd, shell = build(url)
                    print(f"running {label} ...", flush=True)
                    seconds, rss, code, output = measure(cmd if not shell else ["bash", "-c", cmd], env=env)
                    ok = code == 0 and counts(url) == expected
                    note = "" if ok else (output.strip().splitlines() or ["?"])[-1][:120]
                    result = Result(label, seconds, rss, ok, note)
                    previous = best.get(label)
                    faster = previous is None or seconds < previous.seconds
                    if key in ("tool", "tool-wal") and ok and faster:
                        run_phases = json.loads(report_path.read_text())["phases"]
                        if key == "tool":
                            phases = run_phases
                        else:
                            wal_phases = run_phases
                    if previous is None or (ok and faster):
                        best[label] = result
                    if key == "tool" and ok and (want_reverse or "sync" not in skip) and source is None:
                        source = dbname  # this tool's own result is what the way back reads
                    else:
                        server.psql(f"DROP DATABASE {dbname}")
            results.extend(best.values())
            if want_reverse:
                if source is None:  # the tool was skipped or failed: one forward migration, not timed
                    source = "bench_reverse_source"
                    server.psql(f"DROP DATABASE IF EXISTS {source}")
                    server.psql(f"CREATE DATABASE {source}")
                    print("migrating once for the way back (not timed) ...", flush=True)
                    subprocess.run([*migrate, "--postgres-url", server.url(source)], check=True, cwd=ROOT)
                source_url = server.url(source)
                # Hint bits and statistics settled before anyone reads: no contender pays for them.
                server.psql("VACUUM ANALYZE", dbname=source)
                source_counts = counts(source_url)
                print(f"the way back: from {source} ({sum(source_counts.values()):,} rows)", flush=True)
                for label, (key, build) in reverse.items():
                    if key in skip:
                        continue
                    best = None
                    for _ in range(a.repeat):
                        out_dir = Path(tempfile.mkdtemp(prefix="reverse-", dir=work))
                        out = out_dir / "todo.db"
                        cmd, shell = build(source_url, out)
                        print(f"running {label} ...", flush=True)
                        seconds, rss, code, output = measure(
                            cmd if not shell else ["bash", "-c", cmd], env=env
                        )
                        ok = code == 0 and out.exists() and sqlite_counts(out) == source_counts
                        note = "" if ok else (output.strip().splitlines() or ["?"])[-1][:120]
                        result = Result(label, seconds, rss, ok, note)
                        if key == "reverse" and ok and (best is None or seconds < best.seconds):
                            back_phases = json.loads(report_path.read_text())["phases"]
                        if best is None or (ok and seconds < best.seconds):
                            best = result
                        shutil.rmtree(out_dir, ignore_errors=True)
                    back.append(best)
            if "sync" not in skip:
                synced = bench_sync(server, db, migrate, work, env, expected, source)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(f"{a.tasks:,} tasks ({total_rows:,} rows), SQLite → PostgreSQL", results, total_rows)
    print_phases("migrate_sqlite_to_postgres.py", phases)
    print_phases("migrate_sqlite_to_postgres.py, WAL-mode todo.db,", wal_phases)
    if back:
        print_table(
            f"{a.tasks:,} tasks ({total_rows:,} rows), PostgreSQL → a new SQLite file", back, total_rows
        )
        print_phases("migrate_sqlite_to_postgres.py --reverse", back_phases)
    if synced:
        tool = next((r for r in results if r.name == "migrate_sqlite_to_postgres.py" and r.ok), None)
        print(f"\n--sync on {a.tasks:,} tasks, against this tool's full migration in this run")
        print(f"| {'contender':<40} | {'wall s':>7} | {'× migration':>11} | {'peak RSS MB':>11} | ok |")
        print(f"|{'-' * 42}|{'-' * 9}|{'-' * 13}|{'-' * 13}|----|")
        for r in synced:
            ratio = f"{r.seconds / tool.seconds:.2f}" if tool else "-"
            print(
                f"| {r.name:<40} | {r.seconds:>7.2f} | {ratio:>11} | {r.peak_rss_mb:>11.0f} | {'yes' if r.ok else 'NO: ' + r.note} |"
            )
    if a.json:
        a.json.write_text(
            json.dumps(
                {
                    "tasks": a.tasks,
                    "results": [vars(r) for r in results],
                    "phases": phases,
                    "wal_phases": wal_phases,
                    "reverse": {"results": [vars(r) for r in back], "phases": back_phases},
                    "sync": [vars(r) for r in synced],
                },
                indent=2,
            )
        )
    return 0 if all(r.ok for r in results + back + synced) else 1


def change_one_percent(db: Path, out: Path, seed: int = 13) -> dict[str, int]:
    """A copy of todo.db after the app changed 1% of its tasks: a third updated (completed, a due
    date moved, a title edited), a third deleted (their patterns with them, their subtasks
    detached), a third new tasks. Spread over the whole table: the hardest case for a range-by-range
    compare. Set-based statements, so making the copy takes seconds."""
    shutil.copyfile(db, out)
    conn = sqlite3.connect(out, isolation_level=None)
    (tasks, top) = conn.execute("SELECT count(*), max(id) FROM tasks").fetchone()
    each = max(1, tasks // 300)
    rnd = __import__("random").Random(seed)
    ids = rnd.sample(range(1, top + 1), 2 * each)
    updated, deleted = json.dumps(ids[:each]), json.dumps(ids[each:])
    conn.execute("BEGIN")
    conn.execute(
        "UPDATE tasks SET completed = 1 - completed, title = title || ' (edited)', "
        "due_date = strftime('%Y-%m-%d %H:%M:%f', due_date, '+1 day') || '000' "
        "WHERE id IN (SELECT value FROM json_each(?))",
        (updated,),
    )
    conn.execute(
        "DELETE FROM recurring_patterns WHERE task_id IN (SELECT value FROM json_each(?))", (deleted,)
    )
    conn.execute(
        "UPDATE tasks SET parent_task_id = NULL WHERE parent_task_id IN (SELECT value FROM json_each(?))",
        (deleted,),
    )
    conn.execute("DELETE FROM tasks WHERE id IN (SELECT value FROM json_each(?))", (deleted,))
    conn.execute(
        "INSERT INTO tasks (title, description, completed, priority, tags, due_date, user_id, is_recurring, "
        "created_at) SELECT 'new ' || title, description, 0, priority, tags, due_date, user_id, 0, "
        "'2026-11-25 12:00:00.000000' FROM tasks ORDER BY id LIMIT ?",
        (each,),
    )
    conn.execute("COMMIT")
    result = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    conn.close()
    return result


def bench_sync(
    server, db: Path, migrate: list[str], work: Path, env: dict, expected: dict, source: str | None
) -> list[Result]:
    """--sync against a database this tool migrated (the forward run's, or one untimed migration),
    as the runbook goes: a first sync after 1% of the tasks changed (the whole of both sides
    compared; it leaves fingerprints in the ledger), then one with nothing changed since, then one
    after another 1% changed (the freeze: todo.db's fingerprints against the ledger's). Each once."""
    dbname = source or "bench_sync"
    if source is None:
        server.psql(f"DROP DATABASE IF EXISTS {dbname}")
        server.psql(f"CREATE DATABASE {dbname}")
        print("migrating once for --sync (not timed) ...", flush=True)
        subprocess.run([*migrate, "--postgres-url", server.url(dbname)], check=True, cwd=ROOT)
    url = server.url(dbname)
    server.psql("VACUUM ANALYZE", dbname=dbname)
    first, again = work / "todo-changed.db", work / "todo-changed-again.db"
    first_counts = change_one_percent(db, first)
    again_counts = change_one_percent(first, again, seed=14)
    out = []
    for label, path, want in (
        ("--sync, first after migrating, 1% changed", first, first_counts),
        ("--sync, nothing changed since", first, first_counts),
        ("--sync, 1% changed since (the freeze)", again, again_counts),
    ):
        print(f"running {label} ...", flush=True)
        # Copies of the migrated file, on purpose: --yes says so (another file than last time asks).
        cmd = [
            sys.executable,
            TOOL,
            "--sync",
            "--sqlite-path",
            str(path),
            "--postgres-url",
            url,
            "--quiet",
            "--yes",
        ]
        seconds, rss, code, output = measure(cmd, env=env)
        ok = code == 0 and counts(url) == want
        note = "" if ok else (output.strip().splitlines() or ["?"])[-1][:120]
        out.append(Result(label, seconds, rss, ok, note))
    return out


def print_table(title: str, results: list[Result], total_rows: int) -> None:
    """One direction's table; the ratio is to the raw pipe of that direction."""
    raw = next((r for r in results if r.name.startswith("raw") and r.ok), None)
    cpu = platform.processor() or platform.machine()
    print(f"\n{title} on {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GB, {cpu}")
    print(
        f"| {'contender':<40} | {'wall s':>7} | {'× raw pipe':>10} | {'peak RSS MB':>11} | {'rows/s':>10} | ok |"
    )
    print(f"|{'-' * 42}|{'-' * 9}|{'-' * 12}|{'-' * 13}|{'-' * 12}|----|")
    for r in results:
        ratio = f"{r.seconds / raw.seconds:.2f}" if raw else "-"
        ok = "yes" if r.ok else f"NO: {r.note}"
        print(
            f"| {r.name:<40} | {r.seconds:>7.2f} | {ratio:>10} | {r.peak_rss_mb:>11.0f} | {total_rows / r.seconds:>10,.0f} | {ok} |"
        )


def print_phases(name: str, phases: dict[str, float]) -> None:
    if phases:
        print(f"\n{name} phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in phases.items()))


if __name__ == "__main__":
    sys.exit(main())
