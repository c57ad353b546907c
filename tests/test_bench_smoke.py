"""The benchmark runs end to end at 10,000 tasks (the real one is `make bench`, not a test)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_benchmark_smoke(tmp_path):
    out_json = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--tasks", "10000", "--skip", "pgloader",
         "--json", str(out_json), "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("raw pipe", "migrate_sqlite_to_postgres.py", "WAL-mode todo.db", "naive SQLAlchemy"):
        assert name in result.stdout
    # Run (and so row-count checked) where its venv could be made, else named in one skip line.
    assert "DuckDB pipe" in result.stdout
    assert "phases:" in result.stdout and "verify" in result.stdout
    # The way back, after the forward table: the reverse raw pipe, this tool's --reverse and
    # db-to-sqlite (run where its venv could be made, else named in one skip line).
    back = result.stdout[result.stdout.index("PostgreSQL → a new SQLite file") :]
    assert "raw pipe (psql COPY | sqlite3 .import)" in back
    assert "migrate_sqlite_to_postgres.py --reverse" in back
    assert "db-to-sqlite" in result.stdout
    assert "--reverse phases:" in back and "rename" in back
    import json

    data = json.loads(out_json.read_text())
    assert all(r["ok"] for r in data["results"])
    assert {r["name"] for r in data["results"]} >= {
        "migrate_sqlite_to_postgres.py",
        "migrate_sqlite_to_postgres.py, WAL-mode todo.db",
    }
    assert "verify" in data["wal_phases"]
    reverse = data["reverse"]["results"]
    assert reverse and all(r["ok"] for r in reverse)
    assert {r["name"] for r in reverse} >= {
        "raw pipe (psql COPY | sqlite3 .import)",
        "migrate_sqlite_to_postgres.py --reverse",
    }
    assert "verify" in data["reverse"]["phases"]
