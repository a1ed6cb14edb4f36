"""Schema migrations: `ragserve db upgrade|current`, migrating at open, and readiness on an old schema.

Run on SQLite in a temporary data directory and on the PostgreSQL at 127.0.0.1:5432 (a
fresh schema per test, skipped with the reason only when it cannot be reached).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from asgi import serve

from ragserve.cli import main
from ragserve.rag import RAG
from ragserve.relational import migrate
from ragserve.relational.database import Database, api_keys, metadata, usage
from relational_backends import BACKENDS, database_url, postgres_schema

KEY_ROW = {
    "id": "rsk_0000beef",
    "tenant": "acme",
    "name": "from before migrations",
    "salt": "s",
    "digest": "d",
    "scopes": "query",
    "created_at": 1.0,
}


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    with database_url(request.param, tmp_path) as found:
        yield found


def make_legacy(url: str | None, data_dir: Path) -> None:
    """A database as releases before migrations left it: `create_all` of keys and usage, no version, one key."""
    db = Database.open(url, data_dir, migrate_schema=False)
    try:
        metadata.create_all(db.engine, tables=[api_keys, usage])
        db.run_sync(lambda conn: conn.execute(api_keys.insert().values(**KEY_ROW)))
    finally:
        db.close()


def db_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str | None, data_dir: Path, *args: str
) -> tuple[int, str]:
    if url is None:
        monkeypatch.delenv("RAGSERVE_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("RAGSERVE_DATABASE_URL", url)
    code = main(["--data-dir", str(data_dir), "db", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_db_upgrade_then_current_says_head(
    url: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = db_command(capsys, monkeypatch, url, tmp_path, "current")
    assert code == 1 and "none (behind: head is 0001; run 'ragserve db upgrade')" in out
    code, out = db_command(capsys, monkeypatch, url, tmp_path, "upgrade")
    assert code == 0 and "upgraded none -> 0001 (head)" in out
    code, out = db_command(capsys, monkeypatch, url, tmp_path, "current")
    assert code == 0 and "0001 (head)" in out
    code, out = db_command(capsys, monkeypatch, url, tmp_path, "upgrade")
    assert code == 0 and "already at 0001 (head)" in out
    db = Database.open(url, tmp_path)
    try:
        tables = db.run_sync(lambda conn: set(sa.inspect(conn).get_table_names()))
        assert {"api_keys", "usage", "jobs", "alembic_version"} <= tables
    finally:
        db.close()


def test_db_upgrade_to_an_unknown_revision_fails_clearly(
    url: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = db_command(capsys, monkeypatch, url, tmp_path, "upgrade", "nosuchrevision")
    assert code == 2 and "migration failed" in out and "nosuchrevision" in out


def test_open_migrates_sqlite_and_an_empty_postgresql(url: str | None, tmp_path: Path) -> None:
    db = Database.open(url, tmp_path)
    try:
        state = db.schema_state()
        assert (state.current, state.status) == (migrate.heads(), "current")
    finally:
        db.close()


def test_the_tables_match_the_newest_revision(url: str | None, tmp_path: Path) -> None:
    # The live Table objects and the migrations must agree, or the next autogenerate (or a query) finds out.
    db = Database.open(url, tmp_path)
    try:
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        db.close()


def test_a_legacy_database_keeps_its_rows(url: str | None, tmp_path: Path) -> None:
    make_legacy(url, tmp_path)
    db = Database.open(url, tmp_path)
    try:
        if url is None:  # SQLite migrates itself at open
            assert db.schema_status() == "current"
        else:  # a PostgreSQL that is in use is the operator's to migrate
            assert db.schema_state().current == () and db.schema_status() == "behind"
            assert db.upgrade().status == "current"
        assert db.run_sync(lambda conn: conn.execute(sa.select(api_keys.c.name)).scalars().all()) == [KEY_ROW["name"]]
        tables = db.run_sync(lambda conn: set(sa.inspect(conn).get_table_names()))
        assert "jobs" in tables
    finally:
        db.close()


def test_workers_opening_at_once_migrate_once(url: str | None, tmp_path: Path) -> None:
    opened: list[Database] = []
    failures: list[BaseException] = []
    start = threading.Barrier(8)

    def open_one() -> None:
        start.wait()
        try:
            opened.append(Database.open(url, tmp_path))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert failures == []
        assert len(opened) == 8
        rows = opened[0].run_sync(
            lambda conn: conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
        )
        assert rows == list(migrate.heads())
    finally:
        for db in opened:
            db.close()


def test_a_schema_from_a_newer_release_is_ahead_and_still_opens(url: str | None, tmp_path: Path) -> None:
    db = Database.open(url, tmp_path)
    try:
        db.run_sync(lambda conn: conn.execute(sa.text("UPDATE alembic_version SET version_num = 'f00d'")))
        assert db.schema_status() == "ahead"
        assert "ahead" in db.schema_state().describe()
    finally:
        db.close()
    again = Database.open(url, tmp_path)  # an older replica mid-rollout: opens, does not try to migrate
    try:
        assert again.schema_status() == "ahead" and again.upgrade().status == "ahead"
    finally:
        again.close()


# ------------------------------------------------------------------ readiness


async def ready(client: httpx.AsyncClient, expect: int, limit_s: float = 30) -> dict[str, object]:
    """The readiness body once the status is `expect` and the warm-up is done."""
    deadline = time.monotonic() + limit_s
    while True:
        r = await client.get("/health/ready")
        body: dict[str, object] = r.json()
        checks = body["checks"]
        assert isinstance(checks, dict)
        if r.status_code == expect and checks.get("warm_up") == "ok":
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)


@pytest.mark.asyncio(loop_scope="session")
async def test_readiness_reports_a_postgresql_schema_behind_until_upgraded(shared_rag: RAG, tmp_path: Path) -> None:
    with postgres_schema() as url:
        make_legacy(url, tmp_path)
        settings = shared_rag.settings.model_copy(update={"data_dir": tmp_path, "database_url": url})
        async with serve(settings, shared_rag) as client:
            body = await ready(client, 503)
            assert body["status"] == "not_ready"
            assert body["checks"] == {
                "store": "ok",
                "embedder": "ok",
                "warm_up": "ok",
                "database": "schema behind this release: run 'ragserve db upgrade'",
            }
            assert (await client.get("/health")).status_code == 503
            db = Database.open(url, tmp_path, migrate_schema=False)
            try:
                await asyncio.to_thread(db.upgrade)
            finally:
                db.close()
            assert (await ready(client, 200))["checks"] == {"store": "ok", "embedder": "ok", "warm_up": "ok"}
