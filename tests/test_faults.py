"""Real targets and faults, against real servers: URLs, TLS, PgBouncer, killed connections, Ctrl-C,
concurrent runs, a live WAL source, locked and corrupt files, --schema, bounded waits."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import psycopg2
import pytest
from conftest import (
    DEADLINE,
    ROOT,
    SCRIPT,
    assert_one_line_error,
    pg_query,
    pg_tables,
    run_cli,
    sqlite_rows,
    wait_for,
)
from servers import PgBouncer, start_tls_server

from models import Base
from todo_migration.session import ADVISORY_LOCK_NAMESPACE, stable_hash
from todo_migration.source import open_source
from todo_migration.target import connect, parse_target_url
from tools.make_todo_db import make_todo_db
from tools.pgserver import LocalPostgres, ipv6_loopback


@pytest.fixture(scope="module")
def big_db(tmp_path_factory) -> Path:
    """Large enough that the COPY takes a moment to interrupt: 300,000 tasks."""
    return make_todo_db(tmp_path_factory.mktemp("big") / "big.db", tasks=300_000)


def start_cli(*args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def copying_backend(url: str) -> int | None:
    """The backend while it copies the tasks (the longest COPY: the window to interrupt in)."""
    rows = pg_query(
        url,
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'migrate_sqlite_to_postgres' "
        "AND state = 'active' AND query ILIKE 'COPY public.tasks %FROM STDIN%'",
    )
    return rows[0][0] if rows else None


def wait_for_copy(url: str, proc: subprocess.Popen) -> int | None:
    """The copying backend's pid, as soon as it is seen; None if the run ended first."""
    seen: list[int] = []

    def copying() -> bool:
        pid = copying_backend(url)
        if pid is not None:
            seen.append(pid)
        return bool(seen) or proc.poll() is not None

    wait_for(copying, interval=0.02)
    return seen[0] if seen else None


def advisory_locks(url: str, *, granted: bool) -> int:
    """Advisory locks in this database: held (granted), or waited for."""
    return pg_query(
        url,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted = %s "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        (granted,),
    )[0][0]


def snapshot(url: str) -> dict[str, list]:
    return {t: pg_query(url, f"SELECT * FROM {t} ORDER BY id") for t in pg_tables(url)}


# --- URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgres", "postgresql+psycopg2"])
def test_url_schemes(sample_db, pg_url, scheme):
    url = pg_url.replace("postgresql://", f"{scheme}://", 1)
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", url)
    assert result.returncode == 0, result.stderr
    assert pg_tables(pg_url)["tasks"] == 23


def test_percent_encoded_password(sample_db, pg_server, pg_db):
    password = "p@ss:w/rd%?#&="
    pg_server.execute("DROP ROLE IF EXISTS odd_pw")
    pg_server.execute(f"CREATE ROLE odd_pw LOGIN PASSWORD '{password}'")
    pg_server.execute(f'ALTER DATABASE "{pg_db}" OWNER TO odd_pw')
    try:
        url = pg_server.url(pg_db, user="odd_pw", password=quote(password, safe=""))
        result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", url)
        assert result.returncode == 0, result.stderr
        assert password not in result.stdout + result.stderr
        assert quote(password, safe="") not in result.stdout + result.stderr
    finally:
        pg_server.execute(f'DROP DATABASE "{pg_db}" WITH (FORCE)')
        pg_server.execute("DROP ROLE odd_pw")


def test_query_parameters_reach_the_server(pg_url):
    url = (
        pg_url + "?connect_timeout=5&application_name=cutover-42&options=-c%20work_mem%3D12MB&sslmode=disable"
    )
    conn = connect(parse_target_url(url))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('application_name'), current_setting('work_mem')")
            assert cur.fetchone() == ("cutover-42", "12MB")
    finally:
        conn.close()


