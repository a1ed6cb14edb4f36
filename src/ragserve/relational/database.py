"""One relational database for the service's own state, on SQLAlchemy Core.

    db = Database.open(settings.database_url, settings.data_dir)   # SQLite file when no URL
    rows = await db.run(lambda conn: conn.execute(select(api_keys)).all())

Without `RAGSERVE_DATABASE_URL` the state lives in `<data_dir>/state.sqlite3` (WAL, so the
processes sharing a data directory share it). With `postgresql://…` (driven by psycopg 3)
every replica shares one PostgreSQL. Statements are short and run on worker threads, so
the event loop never waits on the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from ragserve.errors import ConfigurationError, StoreError

T = TypeVar("T")
_CREATE_ATTEMPTS = 5

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),  # the visible prefix, "rsk_" + 8 hex digits
    Column("tenant", String(128), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("salt", String(32), nullable=False),
    Column("digest", String(64), nullable=False),  # HMAC-SHA256(pepper, salt + secret), hex
    Column("scopes", String(64), nullable=False),  # space-separated
    Column("collections", Text, nullable=True),  # JSON list; NULL: every collection of the tenant
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Column("monthly_tokens", BigInteger, nullable=True),
    Column("monthly_usd", Float, nullable=True),
)

# One row per tenant, caller and calendar month (UTC); `key_id` "" is the tenant's own total.
usage = Table(
    "usage",
    metadata,
    Column("tenant", String(128), nullable=False),
    Column("key_id", String(160), nullable=False),
    Column("month", String(7), nullable=False),  # "2026-11"
    Column("requests", BigInteger, nullable=False, default=0),
    Column("prompt_tokens", BigInteger, nullable=False, default=0),
    Column("completion_tokens", BigInteger, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    PrimaryKeyConstraint("tenant", "key_id", "month"),
)


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str | None, data_dir: Path) -> Database:
        """Connect (and create missing tables). ConfigurationError for a URL we cannot use."""
        if url is None:
            data_dir.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{data_dir / 'state.sqlite3'}"
        engine = _engine(url)
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                metadata.create_all(engine)
                break
            except SQLAlchemyError as exc:
                # Several workers starting at once race to create the tables; the loser sees
                # "already exists" and, on its next look, the tables the winner made.
                if attempt == _CREATE_ATTEMPTS - 1:
                    engine.dispose()
                    raise StoreError(f"relational database unreachable: {_describe(exc)}") from exc
                time.sleep(0.05 * (attempt + 1))
        return cls(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def run(self, work: Callable[[Connection], T]) -> T:
        """`work` inside one transaction, on a worker thread; StoreError when the database fails."""
        return await asyncio.to_thread(self.run_sync, work)

    def run_sync(self, work: Callable[[Connection], T]) -> T:
        try:
            with self.engine.begin() as conn:
                return work(conn)
        except SQLAlchemyError as exc:
            raise StoreError(f"relational database: {_describe(exc)}") from exc

    def close(self) -> None:
        self.engine.dispose()


def _engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"RAGSERVE_DATABASE_URL: not a database URL: {_describe(exc)}") from exc
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        # One driver for every PostgreSQL URL spelling: psycopg 3 (binary wheels, no libpq build).
        parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)
    if backend == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    raise ConfigurationError(
        f"RAGSERVE_DATABASE_URL: unsupported database {backend!r}; use postgresql://… or sqlite:///path"
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _describe(exc: Exception) -> str:
    # The first line only: SQLAlchemy appends the statement and its parameters (which may hold secrets).
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
