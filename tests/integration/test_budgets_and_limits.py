"""Monthly budgets (402) and rate limits (429) over HTTP, in one process and across three sharing one Redis.

The in-process apps run over the session's RAG with their usage ledger in a data directory of
their own; each test's tenant has a fresh name, so no other test's spending counts against it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi import serve
from pydantic import SecretStr
from servers import Server, start_server, wait_ready
from sse_reader import parse_sse

from ragserve.rag import RAG
from ragserve.settings import Settings
from secrets_registry import register

pytestmark = pytest.mark.asyncio(loop_scope="session")

Client = httpx.AsyncClient
DOCS = [
    {"id": "otters.md", "text": "Sea otters hold hands while they sleep so that they do not drift apart."},
    {"id": "port.md", "text": "The server listens on port 8000 by default. To change the port, set RAGSERVE_PORT."},
]
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def settings_for(data_dir: Path, admin_api_key: str, **overrides: Any) -> Settings:
    chosen: dict[str, Any] = {"auth_mode": "api_key", "warmup": False, **overrides}
    return Settings(data_dir=data_dir, admin_api_key=SecretStr(admin_api_key), **chosen)


async def create_key(client: Client, admin: str, tenant: str, scopes: list[str]) -> dict[str, Any]:
    r = await client.post("/v1/keys", json={"name": "t", "scopes": scopes, "tenant": tenant}, headers=bearer(admin))
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    register(created["key"])
    return created


async def ingest(client: Client, admin: str, tenant: str) -> None:
    writer = await create_key(client, admin, tenant, ["ingest"])
    r = await client.post("/v1/documents", json={"documents": DOCS}, headers=bearer(writer["key"]))
    assert r.status_code == 201, r.text


async def ask(client: Client, key: str, n: int) -> tuple[httpx.Response, int]:
    """Question `n` by one of the three answering routes in turn; the response and the tokens it reports."""
    question = f"Why do sea otters hold hands? (question {n})"
    route = n % 3
    if route == 0:
        r = await client.post("/v1/query", json={"query": question, "use_cache": False}, headers=bearer(key))
        usage = r.json().get("usage", {}) if r.status_code == 200 else {}
    elif route == 1:
        body = {"query": question, "use_cache": False, "stream": True}
        r = await client.post("/v1/query", json=body, headers=bearer(key))
        usage = parse_sse(r.text)[-1][1]["usage"] if r.status_code == 200 else {}
    else:
        body = {"model": "default", "messages": [{"role": "user", "content": question}]}
        r = await client.post("/v1/chat/completions", json=body, headers=bearer(key))
        usage = r.json().get("usage", {}) if r.status_code == 200 else {}
    return r, int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))


def budget_refusal(r: httpx.Response) -> str:
    assert r.status_code == 402, r.text
    error = r.json()["error"]
    assert error["type"] == "budget_exceeded"
    message: str = error["message"]
    assert "monthly token budget" in message and "renews on the 1st" in message
    return message


async def spend_until_refused(client: Client, keys: list[str], budget: int) -> tuple[int, int, dict[str, int]]:
    """Ask with `keys` in turn until refused: (answered, tokens, tokens by key). Every answered request is a 200
    and the refusal (a 402) comes exactly at the first request after the tokens reached `budget`."""
    answered, spent, by_key = 0, 0, dict.fromkeys(keys, 0)
    for n in range(60):
        key = keys[n % len(keys)]
        r, tokens = await ask(client, key, n)
        if spent >= budget:
            message = budget_refusal(r)
            assert f"of {budget} tokens" in message and f"({spent} of" in message, message
            return answered, spent, by_key
        assert r.status_code == 200, (n, spent, r.text)
        assert tokens > 0, r.text  # every answer reports what it cost
        answered, spent, by_key[key] = answered + 1, spent + tokens, by_key[key] + tokens
    raise AssertionError(f"never refused: {answered} requests, {spent} tokens, budget {budget}")


# ------------------------------------------------------------------ budgets


@pytest.fixture
def tenant() -> str:
    return f"budget-{uuid.uuid4().hex[:10]}"


async def test_a_key_is_refused_once_its_token_budget_is_spent(
    shared_rag: RAG, make_data_dir: Callable[[], Path], admin_api_key: str, tenant: str
) -> None:
    budget = 150  # an answer here reports about 50 tokens: three answers, one through each route
    settings = settings_for(make_data_dir(), admin_api_key, key_budget={"tokens": budget})
    async with serve(settings, shared_rag) as client:
        await ingest(client, admin_api_key, tenant)
        spender = await create_key(client, admin_api_key, tenant, ["query"])
        answered, spent, _ = await spend_until_refused(client, [spender["key"]], budget)
        assert answered >= 3  # the three routes were each answered and charged before the refusal
        assert spender["id"] in budget_refusal((await ask(client, spender["key"], 0))[0])  # and it stays refused

        usage = (await client.get("/v1/usage", headers=bearer(spender["key"]))).json()
        assert usage["caller"]["id"] == spender["id"]
        assert (usage["caller"]["requests"], usage["caller"]["tokens"]) == (answered, spent)
        assert (usage["total"]["requests"], usage["total"]["tokens"]) == (answered, spent)
        # A key's budget is its own: another key of the tenant is still answered.
        other = await create_key(client, admin_api_key, tenant, ["query"])
        assert (await ask(client, other["key"], 0))[0].status_code == 200


async def test_a_tenant_budget_is_shared_by_the_tenants_keys(
    shared_rag: RAG, make_data_dir: Callable[[], Path], admin_api_key: str, tenant: str
) -> None:
    budget = 250
    settings = settings_for(make_data_dir(), admin_api_key, tenant_budgets={tenant: {"tokens": budget}})
    async with serve(settings, shared_rag) as client:
        await ingest(client, admin_api_key, tenant)
        first, second = [await create_key(client, admin_api_key, tenant, ["query"]) for _ in range(2)]
        keys = [first["key"], second["key"]]
        answered, spent, by_key = await spend_until_refused(client, keys, budget)
        assert answered >= 4 and all(by_key.values())  # both keys spent from the one budget
        for key in keys:  # refused for both now, whoever spent the last of it
            assert f"tenant {tenant!r}" in budget_refusal((await ask(client, key, 0))[0])

        admin = await create_key(client, admin_api_key, tenant, ["admin"])
        usage = (await client.get("/v1/usage", headers=bearer(admin["key"]))).json()
        assert usage["tenant"] == tenant
        assert (usage["total"]["requests"], usage["total"]["tokens"]) == (answered, spent)
        assert {k: u["tokens"] for k, u in usage["by_caller"].items()} == {
            first["id"]: by_key[first["key"]],
            second["id"]: by_key[second["key"]],
        }
        # Another tenant has no such budget: it is still answered.
        elsewhere = f"{tenant}-other"
        await ingest(client, admin_api_key, elsewhere)
        outsider = await create_key(client, admin_api_key, elsewhere, ["query"])
        assert (await ask(client, outsider["key"], 0))[0].status_code == 200


# ------------------------------------------------------------------ rate limits, one process


async def test_requests_per_minute_per_key_over_http(
    shared_rag: RAG, make_data_dir: Callable[[], Path], admin_api_key: str, tenant: str
) -> None:
    limit = 10
    settings = settings_for(make_data_dir(), admin_api_key, rate_limit_key_rpm=limit)
    async with serve(settings, shared_rag) as client:
        key = (await create_key(client, admin_api_key, tenant, ["query"]))["key"]
        for n in range(limit):
            r = await client.post("/v1/search", json={"query": "otters"}, headers=bearer(key))
            assert r.status_code == 200, (n, r.text)
            limit_h, remaining, reset = (r.headers[h] for h in RATE_HEADERS)
            assert (int(limit_h), int(remaining)) == (limit, limit - n - 1)  # counting down
            assert 1 <= int(reset) <= 60
        for _ in range(3):
            refused = await client.post("/v1/search", json={"query": "otters"}, headers=bearer(key))
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["type"] == "rate_limited"
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            assert refused.headers["x-ratelimit-limit"] == str(limit)
            assert refused.headers["x-ratelimit-remaining"] == "0"
            assert 1 <= int(refused.headers["x-ratelimit-reset"]) <= 60
        # The limit is per key: another key of the same tenant is admitted.
        other = (await create_key(client, admin_api_key, tenant, ["query"]))["key"]
        r = await client.post("/v1/search", json={"query": "otters"}, headers=bearer(other))
        assert r.status_code == 200 and r.headers["x-ratelimit-remaining"] == str(limit - 1)


# ------------------------------------------------------------------ one limit across three processes

RPM, PROCESSES, REQUESTS, CONCURRENCY = 120, 3, 360, 24


@pytest.mark.slow
async def test_one_rate_limit_holds_across_three_processes_sharing_redis(
    make_data_dir: Callable[[], Path], tmp_path: Path, redis_server: str, admin_api_key: str
) -> None:
    env = {
        "RAGSERVE_AUTH_MODE": "api_key",
        "RAGSERVE_ADMIN_API_KEY": admin_api_key,
        "RAGSERVE_REDIS_URL": redis_server,
        "RAGSERVE_RATE_LIMIT_KEY_RPM": str(RPM),
        # A limiter that gives up on a busy Redis admits (fail open): give it time, so every decision is Redis's.
        "RAGSERVE_RATE_LIMIT_TIMEOUT_MS": "2000",
        "RAGSERVE_WARMUP": "false",
    }
    data_dir = make_data_dir()  # one data directory: one state database, so one key works on all three
    servers: list[Server] = []
    try:
        servers.append(start_server(data_dir, tmp_path, env=env, name="limited-0"))
        await asyncio.to_thread(wait_ready, servers[0])  # the first creates the data directory's databases
        servers += [start_server(data_dir, tmp_path, env=env, name=f"limited-{i}") for i in range(1, PROCESSES)]
        await asyncio.gather(*(asyncio.to_thread(wait_ready, s) for s in servers[1:]))
        await hammer(servers, admin_api_key)
    finally:
        await asyncio.gather(*(asyncio.to_thread(s.stop) for s in servers))


async def hammer(servers: list[Server], admin_api_key: str) -> None:
    limits = httpx.Limits(max_connections=CONCURRENCY * 2)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        r = await http.post(
            f"{servers[0].url}/v1/keys", json={"name": "shared", "scopes": ["query"]}, headers=bearer(admin_api_key)
        )
        assert r.status_code == 201, r.text
        key = register(r.json()["key"])
        for server in servers:  # the key works on every process (GET /v1/models is not rate limited)
            assert (await http.get(f"{server.url}/v1/models", headers=bearer(key))).status_code == 200

        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(n: int) -> tuple[int, httpx.Response]:
            async with gate:
                url = servers[n % len(servers)].url
                return n % len(servers), await http.post(
                    f"{url}/v1/search", json={"query": f"otters {n % 5}"}, headers={"X-API-Key": key}
                )

        started = time.monotonic()
        results = await asyncio.gather(*(one(n) for n in range(REQUESTS)))
        elapsed = time.monotonic() - started
    assert elapsed < 40, f"{REQUESTS} requests took {elapsed:.1f} s: the 60 s window may have moved on"

    admitted = [(i, r) for i, r in results if r.status_code == 200]
    refused = [r for _, r in results if r.status_code == 429]
    assert len(admitted) + len(refused) == REQUESTS, {r.status_code for _, r in results}
    assert RPM * 0.95 <= len(admitted) <= RPM, f"{len(admitted)} admitted, limit {RPM}"
    assert {i for i, _ in admitted} == set(range(len(servers))), "every process admitted some"
    remaining = sorted(int(r.headers["x-ratelimit-remaining"]) for _, r in admitted)
    assert len(set(remaining)) == len(remaining), "two requests were given the same slot"
    assert all(0 <= n < RPM for n in remaining)
    for _, r in admitted:
        assert r.headers["x-ratelimit-limit"] == str(RPM)
    for r in refused:
        assert r.json()["error"]["type"] == "rate_limited"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert r.headers["x-ratelimit-limit"] == str(RPM)
        assert r.headers["x-ratelimit-remaining"] == "0"
        assert 0 <= int(r.headers["x-ratelimit-reset"]) <= 60
