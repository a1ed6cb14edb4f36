"""Alembic's entry point, run by `ragserve.relational.migrate` with an open connection.

The service passes its own connection in `config.attributes["connection"]`, already inside
a transaction that holds the migration lock, so this script never opens or commits one:
whatever it does commits or rolls back with the caller's transaction. Developers running
`alembic -x url=... revision --autogenerate` get an engine of their own instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from ragserve.relational.database import metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run() -> None:
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _configure(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("run migrations with `ragserve db upgrade`, or pass `-x url=<database URL>` to alembic")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _configure(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run `ragserve db upgrade` against the database")
_run()
