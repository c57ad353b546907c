"""The PostgreSQL session and catalog: one transaction's settings and lock, what the target
already holds, and what a failure inside the transaction means. Plain values in, plain values out.

Everything here is transaction-scoped (SET LOCAL, an xact advisory lock), so it works through
PgBouncer's transaction pooling, and nothing is held between transactions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg2
import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import connection as PgConnection
from psycopg2.extensions import cursor as PgCursor

from .errors import MigrationError
from .target import Target, connect, explain_run_error

# One key for "a migration into this database and schema is running": transaction-scoped, so it is
# released by COMMIT/ROLLBACK or a dropped connection, and works through transaction pooling.
ADVISORY_LOCK_NAMESPACE = 0x70676D69  # 'pgmi'


@dataclass(frozen=True)
class ServerInfo:
    version: str
    user: str
    encoding: str


def server_info(conn: PgConnection) -> ServerInfo:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT current_setting('server_version'), current_user, current_setting('server_encoding')"
        )
        info = ServerInfo(*cur.fetchone())
    conn.commit()  # nothing held between transactions (PgBouncer may hand us another server)
    return info


def begin(cur: PgCursor, *, read_only: bool, lock_timeout: str, wait: bool, schema: str) -> None:
    """Settings for this transaction only, then the one-migration-at-a-time lock."""
    cur.connection.readonly = read_only  # psycopg2 opens the transaction with BEGIN [READ ONLY]
    _set_local(cur, lock_timeout)
    if not read_only:
        cur.execute("SET LOCAL synchronous_commit = off")
        cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
    key = (ADVISORY_LOCK_NAMESPACE, stable_hash(schema))
    if wait:
        cur.execute("SET LOCAL lock_timeout = 0")
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", key)
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (lock_timeout,))
        return
    cur.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", key)
    if not cur.fetchone()[0]:
        raise MigrationError(
            f"another migration into this database (schema {schema}) is running",
            "wait for it to finish, or re-run with --wait to queue behind it; nothing was changed",
        )


def begin_snapshot(cur: PgCursor, *, lock_timeout: str) -> None:
    """A read-only snapshot that holds for the whole transaction (the export): REPEATABLE READ,
    READ ONLY, DEFERRABLE. No migration lock: it writes nothing."""
    cur.connection.set_session(isolation_level="REPEATABLE READ", readonly=True, deferrable=True)
    _set_local(cur, lock_timeout)


def _set_local(cur: PgCursor, lock_timeout: str) -> None:
    cur.execute("SELECT set_config('lock_timeout', %s, true)", (lock_timeout,))
    cur.execute("SET LOCAL statement_timeout = 0")
    cur.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
    cur.execute("SET LOCAL DateStyle = 'ISO, MDY'")  # timestamps read back as the stream sends them
    cur.execute("SET LOCAL synchronize_seqscans = off")  # a fresh table reads back in the order sent


def stable_hash(text: str) -> int:
    """A small hash that is the same in every process (Python's hash() is salted)."""
    h = 0
    for ch in text.encode():
        h = (h * 131 + ch) % 2**31
    return h


def existing_tables(cur: PgCursor, schema: str, tables: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Which of (name, qualified name) exist in `schema`, with their row counts. Something else of
    that name (a view) is refused: only tables are ever replaced."""
    cur.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = ANY(%s)",
        (schema, [name for name, _ in tables]),
    )
    found = dict(cur.fetchall())
    counts = {}
    for name, qualified in tables:
        kind = found.get(name)
        if kind is None:
            continue
        if kind not in ("r", "p"):
            raise MigrationError(
                f"{schema}.{name} exists in PostgreSQL but is not a table (relkind {kind})",
                "drop or rename it first; --force-recreate only replaces tables",
            )
        cur.execute(f"SELECT count(*) FROM {qualified}")
        counts[name] = cur.fetchone()[0]
    return counts


def ensure_schema(cur: PgCursor, schema: str) -> None:
    cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    if cur.fetchone() is None:  # IF NOT EXISTS would still need CREATE on the database
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))


def explain_failure(
    exc: psycopg2.Error, target: Target, doing: str, *, schema: str, lock_timeout: str, tables: list[str]
) -> MigrationError:
    """A PostgreSQL error inside the transaction, as one line (the transaction is rolled back)."""
    if doing == "committing" and isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return MigrationError(
            f"the connection dropped during COMMIT ({target.scrub(str(exc).strip().splitlines()[0])})",
            "the outcome is unknown: run with --verify-only to see whether the target holds the data",
        )
    if isinstance(exc, psycopg2.errors.LockNotAvailable):
        blockers = lock_holders(target, schema, tables)
        return MigrationError(
            f"timed out after {lock_timeout} waiting for a lock on the target tables while {doing}"
            + (f", held by {blockers}" if blockers else ""),
            "stop that session (or the app) and re-run, or raise --lock-timeout",
            target_untouched=True,
        )
    return explain_run_error(exc, target, doing, schema)


def lock_holders(target: Target, schema: str, tables: list[str]) -> str:
    """Who holds locks on the app's tables in the target schema: by application name, pid, state
    and how long its transaction has been open (what `pg_terminate_backend` or the app's owner
    needs), never the SQL it runs."""
    try:
        conn = connect(target, autocommit=True)
    except MigrationError:
        return ""
    try:
        with conn.cursor() as cur:
            cur.execute(
                # its state and the age of its transaction, not its SQL: that may hold the app's data
                "SELECT DISTINCT coalesce(nullif(a.application_name, ''), 'an unnamed client'), a.pid, "
                "coalesce(a.state, 'unknown'), floor(extract(epoch FROM now() - a.xact_start))::bigint FROM pg_locks l "
                "JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE n.nspname = %s AND c.relname = ANY(%s) AND l.granted AND a.pid <> pg_backend_pid()",
                (schema, tables),
            )
            rows = cur.fetchall()
    except psycopg2.Error:
        return ""
    finally:
        conn.close()
    return "; ".join(
        f"{app!r} (pid {pid}, {state}" + (f", in a transaction for {age:,} s)" if age is not None else ")")
        for app, pid, state, age in rows[:3]
    )


def rollback_quietly(conn: PgConnection) -> None:
    try:
        conn.rollback()
    except psycopg2.Error:
        pass
