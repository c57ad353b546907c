"""database.py: the app's engine by ENVIRONMENT and DATABASE_URL."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT
from sqlalchemy import text
from sqlalchemy.pool import NullPool, QueuePool

from database import DatabaseConfigError, build_engine, normalize_postgres_url, resolve_config


def test_development_defaults_to_sqlite_todo_db(capsys):
    config = resolve_config({})
    assert config.url == "sqlite:///./todo.db"
    assert config.banner == "✅ Database configured for DEVELOPMENT environment (SQLite: sqlite:///./todo.db)"
    engine = build_engine(config)
    assert capsys.readouterr().out.strip() == config.banner
    assert engine.url.get_backend_name() == "sqlite"


def test_development_uses_database_url_when_set():
    config = resolve_config({"ENVIRONMENT": "development", "DATABASE_URL": "postgres://u:secret@h/db"})
    assert config.url == "postgresql+psycopg2://u:secret@h/db"
    assert "secret" not in config.banner


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg2", "POSTGRES"])
def test_postgres_url_spellings_are_accepted(scheme):
    config = resolve_config({"ENVIRONMENT": "production", "DATABASE_URL": f"{scheme}://u:p@db:5432/todo"})
    assert config.url == "postgresql+psycopg2://u:p@db:5432/todo"


def test_production_uses_a_sized_queue_pool(pg_url):
    config = resolve_config({"ENVIRONMENT": "Production", "DATABASE_URL": pg_url})
    assert (
        config.banner
        == "✅ Database configured for PRODUCTION environment (QueuePool: size=20, max_overflow=10)"
    )
    assert config.engine_kwargs == {
        "poolclass": QueuePool,
        "pool_size": 20,
        "max_overflow": 10,
        "pool_pre_ping": True,
        "pool_recycle": 3600,
    }
    engine = build_engine(config, echo_banner=False)
    with engine.connect() as conn:  # a real server: the engine works, not just its settings
        assert conn.execute(text("SELECT 1")).scalar() == 1
    assert engine.pool.size() == 20
    engine.dispose()


def test_serverless_uses_no_pool_and_reports_sslmode():
    config = resolve_config(
        {"ENVIRONMENT": "serverless", "DATABASE_URL": "postgresql://u:p@h/db?sslmode=require"}
    )
    assert config.engine_kwargs["poolclass"] is NullPool
    assert "sslmode=require" in config.banner


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"ENVIRONMENT": "production"}, "needs DATABASE_URL"),
        ({"ENVIRONMENT": "production", "DATABASE_URL": "not a url"}, "not a URL"),
        ({"ENVIRONMENT": "production", "DATABASE_URL": "mysql://u:p@h/db"}, "needs a PostgreSQL"),
        ({"ENVIRONMENT": "production", "DATABASE_URL": "postgresql://u:p@h"}, "names no database"),
        ({"ENVIRONMENT": "serverless", "DATABASE_URL": ""}, "needs DATABASE_URL"),
        ({"ENVIRONMENT": "staging"}, "is not one of"),
    ],
)
def test_bad_configuration_is_a_clear_error(env, needle):
    with pytest.raises(DatabaseConfigError, match=needle):
        resolve_config(env)


def test_password_is_never_in_the_banner_or_errors():
    config = resolve_config({"ENVIRONMENT": "development", "DATABASE_URL": "postgresql://u:hunter2@h/db"})
    assert "hunter2" not in config.banner
    with pytest.raises(DatabaseConfigError) as info:
        resolve_config({"ENVIRONMENT": "production", "DATABASE_URL": "mysql://u:hunter2@h/db"})
    assert "hunter2" not in str(info.value)


def test_normalize_leaves_other_schemes_alone():
    assert normalize_postgres_url("sqlite:///./todo.db") == "sqlite:///./todo.db"


def test_get_engine_reads_dot_env_and_real_environment_wins(tmp_path):
    (tmp_path / ".env").write_text("ENVIRONMENT=serverless\nDATABASE_URL=postgresql://u:p@from-dotenv/db\n")
    code = "from database import get_engine; e = get_engine(echo_banner=False); print(e.url.host)"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ENVIRONMENT")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "from-dotenv", out.stderr
    env["DATABASE_URL"] = "postgresql://u:p@from-env/db"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "from-env", out.stderr
