"""Schema migrations of the relational state: Alembic, driven from code, no alembic.ini.

    upgrade(engine, lock_path)         # to the newest revision; safe with many processes at once
    status(engine)                     # SchemaState: where the database is against this release

The scripts ship inside the package (`migrations/`), so an installed service can migrate
itself. Every upgrade runs in one transaction holding a lock, so processes starting at the
same moment migrate once between them: on SQLite a file lock next to the database (SQLite
DDL races would otherwise fail with "table exists"), on PostgreSQL a transaction-scoped
advisory lock per schema (released by the commit, or by the server if the process dies).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect, text

from ragserve.store.locks import InterProcessLock

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"
# The tables revision 1 creates: a database holding none of them (nor a version) is "empty".
OWN_TABLES = frozenset({"api_keys", "usage", "jobs", VERSION_TABLE})

SchemaStatus = Literal["current", "behind", "ahead"]


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a database stands: its revision(s) (empty: never migrated) against this release's head(s)."""

    current: tuple[str, ...]
    heads: tuple[str, ...]
    status: SchemaStatus

    def describe(self) -> str:
        at = ", ".join(self.current) or "none"
        head = ", ".join(self.heads)
        if self.status == "current":
            return f"{at} (head)"
        if self.status == "ahead":
            return f"{at} (ahead: unknown to this release, whose head is {head}; a newer release migrated it)"
        return f"{at} (behind: head is {head}; run 'ragserve db upgrade')"


def config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged scripts; `connection` is what env.py migrates."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def _scripts() -> ScriptDirectory:
    # Parsing the version files once per process: readiness asks for the status on every probe.
    return ScriptDirectory.from_config(config())


def heads() -> tuple[str, ...]:
    return tuple(sorted(_scripts().get_heads()))


def state_of(conn: Connection) -> SchemaState:
    current = tuple(sorted(MigrationContext.configure(conn).get_current_heads()))
    head = heads()
    if current == head:
        return SchemaState(current, head, "current")
    scripts = _scripts()
    for revision in current:
        try:
            scripts.get_revision(revision)
        except (RevisionError, CommandError):  # the script directory wraps the former in the latter
            return SchemaState(current, head, "ahead")
    return SchemaState(current, head, "behind")


def status(engine: Engine) -> SchemaState:
    with engine.connect() as conn:
        return state_of(conn)


def is_empty(engine: Engine) -> bool:
    """True when the database (its current schema) holds none of our tables: nothing to lose by migrating."""
    with engine.connect() as conn:
        return not OWN_TABLES & set(inspect(conn).get_table_names())


def upgrade(engine: Engine, lock_path: Path | None = None, revision: str = "head") -> SchemaState:
    """Migrate to `revision` under the migration lock; a no-op when already there. Returns the new state."""
    with file_lock(lock_path), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Per schema, so databases sharing a server (or tests, a schema each) do not queue up.
            conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext('ragserve-migrations:' || coalesce(current_schema(), '')))")
            )
        command.upgrade(config(conn), revision)
        return state_of(conn)


def lock_path_for(engine: Engine) -> Path | None:
    """The lock file beside a SQLite database file; None for a server database or SQLite in memory."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    return path.with_name(path.name + ".migrate.lock")


@contextlib.contextmanager
def file_lock(path: Path | None) -> Iterator[None]:
    """The SQLite migration lock (nothing for None). Not re-entrant: never nest it around `upgrade(…, path)`."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with InterProcessLock(path).hold():
        yield