def test_query_parameters_through_the_cli(sample_db, pg_server, pg_db, pg_url):
    """The URL's application_name and options are the migration's own session settings: an event
    trigger notes them as the tool creates its tables."""
    pg_server.execute("CREATE TABLE seen (command text, application_name text, work_mem text)", pg_db)
    pg_server.execute(
        "CREATE FUNCTION note_session() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN "
        "INSERT INTO public.seen SELECT tg_tag, current_setting('application_name'), current_setting('work_mem'); "
        "END $$",
        pg_db,
    )
    pg_server.execute(
        "CREATE EVENT TRIGGER note_session ON ddl_command_end EXECUTE FUNCTION note_session()", pg_db
    )
    url = pg_url + "?connect_timeout=5&application_name=cutover-42&options=-c%20work_mem%3D12MB"
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", url)
    assert result.returncode == 0, result.stderr
    seen = pg_query(pg_url, "SELECT command, application_name, work_mem FROM seen")
    assert ("CREATE TABLE", "cutover-42", "12MB") in seen
    assert {(name, mem) for _, name, mem in seen} == {("cutover-42", "12MB")}


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback (::1) to test against")
def test_ipv6_host(sample_db, pg_server, pg_db):
    if pg_server.local is None:
        pytest.skip("needs the throwaway server the suite starts itself (TEST_DATABASE_URL is set)")
    url = pg_server.url(pg_db).replace("127.0.0.1", "[::1]")
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", url)
    assert result.returncode == 0, result.stderr
    assert f"[::1]:{pg_server.local.port}/{pg_db}" in result.stdout


@pytest.mark.parametrize("form", ["query", "encoded"])
def test_unix_socket_host(sample_db, pg_server, pg_db, form):
    if pg_server.local is None:
        pytest.skip("needs the throwaway server the suite starts itself (TEST_DATABASE_URL is set)")
    sock, port = pg_server.local.socket_dir, pg_server.local.port
    if form == "query":
        url = f"postgresql://postgres@/{pg_db}?host={sock}&port={port}"
    else:
        url = f"postgresql://postgres@{quote(str(sock), safe='')}:{port}/{pg_db}"
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", url)
    assert result.returncode == 0, result.stderr
    assert f"{sock}:{port}/{pg_db}" in result.stdout


# --- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls():
    server, ca = start_tls_server()
    server.psql("CREATE DATABASE tls_target")
    try:
        yield server, ca
    finally:
        server.destroy()
        shutil.rmtree(ca.parent.parent, ignore_errors=True)  # the certificates' folder too


def _reset(server: LocalPostgres, db: str = "tls_target") -> None:
    server.psql("DROP TABLE IF EXISTS recurring_patterns, tasks, users", dbname=db)


def test_tls_require(sample_db, tls):
    server, _ = tls
    _reset(server)
    result = run_cli(
        "--sqlite-path", str(sample_db), "--postgres-url", server.url("tls_target", query="sslmode=require")
    )
    assert result.returncode == 0, result.stderr
    assert server.psql("SELECT count(*) FROM tasks", dbname="tls_target") == "23"


def test_tls_verify_full_with_the_ca(sample_db, tls):
    server, ca = tls
    _reset(server)
    url = server.url("tls_target", query=f"sslmode=verify-full&sslrootcert={ca}").replace(
        "127.0.0.1", "localhost"
    )
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", url)
    assert result.returncode == 0, result.stderr


def test_tls_verify_full_with_the_wrong_ca(sample_db, tls, tmp_path):
    server, _ = tls
    from servers import make_certificates

    other_ca, _, _ = make_certificates(tmp_path / "other")
    url = server.url("tls_target", query=f"sslmode=verify-full&sslrootcert={other_ca}").replace(
        "127.0.0.1", "localhost"
    )
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", url)
    assert_one_line_error(result, "TLS to PostgreSQL", "sslrootcert")


def test_tls_only_server_refuses_sslmode_disable(sample_db, tls):
    server, _ = tls
    result = run_cli(
        "--sqlite-path", str(sample_db), "--postgres-url", server.url("tls_target", query="sslmode=disable")
    )
    assert_one_line_error(result, "only accepts TLS", "sslmode=require")


