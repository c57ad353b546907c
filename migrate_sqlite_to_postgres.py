#!/usr/bin/env python3
"""Move the Todo app's SQLite database (todo.db) to PostgreSQL: one transaction, verified.

    python migrate_sqlite_to_postgres.py --dry-run
    python migrate_sqlite_to_postgres.py [--sqlite-path PATH] [--postgres-url URL] [--force-recreate]

The pipeline lives in the todo_migration package (one module per step); this file stays the one
entry point. `--help` lists every flag.
"""

import sys

if __name__ == "__main__":
    try:
        from todo_migration.cli import main
        from todo_migration.source import let_connections_run_in_parallel
    except KeyboardInterrupt:  # Ctrl-C while starting up: nothing has been touched yet
        sys.exit(130)
    let_connections_run_in_parallel()  # before any SQLite connection is opened
    sys.exit(main())
