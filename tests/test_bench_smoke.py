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
    for name in ("raw pipe", "migrate_sqlite_to_postgres.py", "naive SQLAlchemy"):
        assert name in result.stdout
    # Run (and so row-count checked) where its venv could be made, else named in one skip line.
    assert "DuckDB pipe" in result.stdout
    assert "phases:" in result.stdout and "verify" in result.stdout
    import json

    data = json.loads(out_json.read_text())
    assert all(r["ok"] for r in data["results"])
    assert {r["name"] for r in data["results"]} >= {"migrate_sqlite_to_postgres.py"}
