"""The baseline people write first: reflect SQLite, create_all on PostgreSQL, insert rows in batches.

No validation, no verification beyond what the inserts enforce. Used by bench/run.py only.

    python bench/naive_sqlalchemy.py SQLITE_PATH POSTGRES_URL
"""

from __future__ import annotations

import sys
from datetime import datetime

from sqlalchemy import Boolean, DateTime, create_engine, insert, select, text

from models import Base

BATCH = 1000


def main(sqlite_path: str, url: str) -> int:
    source = create_engine(f"sqlite:///{sqlite_path}")
    target = create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    Base.metadata.create_all(target)
    with source.connect() as src, target.begin() as dst:
        for table in Base.metadata.sorted_tables:
            # Raw SQLite values, converted the way such scripts usually do.
            bools = {c.name for c in table.columns if isinstance(c.type, Boolean)}
            stamps = {c.name for c in table.columns if isinstance(c.type, DateTime)}
            rows = src.execution_options(stream_results=True).execute(
                select(*[text(f'"{c.name}"') for c in table.columns]).select_from(text(table.name))
            )
            names = [c.name for c in table.columns]
            batch = []
            for row in rows:
                record = dict(zip(names, row, strict=True))
                for name in bools:
                    if record[name] is not None:
                        record[name] = bool(record[name])
                for name in stamps:
                    if isinstance(record[name], str):
                        record[name] = datetime.fromisoformat(record[name])
                batch.append(record)
                if len(batch) >= BATCH:
                    dst.execute(insert(table), batch)
                    batch = []
            if batch:
                dst.execute(insert(table), batch)
            dst.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), (SELECT max(id) FROM {table.name}))"
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