# --- PgBouncer (transaction pooling) --------------------------------------------------------


@pytest.fixture(scope="module")
def bouncer():
    server = LocalPostgres().start()
    server.psql("CREATE DATABASE pooled")
    pool = PgBouncer(server, "pooled").start()
    try:
        yield server, pool
    finally:
        pool.stop()
        server.destroy()


def test_migration_through_pgbouncer_transaction_pooling(sample_db, bouncer):
    server, pool = bouncer
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pool.url())
    assert result.returncode == 0, result.stderr
    assert server.psql("SELECT count(*) FROM tasks", dbname="pooled") == "23"
    again = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pool.url(), "--verify-only")
    assert again.returncode == 0, again.stderr
    forced = run_cli(
        "--sqlite-path", str(sample_db), "--postgres-url", pool.url(), "--force-recreate", "--dry-run"
    )
    assert forced.returncode == 0, forced.stderr


# --- connections lost, servers restarted, Ctrl-C ---------------------------------------------


def test_connection_killed_mid_copy_leaves_the_target_as_it_was(sample_db, big_db, pg_url):
    assert run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url).returncode == 0
    before = snapshot(pg_url)
    proc = start_cli("--sqlite-path", str(big_db), "--postgres-url", pg_url, "--force-recreate", "--yes")
    pid = wait_for_copy(pg_url, proc)
    assert pid is not None, "the migration finished before it could be interrupted"
    pg_query(pg_url, "SELECT pg_terminate_backend(%s)", (pid,))
    out, err = proc.communicate(timeout=DEADLINE)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert_one_line_error(result, "lost the connection", "nothing was changed")
    assert snapshot(pg_url) == before
    rerun = run_cli("--sqlite-path", str(big_db), "--postgres-url", pg_url, "--force-recreate", "--yes")
    assert rerun.returncode == 0, rerun.stderr
    assert pg_tables(pg_url)["tasks"] == 300_000


def test_server_restart_mid_copy(big_db):
    with LocalPostgres() as server:
        server.psql("CREATE DATABASE target")
        url = server.url("target")
        proc = start_cli("--sqlite-path", str(big_db), "--postgres-url", url)
        assert wait_for_copy(url, proc) is not None
        assert proc.poll() is None
        server.restart()
        out, err = proc.communicate(timeout=DEADLINE)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        assert_one_line_error(result, "lost the connection", "nothing was changed")
        assert pg_tables(url) == {}
        assert run_cli("--sqlite-path", str(big_db), "--postgres-url", url).returncode == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_mid_copy_exits_130_and_changes_nothing(big_db, pg_url, sig):
    proc = start_cli("--sqlite-path", str(big_db), "--postgres-url", pg_url)
    assert wait_for_copy(pg_url, proc) is not None
    assert proc.poll() is None
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=DEADLINE)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert_one_line_error(result, "interrupted", "nothing was changed")
    assert proc.returncode == 130
    assert wait_for(lambda: pg_tables(pg_url) == {})


def test_interrupt_during_preflight(big_db, pg_url):
    proc = start_cli("--sqlite-path", str(big_db), "--postgres-url", pg_url)
    for line in proc.stdout:
        if "Checking every value" in line:  # connected; scanning the source
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert pg_tables(pg_url) == {}


