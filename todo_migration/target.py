"""The PostgreSQL side's front door: parse the URL, connect, and explain connection failures.

libpq parses the URL (percent-encoding, IPv6, Unix sockets, every query parameter), so what works
in psql works here. The password is kept out of every string this module returns: as typed and as
decoded, from the authority or ?password=, since libpq echoes what it cannot parse. Passwords
with an unencoded '@', '/' or '%' are caught before libpq misreads them (as a host, a port, or an
error that quotes them) and told how to encode them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import unquote

import psycopg2
import psycopg2.errors
import psycopg2.extras
from psycopg2.extensions import connection as PgConnection
from psycopg2.extensions import parse_dsn

from .errors import MigrationError, UsageError

DEFAULT_CONNECT_TIMEOUT = 10
APPLICATION_NAME = "migrate_sqlite_to_postgres"
URL_HELP = "expected postgresql://USER:PASSWORD@HOST:5432/DBNAME"
PERCENT_HELP = "percent-encode special characters in the password (% as %25, @ as %40, : as %3A, / as %2F)"
# Shorter secrets are not replaced in free text: every "a" in a message would become "***". The
# URL patterns below still hide them wherever a URL or password= is echoed.
MIN_SCRUB_LENGTH = 3
# A URL's password (up to the last '@' of the token, in case the password holds one), and
# password=... as a query parameter or a keyword/value pair.
_URL_PASSWORD_RE = re.compile(r"(://[^:/@\s]*:)\S*@")
_PASSWORD_PARAM_RE = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&'\"]+)", re.IGNORECASE)
_BAD_PERCENT_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_QUERY_PASSWORD_RE = re.compile(r"[?&]password=([^&]*)", re.IGNORECASE)


@dataclass(frozen=True)
class Target:
    """Connection parameters for psycopg2, plus a printable name that never holds the password."""

    params: dict[str, str] = field(repr=False)
    masked: str
    secrets: tuple[str, ...] = field(default=(), repr=False)  # the password as typed and decoded

    @property
    def dbname(self) -> str:
        return self.params.get("dbname", "")

    @property
    def user(self) -> str:
        return self.params.get("user", "")

    @property
    def host(self) -> str:
        return self.params.get("host", "localhost")

    def scrub(self, text: str) -> str:
        """Remove the password from text that came from elsewhere (driver messages, URLs)."""
        return scrub_password(text, (*self.secrets, self.params.get("password", "")))


def scrub_password(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace each secret (longest first, so a decoded one inside a raw one goes too) and any
    password in a URL or a password= parameter with ***."""
    for secret in sorted({s for s in secrets if len(s) >= MIN_SCRUB_LENGTH}, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _URL_PASSWORD_RE.sub(r"\1***@", text)
    return _PASSWORD_PARAM_RE.sub(r"\1***", text)


def mask_params(params: dict[str, str]) -> str:
    host = params.get("host") or params.get("hostaddr") or "localhost"
    hosts = [f"[{h}]" if ":" in h and not h.startswith("/") else h for h in host.split(",")]
    port = params.get("port") or "5432"
    return f"{','.join(hosts)}:{port}/{params.get('dbname', '')}"


def parse_target_url(url: str) -> Target:
    """Turn what the user typed into connection parameters, or say exactly what is wrong."""
    url = url.strip().strip("'\"").strip()
    if not url:
        raise UsageError("the PostgreSQL URL is empty", f"pass --postgres-url ({URL_HELP})")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise UsageError("the PostgreSQL URL cannot be parsed", URL_HELP)
    scheme = scheme.lower()
    if scheme.startswith("sqlite"):
        raise UsageError(
            "the target URL points at SQLite (DATABASE_URL is still the development one?)",
            f"pass --postgres-url with the PostgreSQL target, {URL_HELP}",
        )
    schemes = postgres_schemes()
    if scheme not in schemes:
        raise UsageError(
            f"the target URL scheme {scheme}:// is not supported",
            "use " + ", ".join(f"{s}://" for s in schemes),
        )
    secrets = typed_secrets(rest)
    check_credentials(rest)
    try:
        params = parse_dsn(f"postgresql://{rest}")
    except psycopg2.ProgrammingError as exc:
        raise UsageError(
            f"the PostgreSQL URL cannot be parsed ({_libpq_reason(exc, secrets)})", URL_HELP
        ) from None
    if not params.get("dbname"):
        raise UsageError("the PostgreSQL URL names no database", "add /DBNAME at the end of the URL")
    port = params.get("port", "5432")
    if not all(p.isdigit() for p in port.split(",")):
        shown = scrub_password(repr(port), secrets)
        raise UsageError(f"the port {shown} in the PostgreSQL URL is not a number", URL_HELP)
    check_option_values(params)
    return Target(params=params, masked=mask_params(params), secrets=secrets)


SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def check_option_values(params: dict[str, str]) -> None:
    """The query parameters libpq would refuse only when connecting (and then as a TLS or a
    connection failure): a typo in the URL is a usage error, said before anything is read."""
    mode = params.get("sslmode")
    if mode is not None and mode not in SSLMODES:
        raise UsageError(
            f"sslmode={mode!r} in the PostgreSQL URL is not an sslmode", "use one of " + ", ".join(SSLMODES)
        )
    timeout = params.get("connect_timeout")
    if timeout is not None and not re.fullmatch(r"\s*-?\d+\s*", timeout):
        raise UsageError(
            f"connect_timeout={timeout!r} in the PostgreSQL URL is not a whole number of seconds",
            "e.g. ?connect_timeout=30",
        )


def postgres_schemes() -> tuple[str, ...]:
    """The spellings the app's database.py accepts, so the tool takes every DATABASE_URL the app does."""
    # Imported when used, as cli.py imports models.py, and any failure told as one line: callers
    # (the CLI's scrubbing of unexpected errors too) expect only MigrationError from parsing.
    try:
        from database import POSTGRES_SCHEMES  # the app's module at the repo root
    except Exception as exc:
        raise MigrationError(
            f"cannot import the app's database.py ({type(exc).__name__}: {exc})",
            "run the tool from the Todo app's directory, where models.py and database.py are",
        ) from None
    return POSTGRES_SCHEMES


def _split_authority(rest: str) -> tuple[str | None, str]:
    """(user info, hosts) as libpq reads them: the user info ends at the first '@' before any '/',
    the hosts at the next '/' or '?'. None when libpq would see no user info."""
    head = re.match(r"[^@/]*", rest).group()
    if not rest[len(head) :].startswith("@"):
        return None, re.match(r"[^/?]*", rest).group()
    return head, re.match(r"[^/?]*", rest[len(head) + 1 :]).group()


def typed_secrets(rest: str) -> tuple[str, ...]:
    """The password however libpq or a person would split the URL, raw and percent-decoded."""
    userinfo, _ = _split_authority(rest)
    last_at = rest.rpartition("@")[0]  # "u:p@ss@host": the password a person meant
    raw = [info.partition(":")[2] for info in (userinfo or "", last_at.split("/")[0], last_at) if ":" in info]
    raw += _QUERY_PASSWORD_RE.findall(rest)
    found = {*raw, *(unquote(r) for r in raw)}
    return tuple(sorted(s for s in found if s))


def check_credentials(rest: str) -> None:
    """Catch an unencoded '@', '/' or '%' in the user or password, which libpq would misread as
    part of the host, as host:port, or quote back in its error."""
    userinfo, hosts = _split_authority(rest)
    if userinfo is not None and "@" in hosts:
        raise UsageError(
            "the user or password in the PostgreSQL URL contains '@'", "percent-encode it as %40"
        )
    if userinfo is None and "@" in rest and _looks_like_user_password(hosts):
        raise UsageError("the password in the PostgreSQL URL contains '/'", "percent-encode it as %2F")
    passwords = [userinfo or "", *_QUERY_PASSWORD_RE.findall(rest)]
    if any(_BAD_PERCENT_RE.search(p) for p in passwords):
        raise UsageError(
            "the user or password in the PostgreSQL URL contains a '%' that is not percent-encoded",
            PERCENT_HELP,
        )


def _looks_like_user_password(hosts: str) -> bool:
    """'user:pa' before a '/' that a later '@' shows was inside the password, not host:port."""
    if hosts.startswith("[") or ":" not in hosts:
        return False
    return not hosts.rpartition(":")[2].isdigit()


def _libpq_reason(exc: Exception, secrets: Iterable[str]) -> str:
    """libpq's complaint without the part it quotes back, which may be the password."""
    reason = str(exc).strip().removeprefix("invalid dsn: ")
    if unknown := re.fullmatch(r'invalid URI query parameter: "([A-Za-z0-9_]*)"', reason):
        return f"unknown parameter ?{unknown.group(1)}=; libpq takes e.g. sslmode, connect_timeout, application_name"
    reason = re.sub(r':\s*"[^\n]*"$', "", reason)
    return scrub_password(reason, secrets)


def connect(target: Target, *, autocommit: bool = False) -> PgConnection:
    """Open a connection that cannot hang: connect_timeout defaults to 10 s, TCP keepalives on."""
    params = dict(target.params)
    params.setdefault("connect_timeout", str(DEFAULT_CONNECT_TIMEOUT))
    params.setdefault("application_name", APPLICATION_NAME)
    # In the startup packet, not a SET: PgBouncer's transaction pooling keeps no session state.
    params.setdefault("client_encoding", "UTF8")
    params.setdefault("keepalives", "1")
    params.setdefault("keepalives_idle", "30")
    params.setdefault("keepalives_interval", "10")
    params.setdefault("keepalives_count", "3")
    try:
        conn = psycopg2.connect(**params)
    except psycopg2.OperationalError as exc:
        raise explain_connect_error(exc, target) from None
    conn.autocommit = autocommit
    return conn


def explain_connect_error(exc: Exception, target: Target) -> MigrationError:
    """Map libpq's connection failures to one line with the fix."""
    msg = target.scrub(str(exc).strip())
    low = msg.lower()
    where = target.masked
    first = msg.splitlines()[0] if msg else type(exc).__name__
    if (
        "password authentication failed" in low
        or "password is required" in low
        or ("no password supplied" in low)
    ):
        return MigrationError(
            f"PostgreSQL at {where} rejected the password for user {target.user or '(default)'!r}",
            f"check the user and password in --postgres-url / DATABASE_URL ({PERCENT_HELP})",
        )
    m = re.search(r'database "([^"]+)" does not exist', msg)
    if m:
        owner = f" OWNER {target.user}" if target.user else ""
        return MigrationError(
            f"database {m.group(1)!r} does not exist on {where}",
            f"create it first: psql -c 'CREATE DATABASE \"{m.group(1)}\"{owner}' (or createdb {m.group(1)})",
        )
    m = re.search(r'role "([^"]+)" does not exist', msg)
    if m:
        return MigrationError(
            f"role {m.group(1)!r} does not exist on {where}",
            f"create it as a superuser: CREATE ROLE \"{m.group(1)}\" LOGIN PASSWORD '...'; "
            "or fix the user in the URL",
        )
    if "timeout expired" in low:
        return MigrationError(
            f"timed out connecting to PostgreSQL at {where}",
            "check host, port, firewall and VPN; raise ?connect_timeout=SECONDS if the server is slow",
        )
    if "could not translate host name" in low or "name or service not known" in low:
        return MigrationError(
            f"cannot resolve the PostgreSQL host {target.host!r}",
            "check the host name in the URL",
        )
    if "connection refused" in low:
        return MigrationError(
            f"PostgreSQL at {where} refused the connection",
            "is the server running and listening on that host and port?",
        )
    if "server does not support ssl" in low:
        return MigrationError(
            f"PostgreSQL at {where} does not offer TLS but the URL requires it",
            "use ?sslmode=prefer or disable, or enable ssl on the server",
        )
    if "no pg_hba.conf entry" in low or "pg_hba.conf rejects" in low:
        if "no encryption" in low or "ssl off" in low:
            return MigrationError(
                f"PostgreSQL at {where} only accepts TLS connections",
                "add ?sslmode=require to the URL (verify-full with sslrootcert=CA.pem to check the certificate)",
            )
        return MigrationError(
            f"PostgreSQL at {where} does not allow this user/database from this address (pg_hba.conf)",
            "ask the administrator to allow it, or check user and database in the URL",
        )
    if "certificate" in low or "ssl" in low:
        return MigrationError(
            f"TLS to PostgreSQL at {where} failed: {first}",
            "check sslmode and sslrootcert in the URL (sslmode=require skips certificate checks)",
        )
    if "too many connections" in low or "remaining connection slots" in low:
        return MigrationError(
            f"PostgreSQL at {where} has no free connection slots",
            "retry when load is lower, or raise max_connections / use the pooler",
        )
    if "is the server running" in low or "no such file or directory" in low:
        return MigrationError(
            f"no PostgreSQL server answers at {where}",
            "is the server running there? check host and port",
        )
    return MigrationError(f"cannot connect to PostgreSQL at {where}: {first}", "check the URL")


CONNECTION_LOST_HINT = "re-run the migration when the connection is stable"


@contextmanager
def interruptible() -> Iterator[None]:
    """Let Ctrl-C cancel a long statement (an index build) at once instead of after it ends.

    psycopg2's wait callback runs queries asynchronously and cancels them on KeyboardInterrupt.
    It cannot be used with COPY, so it is switched on only around statements that are not COPY.
    """
    psycopg2.extensions.set_wait_callback(psycopg2.extras.wait_select)
    try:
        yield
    finally:
        psycopg2.extensions.set_wait_callback(None)


def explain_run_error(
    exc: psycopg2.Error, target: Target, doing: str, schema: str = "public"
) -> MigrationError:
    """Errors after connecting: the transaction is rolled back, so the target is untouched."""
    msg = target.scrub((getattr(exc, "pgerror", None) or str(exc)).strip())
    first = msg.splitlines()[0].removeprefix("ERROR:").strip() if msg else type(exc).__name__
    detail = getattr(getattr(exc, "diag", None), "message_detail", None)
    if isinstance(exc, psycopg2.errors.DependentObjectsStillExist) and detail:
        # PostgreSQL names the dependent objects (a view, another table's foreign key) only here.
        return MigrationError(
            f"PostgreSQL refused while {doing}: {first} ({target.scrub(' '.join(detail.split()))})",
            "drop or change those objects first (the tool never drops what the models do not create)",
            target_untouched=True,
        )
    if isinstance(exc, psycopg2.errors.InsufficientPrivilege):
        user = f'"{target.user or "YOUR_USER"}"'
        owned = re.search(r"must be owner of (?:table|relation|sequence|index) (\S+)", msg)
        granted = re.search(r"permission denied for (table|sequence|relation) (\S+)", msg)
        if owned:
            fix = (
                f"only the owner of {owned.group(1)} may do this: run as that user, or as its owner: "
                f"ALTER TABLE {owned.group(1)} OWNER TO {user}"
            )
        elif granted and granted.group(1) == "sequence":
            fix = f"as its owner run: GRANT SELECT, UPDATE ON SEQUENCE {granted.group(2)} TO {user}"
        elif granted:
            fix = f"as its owner run: GRANT SELECT, INSERT, UPDATE, DELETE ON {granted.group(2)} TO {user}"
        elif "permission denied for database" in msg:
            fix = (
                f"the user may not create schemas; as the database owner run: GRANT CREATE ON DATABASE "
                f'"{target.dbname}" TO {user}, or create it for them: CREATE SCHEMA "{schema}" AUTHORIZATION {user}'
            )
        elif schema == "public":
            fix = (
                "since PostgreSQL 15 ordinary users cannot create tables in schema public; as the owner run: "
                f"GRANT CREATE ON SCHEMA public TO {user} (or use --schema with a schema you own)"
            )
        else:
            fix = f'as the schema\'s owner run: GRANT CREATE, USAGE ON SCHEMA "{schema}" TO {user}'
        return MigrationError(
            f"permission denied while {doing} on {target.masked}: {first}", fix, target_untouched=True
        )
    # The server's own errors of class 53 (disk, memory, connections, temp_file_limit) are
    # OperationalErrors to psycopg2 as a lost connection is: told apart by their SQLSTATE.
    code = getattr(exc, "pgcode", None) or ""
    if isinstance(exc, psycopg2.errors.DiskFull):
        return MigrationError(
            f"PostgreSQL ran out of disk space while {doing} ({first})",
            "free space on the server (the data, its indexes and the WAL need room at once) and re-run",
            target_untouched=True,
        )
    if code.startswith("53"):
        return MigrationError(
            f"PostgreSQL ran out of resources while {doing}: {first}",
            "raise the server's limit named above (or ask its administrator) and re-run",
            target_untouched=True,
        )
    # A connection cut mid-COPY TO reaches psycopg2 as a bare status with no message from libpq.
    cut = "no message from the libpq" in msg or "server closed the connection" in msg
    if (
        cut
        or isinstance(exc, psycopg2.InterfaceError)
        or (isinstance(exc, psycopg2.OperationalError) and not code)
        or code.startswith(("08", "57P"))
    ):
        return MigrationError(
            f"lost the connection to PostgreSQL while {doing} ({first})",
            CONNECTION_LOST_HINT,
            target_untouched=True,
        )
    return MigrationError(
        f"PostgreSQL refused while {doing}: {first}",
        "fix the cause PostgreSQL names here and re-run (--debug shows the full error)",
        target_untouched=True,
    )
