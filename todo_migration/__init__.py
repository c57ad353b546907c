"""Move the Todo app's SQLite database to PostgreSQL, once, exactly, in one transaction.

The pipeline, one module a step: source (inspect SQLite) → plan (from the models) → validate →
load (COPY, then indexes and keys) → verify → output (report). cli.py ties them together.
"""

__version__ = "1.0.0"
