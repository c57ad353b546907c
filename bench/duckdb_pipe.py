"""The DuckDB pipe of `make bench`: runs the DuckDB SQL on standard input, with no network.

    bench/.duckdb-venv/bin/python bench/duckdb_pipe.py < statements.sql
    bench/.duckdb-venv/bin/python bench/duckdb_pipe.py --check

Runs in the bench's own environment (bench/run.py makes it: `duckdb` and the offline extension
packages `duckdb-ext-sqlite` and `duckdb-ext-postgres` from PyPI), never in the project's. Those
packages put the extension files under duckdb_ext/extensions/v<version>/<platform>/, the layout of
an extension directory, so DuckDB is pointed there, told never to install or autoload anything, and
LOADs the two extensions itself: nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import sys

import duckdb


def connect() -> duckdb.DuckDBPyConnection:
    spec = importlib.util.find_spec("duckdb_ext")  # a namespace package: no __init__, only files
    if spec is None or not spec.submodule_search_locations:
        sys.exit("duckdb_pipe.py: pip install duckdb-ext-sqlite duckdb-ext-postgres")
    extensions = next(iter(spec.submodule_search_locations)) + "/extensions"
    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET enable_progress_bar = false")  # nobody watches: the bench captures stdout
    con.execute("SET extension_directory = ?", [extensions])
    con.execute("LOAD sqlite")
    con.execute("LOAD postgres")
    return con


def main(argv: list[str]) -> int:
    con = connect()
    if argv == ["--check"]:
        print(f"duckdb {duckdb.__version__} with the sqlite and postgres extensions")
        return 0
    con.execute(sys.stdin.read())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
