"""`python -m todo_migration` and the `migrate-sqlite-to-postgres` command: the same as
migrate_sqlite_to_postgres.py."""

import sys


def run() -> int:
    """main(), with Ctrl-C during start-up (importing SQLAlchemy takes a moment) as a quiet 130."""
    try:
        from todo_migration.cli import main
    except KeyboardInterrupt:  # nothing has been touched yet
        return 130
    return main()


if __name__ == "__main__":
    sys.exit(run())
