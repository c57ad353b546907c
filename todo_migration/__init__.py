"""Move the Todo app's SQLite database to PostgreSQL, once, exactly, in one transaction.

One module a step: source (inspect SQLite) → plan (from the models) → validate → load (COPY, then
indexes and keys) → verify → output and report; steps.py holds the steps the jobs share, migrate.py
the forward job, cli.py only the command line.
"""

__version__ = "1.0.0"