# Runs an entry point (the script, or the package with -m) as python would, but holds the import
# of todo_migration.cli (as a slow disk or a busy machine might) after saying so on stderr.
HOLD_THE_IMPORT = """
import os, runpy, sys, time

class HoldTheImport:
    def find_spec(self, name, path=None, target=None):
        if name == "todo_migration.cli":
            sys.meta_path.remove(self)
            print("importing todo_migration.cli", file=sys.stderr, flush=True)
            time.sleep(600)
        return None

sys.meta_path.insert(0, HoldTheImport())
entry, sys.argv = sys.argv[1], sys.argv[1:]
if entry.endswith(".py"):
    sys.path[0] = os.path.dirname(entry)
    runpy.run_path(entry, run_name="__main__")
else:
    runpy.run_module(entry, run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("entry", [str(SCRIPT), "todo_migration"], ids=["script", "python-m"])
def test_interrupt_while_starting_up_is_quiet(sample_db, pg_url, entry):
    """Ctrl-C while the tool is still importing its modules: exit 130, no traceback."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    args = ["--sqlite-path", str(sample_db), "--postgres-url", pg_url]
    proc = subprocess.Popen([sys.executable, "-c", HOLD_THE_IMPORT, entry, *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stderr.readline() == "importing todo_migration.cli\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert pg_tables(pg_url) == {}


# --- timeouts ------------------------------------------------------------------------------


def test_silent_port_fails_within_the_default_connect_timeout(sample_db, silent_listener):
    url = f"postgresql://u:pw@127.0.0.1:{silent_listener.port}/db"
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", url)
    # Counted from the connection, not from the start: a busy machine slows starting up, not the wait.
    waited = silent_listener.seconds_since_accepted()
    assert_one_line_error(result, "timed out connecting")
    assert 5 <= waited < 30


# --- two runs at once ----------------------------------------------------------------------


def test_second_concurrent_run_fails_fast(sample_db, big_db, pg_url):
    first = start_cli("--sqlite-path", str(big_db), "--postgres-url", pg_url)
    assert wait_for(lambda: advisory_locks(pg_url, granted=True) > 0 or first.poll() is not None)
    assert first.poll() is None
    # Stopped, the first run keeps its lock and cannot finish, however long the second takes on a
    # busy machine: the second must give up by itself, not wait its turn (that would hang here).
    first.send_signal(signal.SIGSTOP)
    try:
        second = run_cli(
            "--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--force-recreate", "--yes"
        )
        assert advisory_locks(pg_url, granted=True) > 0  # the first still holds it
    finally:
        first.send_signal(signal.SIGCONT)
    assert_one_line_error(second, "another migration into this database", "--wait")
    out, err = first.communicate(timeout=DEADLINE)
    assert first.returncode == 0, err
    assert pg_tables(pg_url)["tasks"] == 300_000


def test_wait_queues_behind_the_other_run(sample_db, pg_url):
    holder = psycopg2.connect(pg_url)
    cur = holder.cursor()
    cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (ADVISORY_LOCK_NAMESPACE, stable_hash("public")))
    try:
        proc = start_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--wait")
        assert wait_for(lambda: advisory_locks(pg_url, granted=False) > 0 or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate()  # queued behind the holder
        assert pg_tables(pg_url) == {}
    finally:
        holder.rollback()
        holder.close()
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, err
    assert pg_tables(pg_url)["tasks"] == 23


# --- the source: live, read-only, locked, corrupt --------------------------------------------


def sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def test_live_wal_source_is_read_as_one_snapshot(big_db, pg_url, tmp_path):
    live = tmp_path / "todo.db"
    live.write_bytes(big_db.read_bytes())
    with sqlite3.connect(live) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
    stop = threading.Event()
    written = [0]

    def app_writes() -> None:
        conn = sqlite3.connect(live, timeout=30)
        next_id = 300_001
        while not stop.is_set():
            with conn:  # a task and its pattern, in one transaction, as the app writes them
                conn.execute(
                    "INSERT INTO tasks (id, title, user_id, created_at) VALUES (?, 'live', 1, '2025-01-01 00:00:00')",
                    (next_id,),
                )
                conn.execute(
                    "INSERT INTO recurring_patterns (task_id, user_id, frequency, created_at) "
                    "VALUES (?, 1, 'daily', '2025-01-01 00:00:00')",
                    (next_id,),
                )
            written[0] += 1
            next_id += 1
            time.sleep(0.002)
        conn.close()

    writer = threading.Thread(target=app_writes, daemon=True)
    writer.start()
    try:
        assert wait_for(lambda: written[0] > 10)  # rows from before the migration's snapshot
        proc = start_cli("--sqlite-path", str(live), "--postgres-url", pg_url)
        # The app writes while the migration runs, at whatever pace this machine allows: the run is
        # held mid-copy until it has.
        assert wait_for_copy(pg_url, proc) is not None, "the migration finished before the app wrote"
        proc.send_signal(signal.SIGSTOP)
        mark = written[0]
        try:
            assert wait_for(lambda: written[0] > mark + 50)
        finally:
            proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=DEADLINE)
        during = written[0]
    finally:
        stop.set()
        writer.join(timeout=DEADLINE)
    assert proc.returncode == 0, err
    assert during > 50, "the app did not write while the migration ran"
    live_tasks = pg_query(pg_url, "SELECT count(*) FROM tasks WHERE title = 'live'")[0][0]
    live_patterns = pg_query(pg_url, "SELECT count(*) FROM recurring_patterns WHERE task_id > 300000")[0][0]
    assert live_tasks == live_patterns  # never a pattern without its task, nor the reverse
    assert 0 < live_tasks <= written[0]


APP_COMMITS_AND_CHECKPOINTS = """
import sqlite3, sys
app = sqlite3.connect(sys.argv[1], isolation_level=None)
app.execute("UPDATE tasks SET title = 'after the snapshot' WHERE id = 1")
print(app.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
"""


def test_proving_a_wal_snapshot_keeps_its_read_lock(sample_db):
    """Reading the -shm header (for the second connection's proof) must not release the locks
    SQLite holds on that file: another process's checkpoint then cannot reset the WAL under our
    snapshot, which keeps seeing the data of when it began."""
    with sqlite3.connect(sample_db) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
    source = open_source(sample_db)
    try:
        for reader in source.extra_readers(1):  # reads the header again; an idle file: proven
            reader.close()
        app = subprocess.run(
            [sys.executable, "-c", APP_COMMITS_AND_CHECKPOINTS, str(sample_db)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert app.stdout.strip() == "1"  # busy: our snapshot still holds the WAL
        assert (
            source.conn.execute("SELECT title FROM tasks WHERE id = 1").fetchone()[0] != b"after the snapshot"
        )
        assert source.extra_readers(1) == []  # and the app's commit is seen: no second connection
    finally:
        source.close()


def test_never_modifies_a_wal_source(sample_db, pg_url):
    with sqlite3.connect(sample_db) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
    app = sqlite3.connect(sample_db)  # the app is running and has uncheckpointed writes in -wal
    app.execute("PRAGMA wal_autocheckpoint = 0")
    with app:
        app.execute("UPDATE tasks SET title = 'only in the wal' WHERE id = 1")
    wal = Path(f"{sample_db}-wal")
    before = sha(sample_db), sha(wal)
    try:
        result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url)
        assert result.returncode == 0, result.stderr
        assert (sha(sample_db), sha(wal)) == before
        assert pg_query(pg_url, "SELECT title FROM tasks WHERE id = 1") == [("only in the wal",)]
    finally:
        app.close()


def test_read_only_file(sample_db, pg_url):
    sample_db.chmod(0o444)
    before = sha(sample_db)
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url)
    assert result.returncode == 0, result.stderr
    assert sha(sample_db) == before


def test_locked_source_is_a_clear_error(sample_db, pg_url):
    locker = sqlite3.connect(sample_db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # an app mid-write in rollback-journal mode
    try:  # the lock is held until the run returns: it must give up by itself, not wait for it
        result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert_one_line_error(result, "locked by another process")
    assert pg_tables(pg_url) == {}


def test_corrupt_source_is_a_clear_error(sample_db, pg_url):
    data = bytearray(sample_db.read_bytes())
    data[100:4096] = os.urandom(4096 - 100)  # the first page after the header: the schema
    sample_db.write_bytes(bytes(data))
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url)
    assert_one_line_error(result, "corrupt", "integrity_check")


@pytest.mark.parametrize(
    ("errcode", "message", "said"),
    [
        ("disk_full", 'could not extend file "base/1/2": No space left on device', "ran out of disk space"),
        (
            "configuration_limit_exceeded",
            "temporary file size exceeds temp_file_limit (64kB)",
            "ran out of resources",
        ),
    ],
    ids=["disk-full", "temp-file-limit"],
)
def test_server_out_of_room_is_said_as_such_not_as_a_lost_connection(
    sample_db, pg_url, errcode, message, said
):
    """The server's own class-53 errors reach psycopg2 as OperationalErrors, as a dropped connection
    does: raised here by the server itself (an event trigger on the index builds, after the COPY)."""
    pg_query(
        pg_url,
        "CREATE FUNCTION todo_full() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"RAISE EXCEPTION USING ERRCODE = '{errcode}', MESSAGE = '{message}'; END $$; "
        "CREATE EVENT TRIGGER todo_full ON ddl_command_end WHEN TAG IN ('CREATE INDEX') "
        "EXECUTE FUNCTION todo_full()",
        autocommit=True,
    )
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url)
    line = assert_one_line_error(result, said, message.split(":")[0], "nothing was changed")
    assert "lost the connection" not in line and "network" not in line.lower()
    assert result.returncode == 1
    assert pg_tables(pg_url) == {}


