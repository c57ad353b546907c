"""`python -m todo_migration`: the same command as migrate_sqlite_to_postgres.py."""

import sys

if __name__ == "__main__":
    try:
        from todo_migration.cli import main
    except KeyboardInterrupt:  # Ctrl-C while starting up: nothing has been touched yet
        sys.exit(130)
    sys.exit(main())
