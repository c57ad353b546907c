"""The PostgreSQL URL: parsed as libpq does, mistakes in the password explained, the password
never printed (as typed or decoded), whether the URL parses or not. No server needed."""

from __future__ import annotations

import json
import socket
import sys
from urllib.parse import unquote

import psycopg2
import pytest
from conftest import assert_one_line_error, run_cli

from database import POSTGRES_SCHEMES
from todo_migration.errors import EXIT_USAGE, MigrationError, UsageError
from todo_migration.target import (
    PERCENT_HELP,
    explain_connect_error,
    parse_target_url,
    scrub_password,
)


def usage_error(url: str) -> str:
    with pytest.raises(UsageError) as caught:
        parse_target_url(url)
    assert caught.value.exit_code == EXIT_USAGE
    return caught.value.one_line()


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", POSTGRES_SCHEMES)
def test_the_apps_postgres_schemes_are_the_ones_accepted(scheme):
    target = parse_target_url(f"{scheme}://u:pw@db.example:6432/todo")
    assert (target.host, target.params["port"], target.dbname) == ("db.example", "6432", "todo")


def test_a_percent_encoded_password_is_decoded():
    target = parse_target_url("postgresql://u:p%40ss%3Aw%2Frd%25@host/db")
    assert target.params["password"] == "p@ss:w/rd%"
    assert target.masked == "host:5432/db"


def test_a_bare_percent_in_the_password_says_how_to_encode_it():
    line = usage_error("postgresql://u:pa%zzword@host/db")
    assert "'%' that is not percent-encoded" in line
    assert PERCENT_HELP[1:] in line  # one_line capitalises the fix
    assert "zzword" not in line


def test_a_bare_percent_in_a_password_parameter_is_caught_too():
    line = usage_error("postgresql://u@host/db?sslmode=prefer&password=se%zzcret")
    assert "not percent-encoded" in line
    assert "zzcret" not in line


@pytest.mark.parametrize(
    "url", ["postgresql://u:p@ss@host/db", "postgresql://u:p@ss@host:5432/db?sslmode=require"]
)
def test_an_at_sign_in_the_password_is_not_read_as_the_host(url):
    line = usage_error(url)
    assert line == "the user or password in the PostgreSQL URL contains '@'. Percent-encode it as %40."


def test_a_slash_in_the_password_is_not_read_as_host_and_port():
    line = usage_error("postgresql://u:pass/word@host/db")
    assert line == "the password in the PostgreSQL URL contains '/'. Percent-encode it as %2F."


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:pw@host/my@db",  # '@' in the database name
        "postgresql://u:pw@host/db?sslrootcert=/etc/a@b/ca.pem",  # and in a query parameter
        "postgresql://u:p?ss#w:rd@host/db",  # libpq reads these fine unencoded
        "postgresql://u:pw@[::1]:5432/db",
        "postgresql://u:pw@h1:5432,h2:5433/db",
    ],
)
def test_valid_urls_are_not_mistaken_for_those_mistakes(url):
    parse_target_url(url)


def test_a_port_typo_is_still_named():
    assert "the port '54x2' in the PostgreSQL URL is not a number" in usage_error(
        "postgresql://u:pw@localhost:54x2/db"
    )


def test_an_app_without_database_py_is_one_line_not_a_crash(monkeypatch):
    monkeypatch.setitem(sys.modules, "database", None)  # import database → ImportError
    with pytest.raises(MigrationError) as caught:
        parse_target_url("postgresql://u:pw@host/db")
    assert "cannot import the app's database.py" in caught.value.one_line()


# --- the password is never printed ---------------------------------------------------------

SECRET = "Sup3rSecret"
LEAKY_URLS = [
    f"postgresql://u:{SECRET}%zz@host/db",  # libpq quotes the bad token back
    f"postgresql://u:{SECRET}%00x@host/db",  # "forbidden value %00": quoted back as well
    f"postgresql://u:{SECRET}@[::1/db",  # libpq quotes the whole URL back
    f"postgresql://u@host/db?password={SECRET}%zz",
    f"postgresql://u@host/db?password=a={SECRET}",  # "extra key/value separator": quoted back
    f"postgresql://u:{SECRET}@host/d%zzb",
    f"postgresql://u:{SECRET}@ss@host/db",
    f"postgresql://u:{SECRET}/x@host/db",
    f"postgresql://u:x/{SECRET}@host",
]