# --- --schema ------------------------------------------------------------------------------


def test_schema_option(sample_db, pg_url):
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--schema", "todo_app")
    assert result.returncode == 0, result.stderr
    assert pg_tables(pg_url, "todo_app") == {"recurring_patterns": 3, "tasks": 23, "users": 5}
    assert pg_tables(pg_url) == {}
    fks = pg_query(
        pg_url, "SELECT confrelid::regclass::text FROM pg_constraint WHERE contype = 'f' ORDER BY 1"
    )
    assert {r[0] for r in fks} == {"todo_app.tasks", "todo_app.users"}
    conn = psycopg2.connect(pg_url)
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO todo_app.users (email, username, hashed_password, created_at) VALUES ('n@x', 'n', 'h', now()) RETURNING id"
        )
        assert cur.fetchone()[0] == 6
    conn.close()
    for extra in (["--verify-only"], ["--dry-run", "--force-recreate"]):
        again = run_cli(
            "--sqlite-path", str(sample_db), "--postgres-url", pg_url, "--schema", "todo_app", *extra
        )
        assert again.returncode == (1 if extra == ["--verify-only"] else 0), again.stderr  # one extra user
    assert (
        run_cli("--sqlite-path", str(sample_db), "--postgres-url", pg_url).returncode == 0
    )  # public is separate


