"""The two relational backends for tests: a SQLite file in a temporary directory, or a fresh PostgreSQL schema.

Each PostgreSQL use gets a schema of its own (`t_<uuid>`, chosen through the URL's
`search_path`), dropped afterwards; PostgreSQL is the one at 127.0.0.1:5432 (trust auth,
database `test`). Callers are skipped, saying why, only when it cannot be reached.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from ragserve.relational.database import Database

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", "postgresql"]


def admin_engine() -> sa.Engine:
    return sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"), poolclass=sa.NullPool)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """The URL of a new, empty schema (dropped on exit); skips the test when PostgreSQL is unreachable."""
    engine = admin_engine()
    schema = f"t_{uuid.uuid4().hex}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is unreachable: {str(exc.orig).splitlines()[0]}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str | None]:
    """What `Database.open` takes: None (SQLite in `tmp_path`) or a fresh PostgreSQL schema's URL."""
    if backend == "sqlite":
        yield None
    else:
        with postgres_schema() as url:
            yield url


def url_of(db: Database) -> str:
    """`db`'s URL, password included, for opening a second pool on the same database (another process)."""
    return db.engine.url.render_as_string(hide_password=False)
