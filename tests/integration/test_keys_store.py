"""`ApiKeys` and `UsageLedger` on both relational backends: SQLite in a data directory and a real PostgreSQL.

Each PostgreSQL test gets a schema of its own (`t_<uuid>`, chosen through the URL's
`search_path`), dropped afterwards; PostgreSQL is the one at 127.0.0.1:5432 (trust auth,
database `test`). Its tests are skipped, saying why, only when it cannot be reached.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ragserve.errors import AuthenticationError, InvalidInputError, NotFoundError
from ragserve.relational.database import Database, api_keys, usage
from ragserve.security.keys import ApiKeys
from ragserve.security.usage import TENANT_TOTAL, Usage, UsageLedger, current_month
from relational_backends import BACKENDS, database_url
from secrets_registry import register

pytestmark = pytest.mark.asyncio(loop_scope="session")

PEPPER = b"pepper-for-the-key-store-tests-0123456789"


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    with database_url(request.param, tmp_path) as url:
        db = Database.open(url, tmp_path)
        try:
            assert db.dialect == request.param
            if url is not None:
                with db.engine.connect() as conn:  # the tables really are in the test's own schema
                    schema = url.rsplit("%3D", 1)[-1]
                    assert conn.execute(sa.text("SELECT current_schema()")).scalar() == schema
            yield db
        finally:
            db.close()


def key_parts(key: str) -> tuple[str, str]:
    """(id, secret) of a whole key `rsk_<8 hex>_<secret>`."""
    return key[:12], key[13:]


async def rows(db: Database, table: sa.Table) -> list[dict[str, object]]:
    return await db.run(lambda conn: [dict(r._mapping) for r in conn.execute(sa.select(table))])


# ------------------------------------------------------------------ API keys


async def test_create_list_get_revoke_authenticate(database: Database) -> None:
    keys = ApiKeys(database, pepper=PEPPER)
    first = await keys.create("acme", "ci", ["query"], collections=["docs", "faq"], monthly_tokens=500)
    second = await keys.create("acme", "ops", ["query", "ingest", "admin"])
    other = await keys.create("beta", "beta", ["ingest"])
    for created in (first, second, other):
        register(created.key)
        key_id, secret = key_parts(created.key)
        assert key_id == created.info.id and created.key.startswith("rsk_") and len(secret) == 43

    assert [k.id for k in await keys.list("acme")] == [second.info.id, first.info.id]  # newest first
    assert {k.id for k in await keys.list(None)} == {first.info.id, second.info.id, other.info.id}
    assert [k.id for k in await keys.list("beta")] == [other.info.id]
    got = await keys.get(first.info.id, "acme")
    assert (got.name, got.scopes, got.collections, got.monthly_tokens) == ("ci", ("query",), ("docs", "faq"), 500)
    with pytest.raises(NotFoundError):
        await keys.get(first.info.id, "beta")  # another tenant's key is as absent as a missing one
    assert (await keys.get(first.info.id, None)).tenant == "acme"

    principal = await keys.authenticate(first.key)
    assert (principal.tenant, principal.key_id, principal.kind) == ("acme", first.info.id, "api_key")
    assert principal.scopes == frozenset({"query"}) and principal.collections == frozenset({"docs", "faq"})
    assert principal.monthly_tokens == 500
    assert (await keys.authenticate(second.key)).scopes == frozenset({"query", "ingest", "admin"})
    assert (await keys.authenticate(other.key)).tenant == "beta"

    with pytest.raises(NotFoundError):
        await keys.revoke(first.info.id, "beta")
    revoked = await keys.revoke(first.info.id, "acme")
    assert revoked.revoked_at is not None and revoked.state(time.time()) == "revoked"
    assert (await keys.revoke(first.info.id, "acme")).revoked_at == revoked.revoked_at  # idempotent
    with pytest.raises(AuthenticationError) as refused:
        await keys.authenticate(first.key)
    assert refused.value.reason == "revoked"
    # Another process (a store of its own, no remembered keys) refuses it too.
    with pytest.raises(AuthenticationError):
        await ApiKeys(database, pepper=PEPPER).authenticate(first.key)
    assert (await keys.authenticate(second.key)).key_id == second.info.id  # the others still work


async def test_wrong_secret_unknown_id_malformed_and_wrong_pepper_are_refused(database: Database) -> None:
    keys = ApiKeys(database, pepper=PEPPER)
    created = await keys.create("acme", "ci", ["query"])
    register(created.key)
    key_id, secret = key_parts(created.key)
    flipped = ("A" if secret[0] != "A" else "B") + secret[1:]
    cases = {
        f"{key_id}_{flipped}": "unknown",
        f"rsk_{uuid.uuid4().hex[:8]}_{secret}": "unknown",  # a real secret under an id that does not exist
        created.key[:-1]: "malformed",
        created.key + "x": "malformed",
        created.key.upper(): "malformed",
    }
    for credential, reason in cases.items():
        with pytest.raises(AuthenticationError) as refused:
            await keys.authenticate(credential)
        assert refused.value.reason == reason, credential
    with pytest.raises(AuthenticationError):  # the pepper is part of the digest: a copy of the table verifies nothing
        await ApiKeys(database, pepper=b"another-pepper-entirely-0123456789").authenticate(created.key)
    assert (await ApiKeys(database, pepper=PEPPER).authenticate(created.key)).tenant == "acme"


async def test_the_secret_is_stored_nowhere_only_a_salted_digest(database: Database) -> None:
    keys = ApiKeys(database, pepper=PEPPER)
    made = [await keys.create("acme", f"k{i}", ["query"]) for i in range(3)]
    for created in made:
        register(created.key)
    stored = await rows(database, api_keys)
    assert len(stored) == 3
    for created in made:
        key_id, secret = key_parts(created.key)
        row = next(r for r in stored if r["id"] == key_id)
        for column, value in row.items():
            text = str(value)
            assert secret not in text and created.key not in text, f"the secret is stored in column {column!r}"
            assert secret[:16] not in text and secret[-16:] not in text, f"part of the secret is in column {column!r}"
        assert row["digest"] != created.key and row["digest"] != secret
        assert row["digest"] == keys.digest(str(row["salt"]), secret)
        assert len(str(row["digest"])) == 64
        assert row["digest"] != ApiKeys(database).digest(str(row["salt"]), secret)  # the pepper is in it
    salts = {r["salt"] for r in stored}
    assert len(salts) == 3  # a salt of its own per key
    # The same secret under two salts gives two digests: equal secrets cannot be spotted in the table.
    assert keys.digest("a" * 32, "same") != keys.digest("b" * 32, "same")


async def test_expired_keys_are_refused_even_when_remembered(database: Database) -> None:
    keys = ApiKeys(database, pepper=PEPPER, cache_s=60.0)
    lasting = await keys.create("acme", "lasting", ["query"], expires_in_s=3600)
    brief = await keys.create("acme", "brief", ["query"], expires_in_s=0.5)
    register(lasting.key)
    register(brief.key)
    assert (await keys.authenticate(brief.key)).key_id == brief.info.id  # remembered, for up to its expiry
    listed = {k.id: k.state(time.time()) for k in await keys.list("acme")}
    assert listed == {lasting.info.id: "active", brief.info.id: "active"}
    await asyncio.sleep(0.6)
    with pytest.raises(AuthenticationError) as refused:
        await keys.authenticate(brief.key)
    assert refused.value.reason == "expired"
    with pytest.raises(AuthenticationError):
        await ApiKeys(database, pepper=PEPPER).authenticate(brief.key)
    listed = {k.id: k.state(time.time()) for k in await keys.list("acme")}
    assert listed == {lasting.info.id: "active", brief.info.id: "expired"}
    assert (await keys.authenticate(lasting.key)).key_id == lasting.info.id
    with pytest.raises(InvalidInputError):
        await keys.create("acme", "never", ["query"], expires_in_s=0)


async def test_creation_checks_its_input(database: Database) -> None:
    keys = ApiKeys(database)
    for tenant, name, scopes, collections in (
        ("acme", "ok", ["superuser"], None),
        ("acme", "ok", [], None),
        ("bad tenant!", "ok", ["query"], None),
        ("acme", " ", ["query"], None),
        ("acme", "ok", ["query"], ["no/slashes"]),
    ):
        with pytest.raises(InvalidInputError):
            await keys.create(tenant, name, scopes, collections=collections)
    assert await keys.list(None) == []  # nothing half-made was stored


# ------------------------------------------------------------------ usage


async def test_usage_adds_up_per_caller_tenant_and_month(database: Database) -> None:
    ledger = UsageLedger(database)
    month, last_month = current_month(), "2000-01"
    await ledger.add("acme", "rsk_aaaaaaaa", month, Usage(1, 10, 5, 0.01))
    await ledger.add("acme", "rsk_aaaaaaaa", month, Usage(1, 20, 7, 0.02))
    await ledger.add("acme", "jwt:alice", month, Usage(1, 3, 2, 0.0))
    await ledger.add("acme", "rsk_aaaaaaaa", last_month, Usage(1, 1000, 1000, 1.0))
    await ledger.add("beta", "rsk_bbbbbbbb", month, Usage(1, 99, 99, 9.0))

    now = await ledger.month("acme")
    assert set(now) == {"rsk_aaaaaaaa", "jwt:alice", TENANT_TOTAL}
    mine = now["rsk_aaaaaaaa"]
    assert (mine.requests, mine.prompt_tokens, mine.completion_tokens) == (2, 30, 12)
    assert mine.cost_usd == pytest.approx(0.03)
    assert now["jwt:alice"] == Usage(1, 3, 2, 0.0)
    total = now[TENANT_TOTAL]
    assert (total.requests, total.prompt_tokens, total.completion_tokens) == (3, 33, 14)
    assert total.tokens == 47 and total.cost_usd == pytest.approx(0.03)
    assert (await ledger.month("acme", last_month))[TENANT_TOTAL].tokens == 2000
    assert set(await ledger.month("beta")) == {"rsk_bbbbbbbb", TENANT_TOTAL}
    assert await ledger.month("nobody") == {}

    tenant_spent, key_spent = await ledger.spent("acme", "rsk_aaaaaaaa")
    assert (tenant_spent.tokens, key_spent.tokens) == (47, 42)
    tenant_spent, key_spent = await ledger.spent("acme", "rsk_never")
    assert (tenant_spent.tokens, key_spent) == (47, Usage())
    assert (await ledger.spent("beta", "rsk_aaaaaaaa"))[1] == Usage()  # a key id is counted per tenant


async def test_concurrent_adds_sum_exactly(database: Database) -> None:
    ledger = UsageLedger(database)
    month, tasks, adds = current_month(), 8, 25

    async def caller(n: int) -> None:
        for _ in range(adds):
            await ledger.add("acme", f"rsk_{n % 3:08d}", month, Usage(1, 3, 2, 0.001))

    await asyncio.gather(*(caller(n) for n in range(tasks)))
    found = await ledger.month("acme")
    total = found[TENANT_TOTAL]
    assert (total.requests, total.prompt_tokens, total.completion_tokens) == (tasks * adds, 3 * 200, 2 * 200)
    assert total.cost_usd == pytest.approx(0.001 * tasks * adds)
    per_key = {k: u.requests for k, u in found.items() if k != TENANT_TOTAL}
    assert per_key == {"rsk_00000000": 3 * adds, "rsk_00000001": 3 * adds, "rsk_00000002": 2 * adds}
    stored = await rows(database, usage)
    assert len(stored) == 4  # one row per caller and month, and the tenant's total: no duplicates