def test_schema_without_permission_says_what_to_grant(sample_db, pg_server, pg_db):
    pg_server.execute("DROP ROLE IF EXISTS no_schema")
    pg_server.execute("CREATE ROLE no_schema LOGIN PASSWORD 'pw'")
    try:
        url = pg_server.url(pg_db, user="no_schema", password="pw")
        result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", url, "--schema", "todo_app")
        assert_one_line_error(
            result, "permission denied", "GRANT CREATE ON DATABASE", 'CREATE SCHEMA "todo_app" AUTHORIZATION'
        )
    finally:
        pg_server.execute(f'DROP DATABASE "{pg_db}" WITH (FORCE)')
        pg_server.execute("DROP ROLE no_schema")


@pytest.mark.parametrize(
    "order",
    [("sqlite", "postgres", "quiet"), ("postgres", "sqlite", "quiet"), ("quiet", "postgres", "sqlite")],
    ids="-".join,
)
def test_tables_as_listed(sample_db, pg_url, order):
    """Every table the models define is migrated, whatever the order of the flags."""
    flags = {
        "sqlite": ["--sqlite-path", str(sample_db)],
        "postgres": ["--postgres-url", pg_url],
        "quiet": ["-q"],
    }
    result = run_cli(*(arg for name in order for arg in flags[name]))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1  # -q, wherever it stands
    source = {t.name: len(sqlite_rows(sample_db, t.name)) for t in Base.metadata.sorted_tables}
    assert pg_tables(pg_url) == source
