"""One relational database for the service's own state, on SQLAlchemy Core.

    db = Database.open(settings.database_url, settings.data_dir)   # SQLite file when no URL
    rows = await db.run(lambda conn: conn.execute(select(api_keys)).all())

Without `RAGSERVE_DATABASE_URL` the state lives in `<data_dir>/state.sqlite3` (WAL, so the
processes sharing a data directory share it). With `postgresql://…` (driven by psycopg 3)
every replica shares one PostgreSQL. Statements are short and run on worker threads, so
the event loop never waits on the database.

The schema is Alembic's (`ragserve.relational.migrate`); the tables below are the live
shape the code uses and must match the newest revision. SQLite is one machine's own
database, so `open` migrates it to the newest revision itself. A shared PostgreSQL is
migrated by the operator (`ragserve db upgrade`), once, before a release rolls out;
replicas only look (`schema_status`, which readiness reports) -- except on an empty
database, which `open` migrates: a first start has nothing to break, and nothing else
would make a fresh deployment work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from alembic.script.revision import RevisionError
from alembic.util import CommandError as AlembicError
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
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
from ragserve.relational import migrate

T = TypeVar("T")
log = logging.getLogger(__name__)

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

# Background jobs (`ragserve.ingest.jobs_sql`). JSON columns are text; times are epoch seconds.
jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("collection", String(128), nullable=False),
    Column("state", String(16), nullable=False),
    Column("owner", Text, nullable=True),  # the claim token: "<host>:<pid>:<worker>/<claim>"
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("payload", Text, nullable=False),
    Column("progress", Text, nullable=False),
    Column("errors", Text, nullable=False),
    Column("result", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("heartbeat_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    CheckConstraint("state IN ('queued', 'running', 'succeeded', 'failed')", name="jobs_state"),
    Index("jobs_by_state", "state", "created_at"),
)


class Database:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str | None, data_dir: Path, *, migrate_schema: bool = True) -> Database:
        """Connect, migrating SQLite (or an empty PostgreSQL) to the newest schema.

        ConfigurationError for a URL we cannot use, StoreError when the database cannot be
        reached or migrated. A PostgreSQL that is behind is opened as it is: the operator
        migrates it, and `schema_status` says so meanwhile. `migrate_schema=False` only
        connects (the `ragserve db` commands, which report and migrate explicitly).
        """
        if url is None:
            data_dir.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{data_dir / 'state.sqlite3'}"
        engine = _engine(url)
        db = cls(engine)
        if migrate_schema:
            try:
                db._migrate_at_open()
            except SQLAlchemyError as exc:
                engine.dispose()
                raise StoreError(f"relational database unreachable: {_describe(exc)}") from exc
            except Exception:
                engine.dispose()
                raise
        return db

    def _migrate_at_open(self) -> None:
        if self.dialect == "sqlite":
            # Under the lock even to look: the first connections to a new file switch it to WAL,
            # which fails ("database is locked") when several processes do it at once.
            with migrate.file_lock(migrate.lock_path_for(self.engine)):
                if migrate.status(self.engine).status == "behind":
                    migrate.upgrade(self.engine, None)
            return
        if migrate.is_empty(self.engine):
            log.info("relational database is empty: creating the schema")
            self.upgrade()

    def upgrade(self, revision: str = "head") -> migrate.SchemaState:
        """Migrate to `revision` (the newest by default); safe while other processes open or migrate."""
        state = self.schema_state()
        if state.status == "ahead":
            # Alembic cannot walk from a revision it does not know; a newer release made it.
            log.warning("relational schema %s; not migrating", state.describe())
            return state
        try:
            return migrate.upgrade(self.engine, migrate.lock_path_for(self.engine), revision)
        except SQLAlchemyError as exc:
            raise StoreError(f"relational database: migration failed: {_describe(exc)}") from exc
        except (AlembicError, RevisionError) as exc:  # an unknown target revision, a broken script
            raise StoreError(f"relational database: migration failed: {exc}") from exc

    def schema_state(self) -> migrate.SchemaState:
        """The revision and how it compares with this release; StoreError when the database fails."""
        try:
            return migrate.status(self.engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"relational database: {_describe(exc)}") from exc

    def schema_status(self) -> migrate.SchemaStatus:
        """ "current", "behind" (run `ragserve db upgrade`) or "ahead" (a newer release migrated it)."""
        return self.schema_state().status

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