@pytest.mark.parametrize("url", LEAKY_URLS)
def test_parse_errors_never_hold_the_password(url):
    line = usage_error(url)
    assert SECRET not in line, line
    assert url not in line


@pytest.mark.parametrize("password", ["p%25zz%40word", "s3cr%3Aet", "plainpass", "with%20space", "%41BCDEF"])
def test_scrub_removes_the_password_as_typed_and_decoded(password):
    url = f"postgresql://user:{password}@host/db"
    target = parse_target_url(url)
    for text in (
        f"connection to {url} failed",
        f'FATAL: bad token "{password}"',
        f"FATAL: something about {unquote(password)} here",
        f"host=h password={unquote(password)} dbname=db",
    ):
        scrubbed = target.scrub(text)
        assert password not in scrubbed and unquote(password) not in scrubbed, scrubbed
    assert password not in repr(target) and unquote(password) not in repr(target)


def test_scrub_removes_a_password_given_as_a_query_parameter():
    target = parse_target_url("postgresql://user@host/db?password=qu%3Dery-pw&sslmode=prefer")
    assert target.params["password"] == "qu=ery-pw"
    text = "postgresql://user@host/db?password=qu%3Dery-pw&sslmode=prefer said qu=ery-pw"
    assert target.scrub(text) == "postgresql://user@host/db?password=***&sslmode=prefer said ***"


def test_one_helper_scrubs_urls_and_keyword_forms():
    assert scrub_password("see postgresql://u:p@ss@h/db now") == "see postgresql://u:***@h/db now"
    assert scrub_password("host=h password='a b' user=u") == "host=h password=*** user=u"
    assert scrub_password("no secrets in here", ["zz"]) == "no secrets in here"  # too short to hunt


def test_connection_errors_from_the_driver_are_scrubbed():
    target = parse_target_url(f"postgresql://u:{SECRET}%25@127.0.0.1:1/db")
    exc = psycopg2.OperationalError(f'connection failed: weird "{SECRET}%" and "{SECRET}%25"')
    line = explain_connect_error(exc, target).one_line()
    assert SECRET not in line, line


# --- through the CLI: nothing listens on the port, so no server is needed -----------------


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: nothing listens there


def assert_nowhere(result, report_path, *secrets: str) -> None:
    report = report_path.read_text(encoding="utf-8")
    json.loads(report)
    for secret in secrets:
        for where, text in (("stdout", result.stdout), ("stderr", result.stderr), ("report", report)):
            assert secret not in text, f"{secret!r} in {where}: {text}"


@pytest.mark.parametrize(
    ("password", "needle", "code", "secrets"),
    [
        ("pa%zzword", "percent-encode special characters", 2, ["pa%zzword", "zzword"]),
        ("p@ssw0rd", "contains '@'", 2, ["p@ssw0rd", "ssw0rd"]),
        ("zq7k/w0rd", "contains '/'", 2, ["zq7k/w0rd", "zq7k"]),
        ("s3cr%25et%40x", "refused the connection", 1, ["s3cr%25et%40x", "s3cr%et@x"]),
    ],
)
def test_the_cli_never_prints_the_password(sample_db, tmp_path, password, needle, code, secrets):
    report = tmp_path / "report.json"
    url = f"postgresql://app:{password}@127.0.0.1:{unused_port()}/todo"
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", url, "--report", str(report))
    assert_one_line_error(result, needle)
    assert result.returncode == code
    assert_nowhere(result, report, *secrets)


def test_the_cli_never_prints_a_password_parameter(sample_db, tmp_path):
    report = tmp_path / "report.json"
    url = f"postgresql://app@127.0.0.1:{unused_port()}/todo?password=qp%zzsecret"
    result = run_cli("--sqlite-path", str(sample_db), "--postgres-url", url, "--report", str(report))
    assert_one_line_error(result, "not percent-encoded")
    assert result.returncode == 2
    assert_nowhere(result, report, "qp%zzsecret", "zzsecret")


def test_the_cli_never_prints_a_password_from_database_url(sample_db, tmp_path):
    report = tmp_path / "report.json"
    url = f"postgresql://app:env%zzsecret@127.0.0.1:{unused_port()}/todo"
    result = run_cli("--sqlite-path", str(sample_db), "--report", str(report), env={"DATABASE_URL": url})
    assert_one_line_error(result, "not percent-encoded")
    assert_nowhere(result, report, "env%zzsecret", "zzsecret")
