"""The app's engine setup: one place that turns ENVIRONMENT and DATABASE_URL into an engine.

development (default): SQLite ./todo.db unless DATABASE_URL says otherwise.
production: DATABASE_URL required; a QueuePool sized for the API workers.
serverless: DATABASE_URL required; NullPool, because functions freeze between invocations and
pooled connections would go stale (PgBouncer or the provider's pooler does the pooling).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from dotenv import load_dotenv
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool, QueuePool

DEFAULT_SQLITE_URL = "sqlite:///./todo.db"
ENVIRONMENTS = ("development", "production", "serverless")
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2")


class DatabaseConfigError(RuntimeError):
    """DATABASE_URL or ENVIRONMENT cannot give a working engine; the message says how to fix it."""


@dataclass(frozen=True)
class DatabaseConfig:
    environment: str
    url: str
    engine_kwargs: dict
    banner: str


def normalize_postgres_url(url: str) -> str:
    """Accept the spellings hosting providers hand out; SQLAlchemy only knows postgresql://."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise DatabaseConfigError(
            "DATABASE_URL is not a URL; expected postgresql://USER:PASSWORD@HOST:5432/DBNAME"
        )
    if scheme.lower() in POSTGRES_SCHEMES:
        return f"postgresql+psycopg2://{rest}"
    return url


def _masked(url: str) -> str:
    parsed = make_url(url)
    return parsed.render_as_string(hide_password=True)


def _require_postgres_url(environment: str, url: str | None) -> str:
    if not url:
        raise DatabaseConfigError(
            f"ENVIRONMENT={environment} needs DATABASE_URL "
            "(postgresql://USER:PASSWORD@HOST:5432/DBNAME) in the environment or .env"
        )
    normalized = normalize_postgres_url(url.strip())
    try:
        parsed = make_url(normalized)
    except ArgumentError:
        raise DatabaseConfigError(
            f"DATABASE_URL for ENVIRONMENT={environment} cannot be parsed; "
            "expected postgresql://USER:PASSWORD@HOST:5432/DBNAME"
        ) from None
    if parsed.get_backend_name() != "postgresql":
        raise DatabaseConfigError(
            f"ENVIRONMENT={environment} needs a PostgreSQL DATABASE_URL, got {parsed.drivername}://"
        )
    if not parsed.database:
        raise DatabaseConfigError(
            f"DATABASE_URL for ENVIRONMENT={environment} names no database; add /DBNAME"
        )
    return normalized


def resolve_config(env: dict[str, str] | None = None) -> DatabaseConfig:
    """Decide the engine settings from an environment mapping (os.environ by default)."""
    env = dict(os.environ) if env is None else env
    environment = (env.get("ENVIRONMENT") or "development").strip().lower()
    url = env.get("DATABASE_URL") or None

    if environment == "development":
        url = normalize_postgres_url(url) if url else DEFAULT_SQLITE_URL
        kwargs: dict = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False}
            banner = f"✅ Database configured for DEVELOPMENT environment (SQLite: {url})"
        else:
            banner = f"✅ Database configured for DEVELOPMENT environment ({_masked(url)})"
        return DatabaseConfig(environment, url, kwargs, banner)

    if environment == "production":
        url = _require_postgres_url(environment, url)
        kwargs = {
            "poolclass": QueuePool,
            "pool_size": 20,
            "max_overflow": 10,
            "pool_pre_ping": True,
            "pool_recycle": 3600,
        }
        banner = "✅ Database configured for PRODUCTION environment (QueuePool: size=20, max_overflow=10)"
        return DatabaseConfig(environment, url, kwargs, banner)

    if environment == "serverless":
        url = _require_postgres_url(environment, url)
        sslmode = make_url(url).query.get("sslmode", "prefer")
        kwargs = {"poolclass": NullPool, "pool_pre_ping": True}
        banner = f"✅ Database configured for SERVERLESS environment (NullPool, sslmode={sslmode})"
        return DatabaseConfig(environment, url, kwargs, banner)

    raise DatabaseConfigError(f"ENVIRONMENT={environment!r} is not one of {', '.join(ENVIRONMENTS)}")


def build_engine(config: DatabaseConfig, *, echo_banner: bool = True) -> Engine:
    if echo_banner:
        print(config.banner)
    return create_engine(config.url, **config.engine_kwargs)


def get_engine(env: dict[str, str] | None = None, *, echo_banner: bool = True) -> Engine:
    """The engine the app uses; reads ./.env first (real environment variables win)."""
    if env is None:
        load_dotenv()
    return build_engine(resolve_config(env), echo_banner=echo_banner)


_engine: Engine | None = None
_session_factory: sessionmaker[Session] | None = None


def get_db() -> Iterator[Session]:
    """FastAPI dependency: one session per request, engine built on first use."""
    global _engine, _session_factory
    if _session_factory is None:
        _engine = get_engine()
        _session_factory = sessionmaker(bind=_engine, autoflush=False, expire_on_commit=False)
    session = _session_factory()
    try:
        yield session
    finally:
        session.close()
