"""The security acceptance suite: tenant isolation through every endpoint, credentials, scopes, constant time.

Apps here run in process over the session's RAG, with authentication on and their security
state (keys, usage, jobs) in a data directory of their own. Tenants get fresh names per
module, so the documents and caches they share with other tests' tenants never meet.
Every key and token made here is registered with `secrets_registry`, so the session's end
scan proves none of them reached a log line.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import sqlalchemy as sa
from asgi import serve
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr
from sse_reader import parse_sse

import secrets_registry
from ragserve.errors import AuthenticationError, ConfigurationError
from ragserve.rag import RAG
from ragserve.relational.database import Database, api_keys
from ragserve.security import keys as keys_module
from ragserve.security.keys import ApiKeys
from ragserve.settings import Settings, load_settings
from secrets_registry import register

pytestmark = pytest.mark.asyncio(loop_scope="session")

Client = httpx.AsyncClient
Request = tuple[str, str, dict[str, Any]]  # method, path, keyword arguments of `client.request`
WWW_AUTHENTICATE = 'Bearer realm="ragserve"'

LAUNCH_CODE = "7391-ALPHA"
CONSOLE_PORT = "4711"
HANGAR = "hangar 12"
A_DOCS = [
    {
        "id": "a/falcon.md",
        "text": f"Project Falcon's launch code is {LAUNCH_CODE}. Only the acme operations team uses it.",
    },
    {
        "id": "a/console.md",
        "text": f"The acme admin console listens on port {CONSOLE_PORT}. Set CONSOLE_PORT to change it.",
    },
    {"id": "a/hangar.md", "text": f"The acme falcon drones are stored in {HANGAR} at the north airfield."},
]
B_DOCS = [
    {"id": "b/otters.md", "text": "Sea otters hold hands while they sleep so that they do not drift apart."},
    {"id": "b/garden.md", "text": "Tomatoes need at least six hours of direct sun a day to ripen well."},
]
B_IDS = {d["id"] for d in B_DOCS}
A_IDS = {d["id"] for d in A_DOCS}
FALCON_QUESTION = "What is the launch code of Project Falcon?"


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def error_of(r: httpx.Response, status: int, type_: str) -> str:
    """The error message of `r`, checked for its status and error type."""
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["type"] == type_, error
    message: str = error["message"]
    return message


def assert_unauthenticated(r: httpx.Response) -> str:
    message = error_of(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"] == WWW_AUTHENTICATE
    return message


async def create_key(client: Client, by: str, scopes: list[str], **extra: Any) -> dict[str, Any]:
    """A key made through POST /v1/keys by the credential `by`; its secret registered."""
    r = await client.post("/v1/keys", json={"name": "test", "scopes": scopes, **extra}, headers=bearer(by))
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    register(created["key"])
    return created


def secured_settings(data_dir: Path, admin_api_key: str, **overrides: Any) -> Settings:
    chosen: dict[str, Any] = {"auth_mode": "api_key", "warmup": False, **overrides}
    return Settings(data_dir=data_dir, admin_api_key=SecretStr(admin_api_key), **chosen)


@pytest.fixture(scope="module")
async def client(shared_rag: RAG, make_data_dir: Callable[[], Path], admin_api_key: str) -> AsyncIterator[Client]:
    """An app with API keys on; every upload is queued as a job (upload_inline_bytes=0)."""
    settings = secured_settings(make_data_dir(), admin_api_key, upload_inline_bytes=0)
    async with serve(settings, shared_rag) as c:
        yield c


@dataclass(frozen=True)
class Tenant:
    name: str
    key: str  # query + ingest
    key_id: str
    admin: str  # this tenant's admin key
    admin_id: str


@dataclass(frozen=True)
class World:
    a: Tenant
    b: Tenant


async def make_tenant(client: Client, admin_api_key: str, name: str) -> Tenant:
    user = await create_key(client, admin_api_key, ["query", "ingest"], tenant=name)
    admin = await create_key(client, admin_api_key, ["admin"], tenant=name)
    assert user["tenant"] == admin["tenant"] == name
    return Tenant(name, user["key"], user["id"], admin["key"], admin["id"])


@pytest.fixture(scope="module")
async def world(client: Client, admin_api_key: str) -> World:
    """Tenants A and B, each with its own collection called "docs"; A also has "a-private"."""
    suffix = uuid.uuid4().hex[:8]
    a = await make_tenant(client, admin_api_key, f"acme-{suffix}")
    b = await make_tenant(client, admin_api_key, f"beta-{suffix}")
    for tenant, body in (
        (a, {"collection": "docs", "documents": A_DOCS}),
        (a, {"collection": "a-private", "documents": [{"id": "a/private.md", "text": "Acme's private notes."}]}),
        (b, {"collection": "docs", "documents": B_DOCS}),
    ):
        r = await client.post("/v1/documents", json=body, headers=bearer(tenant.key))
        assert r.status_code == 201, r.text
    return World(a, b)


def doc_ids(items: list[dict[str, Any]]) -> set[str]:
    return {item["document_id"] for item in items}


# ------------------------------------------------------------------ tenant isolation, endpoint by endpoint


async def test_search_sees_only_the_callers_tenant(client: Client, world: World) -> None:
    body = {"query": FALCON_QUESTION, "collection": "docs", "use_cache": False}
    mine = await client.post("/v1/search", json=body, headers=bearer(world.a.key))
    assert mine.status_code == 200, mine.text
    assert mine.json()["results"][0]["document_id"] == "a/falcon.md"  # the control: it is findable
    theirs = await client.post("/v1/search", json=body, headers=bearer(world.b.key))
    assert theirs.status_code == 200, theirs.text
    results = theirs.json()["results"]
    assert results and doc_ids(results) <= B_IDS  # B's own "docs", never A's
    assert LAUNCH_CODE not in theirs.text


async def test_answers_never_cite_another_tenants_documents(client: Client, world: World) -> None:
    question = {"query": "Which port does the acme admin console listen on?", "collection": "docs"}
    mine = await client.post("/v1/query", json=question, headers=bearer(world.a.key))
    assert mine.status_code == 200, mine.text
    assert CONSOLE_PORT in mine.json()["answer"] and doc_ids(mine.json()["citations"]) == {"a/console.md"}

    whole = await client.post("/v1/query", json=question, headers=bearer(world.b.key))
    assert whole.status_code == 200, whole.text
    answer = whole.json()
    assert doc_ids(answer["sources"]) <= B_IDS and doc_ids(answer["citations"]) <= B_IDS
    assert CONSOLE_PORT not in whole.text

    streamed = await client.post("/v1/query", json={**question, "stream": True}, headers=bearer(world.b.key))
    assert streamed.status_code == 200, streamed.text
    events = parse_sse(streamed.text)
    assert events[0][0] == "sources" and events[-1][0] == "done"
    assert doc_ids(events[0][1]["sources"]) <= B_IDS
    assert doc_ids(events[-1][1]["citations"]) <= B_IDS
    assert CONSOLE_PORT not in "".join(data["text"] for name, data in events if name == "token")
    assert CONSOLE_PORT not in streamed.text


async def test_chat_completions_never_cite_another_tenants_documents(client: Client, world: World) -> None:
    body: dict[str, Any] = {"model": "docs", "messages": [{"role": "user", "content": FALCON_QUESTION}]}
    mine = await client.post("/v1/chat/completions", json=body, headers=bearer(world.a.key))
    assert mine.status_code == 200, mine.text
    assert LAUNCH_CODE in mine.json()["choices"][0]["message"]["content"]
    assert doc_ids(mine.json()["citations"]) == {"a/falcon.md"}

    whole = await client.post("/v1/chat/completions", json=body, headers=bearer(world.b.key))
    assert whole.status_code == 200, whole.text
    assert doc_ids(whole.json()["citations"]) <= B_IDS
    assert LAUNCH_CODE not in whole.text

    streamed = await client.post("/v1/chat/completions", json={**body, "stream": True}, headers=bearer(world.b.key))
    assert streamed.status_code == 200, streamed.text
    chunks = [data for _, data in parse_sse(streamed.text)]
    assert chunks[-1] == "[DONE]"
    final = next(c for c in chunks if isinstance(c, dict) and c["choices"] and c["choices"][0]["finish_reason"])
    assert doc_ids(final["citations"]) <= B_IDS
    assert LAUNCH_CODE not in streamed.text


async def test_documents_of_another_tenant_cannot_be_listed_read_or_deleted(client: Client, world: World) -> None:
    listed = await client.get("/v1/documents", params={"collection": "docs"}, headers=bearer(world.b.key))
    assert listed.status_code == 200, listed.text
    assert {d["id"] for d in listed.json()["documents"]} == B_IDS and listed.json()["total"] == len(B_IDS)

    for doc_id in A_IDS:
        got = await client.get(f"/v1/documents/{doc_id}", params={"collection": "docs"}, headers=bearer(world.b.key))
        error_of(got, 404, "not_found")
        gone = await client.delete(
            f"/v1/documents/{doc_id}", params={"collection": "docs"}, headers=bearer(world.b.key)
        )
        error_of(gone, 404, "not_found")
        still = await client.get(f"/v1/documents/{doc_id}", params={"collection": "docs"}, headers=bearer(world.a.key))
        assert still.status_code == 200 and still.json()["id"] == doc_id
    mine = await client.get("/v1/documents", params={"collection": "docs"}, headers=bearer(world.a.key))
    assert {d["id"] for d in mine.json()["documents"]} == A_IDS


async def test_an_upload_job_of_another_tenant_is_not_found(client: Client, world: World) -> None:
    text = b"# Falcon upload\n\nThe falcon upload names the runway: runway nine.\n"
    r = await client.post(
        "/v1/documents/upload",
        files=[("files", ("falcon.md", text, "text/markdown"))],
        data={"collection": "a-uploads"},
        headers=bearer(world.a.key),
    )
    assert r.status_code == 202, r.text  # queued as a job
    job_id = r.json()["job_id"]
    assert r.headers["location"] == f"/v1/jobs/{job_id}"

    error_of(await client.get(f"/v1/jobs/{job_id}", headers=bearer(world.b.key)), 404, "not_found")
    error_of(await client.get(f"/v1/jobs/{job_id}", headers=bearer(world.b.admin)), 404, "not_found")
    for _ in range(200):
        mine = await client.get(f"/v1/jobs/{job_id}", headers=bearer(world.a.key))
        assert mine.status_code == 200, mine.text
        if mine.json()["state"] in ("succeeded", "failed"):
            break
        await asyncio.sleep(0.05)
    assert mine.json()["state"] == "succeeded", mine.text
    assert mine.json()["collection"] == "a-uploads"
    error_of(await client.get(f"/v1/jobs/{job_id}", headers=bearer(world.b.key)), 404, "not_found")


async def test_models_list_only_the_callers_collections(client: Client, world: World) -> None:
    theirs = await client.get("/v1/models", headers=bearer(world.b.key))
    assert theirs.status_code == 200, theirs.text
    assert [m["id"] for m in theirs.json()["data"]] == ["docs"]
    assert {m["owned_by"] for m in theirs.json()["data"]} == {world.b.name}
    mine = await client.get("/v1/models", headers=bearer(world.a.key))
    assert {"docs", "a-private"} <= {m["id"] for m in mine.json()["data"]}
    # Asking A's other collection by name finds nothing either: a model is a collection of one's own tenant.
    r = await client.post(
        "/v1/chat/completions",
        json={"model": "a-private", "messages": [{"role": "user", "content": "What are the notes?"}]},
        headers=bearer(world.b.key),
    )
    error_of(r, 404, "not_found")


async def test_cached_answers_never_cross_tenants(client: Client, world: World) -> None:
    # Questions no other test asks, on a topic B never asked about: a miss for B can only be isolation.
    exact = {"query": "Where are the falcon drones stored?", "collection": "docs"}
    first = await client.post("/v1/query", json=exact, headers=bearer(world.a.key))
    again = await client.post("/v1/query", json=exact, headers=bearer(world.a.key))
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit-exact")
    assert doc_ids(again.json()["citations"]) == {"a/hangar.md"} and HANGAR in again.json()["answer"]

    original = {"query": "In which hangar are the acme drones kept?", "collection": "docs"}
    paraphrase = {"query": "Can you tell me in which hangar the acme drones are kept?", "collection": "docs"}
    await client.post("/v1/query", json=original, headers=bearer(world.a.key))
    rephrased = await client.post("/v1/query", json=paraphrase, headers=bearer(world.a.key))
    assert rephrased.headers["x-cache"] == "hit-semantic"  # the control: this paraphrase does hit, for A

    for body in (paraphrase, exact):  # the paraphrase first: B's own earlier questions must not explain a miss
        theirs = await client.post("/v1/query", json=body, headers=bearer(world.b.key))
        assert theirs.status_code == 200, theirs.text
        assert theirs.headers["x-cache"] == "miss" and theirs.json()["cached"] == "none"
        assert doc_ids(theirs.json()["sources"]) <= B_IDS and doc_ids(theirs.json()["citations"]) <= B_IDS
        assert HANGAR not in theirs.text
        streamed = await client.post("/v1/query", json={**body, "stream": True}, headers=bearer(world.b.key))
        assert streamed.headers["x-cache"] in ("miss", "hit-exact")  # B's own answer, just cached, at most
        assert HANGAR not in streamed.text


async def test_keys_of_another_tenant_cannot_be_listed_or_revoked(
    client: Client, world: World, admin_api_key: str
) -> None:
    listed = await client.get("/v1/keys", headers=bearer(world.b.admin))
    assert listed.status_code == 200, listed.text
    keys = listed.json()["keys"]
    assert {k["id"] for k in keys} == {world.b.key_id, world.b.admin_id}
    assert {k["tenant"] for k in keys} == {world.b.name}
    assert all("key" not in k and "digest" not in k and "salt" not in k for k in keys)  # no secret, ever again
    error_of(
        await client.get("/v1/keys", params={"tenant": world.a.name}, headers=bearer(world.b.admin)), 403, "forbidden"
    )

    for key_id in (world.a.key_id, world.a.admin_id):
        error_of(await client.delete(f"/v1/keys/{key_id}", headers=bearer(world.b.admin)), 404, "not_found")
    assert (await client.get("/v1/models", headers=bearer(world.a.key))).status_code == 200  # A's key still works
    every = await client.get("/v1/keys", params={"tenant": world.a.name}, headers=bearer(admin_api_key))
    assert {k["id"]: k["state"] for k in every.json()["keys"]} == {world.a.key_id: "active", world.a.admin_id: "active"}


async def test_usage_of_another_tenant_is_not_shown(client: Client, world: World) -> None:
    before_b = (await client.get("/v1/usage", headers=bearer(world.b.admin))).json()
    before_a = (await client.get("/v1/usage", headers=bearer(world.a.key))).json()
    r = await client.post(
        "/v1/query", json={"query": "Who uses the launch code?", "collection": "docs"}, headers=bearer(world.a.key)
    )
    assert r.status_code == 200
    tokens = sum(r.json()["usage"].values())
    after_b = (await client.get("/v1/usage", headers=bearer(world.b.admin))).json()
    after_a = (await client.get("/v1/usage", headers=bearer(world.a.key))).json()

    assert after_b["tenant"] == world.b.name and after_b["total"] == before_b["total"]  # A's request is not B's
    assert set(after_b["by_caller"]) <= {world.b.key_id, world.b.admin_id}
    assert world.a.key_id not in json.dumps(after_b)
    assert after_a["tenant"] == world.a.name and after_a["caller"]["id"] == world.a.key_id
    assert after_a["total"]["requests"] == before_a["total"]["requests"] + 1
    assert after_a["caller"]["tokens"] == before_a["caller"]["tokens"] + tokens
    assert "by_caller" not in after_a  # only an admin sees every caller of its tenant


# ------------------------------------------------------------------ credentials

PROTECTED: list[Request] = [
    ("POST", "/v1/query", {"json": {"query": "hi"}}),
    ("POST", "/v1/search", {"json": {"query": "hi"}}),
    ("GET", "/v1/models", {}),
    ("POST", "/v1/chat/completions", {"json": {"model": "docs", "messages": [{"role": "user", "content": "hi"}]}}),
    ("POST", "/v1/documents", {"json": {"documents": [{"text": "hello"}]}}),
    ("GET", "/v1/documents", {}),
    ("GET", "/v1/documents/x.md", {}),
    ("DELETE", "/v1/documents/x.md", {}),
    ("POST", "/v1/documents/upload", {"files": [("files", ("a.txt", b"hello", "text/plain"))]}),
    ("GET", "/v1/jobs/some-job", {}),
    ("POST", "/v1/keys", {"json": {"name": "x", "scopes": ["query"]}}),
    ("GET", "/v1/keys", {}),
    ("DELETE", "/v1/keys/rsk_00000000", {}),
    ("GET", "/v1/usage", {}),
]


async def test_every_endpoint_refuses_a_request_without_credentials(client: Client) -> None:
    for method, path, extra in PROTECTED:
        r = await client.request(method, path, **extra)
        message = assert_unauthenticated(r)
        assert "missing credentials" in message, (method, path, message)
    for path in ("/health/live", "/health/ready", "/status"):  # probes stay open
        assert (await client.get(path)).status_code == 200, path


async def test_malformed_and_unknown_credentials_are_refused(client: Client, world: World) -> None:
    unknown = register(f"rsk_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}")
    right_id_wrong_secret = register(f"{world.a.key_id}_{secrets.token_urlsafe(32)}")
    for headers in (
        {"Authorization": "Bearer rsk_1234"},
        {"Authorization": "Bearer not-a-key-at-all"},
        {"Authorization": f"Bearer {world.a.key[:-1]}"},  # one character short
        {"Authorization": f"Basic {base64.b64encode(b'user:pass').decode()}"},
        {"Authorization": "Bearer "},
        {"Authorization": world.a.key},  # no scheme
        {"X-API-Key": "rsk_zzzzzzzz_" + "a" * 43},
        {"Authorization": f"Bearer {unknown}"},
        {"X-API-Key": unknown},
        {"Authorization": f"Bearer {right_id_wrong_secret}"},
    ):
        r = await client.post("/v1/search", json={"query": "hi"}, headers=headers)
        message = assert_unauthenticated(r)
        assert world.a.key not in message and unknown not in message  # the credential is never echoed
    assert (
        await client.post("/v1/search", json={"query": "hi"}, headers={"X-API-Key": world.a.key})
    ).status_code == 200


async def test_a_revoked_key_is_refused_at_once(client: Client, admin_api_key: str) -> None:
    created = await create_key(client, admin_api_key, ["query"], tenant=f"rev-{uuid.uuid4().hex[:8]}")
    assert (await client.get("/v1/models", headers=bearer(created["key"]))).status_code == 200
    r = await client.delete(f"/v1/keys/{created['id']}", headers=bearer(admin_api_key))
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    message = assert_unauthenticated(await client.get("/v1/models", headers=bearer(created["key"])))
    assert "revoked" in message


async def test_an_expired_key_is_refused(client: Client, admin_api_key: str) -> None:
    created = await create_key(client, admin_api_key, ["query"], tenant=f"exp-{uuid.uuid4().hex[:8]}", expires_in_s=1)
    assert created["expires_at"] == pytest.approx(created["created_at"] + 1)
    assert (await client.get("/v1/models", headers=bearer(created["key"]))).status_code == 200
    await asyncio.sleep(max(0.0, created["expires_at"] - time.time()) + 0.1)
    message = assert_unauthenticated(await client.get("/v1/models", headers=bearer(created["key"])))
    assert "expired" in message


# ------------------------------------------------------------------ JWTs

ISSUER = "https://idp.example.test"
AUDIENCE = "ragserve"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(tenant: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": "alice",
        "tenant": tenant,
        "scope": "query ingest",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
        **extra,
    }


def hs256(payload: dict[str, Any], secret: str | bytes) -> str:
    return register(jwt.encode(payload, secret, algorithm="HS256"))


def hand_signed(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A token built by hand: PyJWT refuses to make these (alg none, HMAC keyed with a public key)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return register(f"{signing_input}.{b64url(signature)}")


@dataclass(frozen=True)
class JwtApp:
    client: Client
    secret: str


@pytest.fixture(scope="module")
async def jwt_app(shared_rag: RAG, make_data_dir: Callable[[], Path], admin_api_key: str) -> AsyncIterator[JwtApp]:
    """API keys and HS256 tokens both accepted."""
    secret = register(secrets.token_urlsafe(48))
    settings = secured_settings(
        make_data_dir(),
        admin_api_key,
        auth_mode="api_key+jwt",
        jwt_algorithms=["HS256"],
        jwt_secret=secret,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    async with serve(settings, shared_rag) as c:
        yield JwtApp(c, secret)


async def test_a_valid_jwt_is_accepted_and_its_tenant_claim_decides_the_tenant(
    jwt_app: JwtApp, admin_api_key: str
) -> None:
    client, suffix = jwt_app.client, uuid.uuid4().hex[:8]
    tenant_a, tenant_b = f"jwt-a-{suffix}", f"jwt-b-{suffix}"
    token_a = hs256(claims(tenant_a), jwt_app.secret)
    token_b = hs256(claims(tenant_b, sub="bob"), jwt_app.secret)
    r = await client.post("/v1/documents", json={"collection": "docs", "documents": A_DOCS}, headers=bearer(token_a))
    assert r.status_code == 201, r.text
    r = await client.post("/v1/documents", json={"collection": "docs", "documents": B_DOCS}, headers=bearer(token_b))
    assert r.status_code == 201, r.text

    question = {"query": FALCON_QUESTION, "collection": "docs", "use_cache": False}
    mine = await client.post("/v1/search", json=question, headers=bearer(token_a))
    assert mine.json()["results"][0]["document_id"] == "a/falcon.md"
    theirs = await client.post("/v1/search", json=question, headers=bearer(token_b))
    assert theirs.status_code == 200 and doc_ids(theirs.json()["results"]) <= B_IDS
    answer = await client.post("/v1/query", json=question, headers=bearer(token_b))
    assert doc_ids(answer.json()["citations"]) <= B_IDS and LAUNCH_CODE not in answer.text
    error_of(
        await client.get("/v1/documents/a/falcon.md", params={"collection": "docs"}, headers=bearer(token_b)),
        404,
        "not_found",
    )
    # An API key of the same tenant name sees what the token's caller ingested: one tenant, two credentials.
    key = await create_key(client, admin_api_key, ["query"], tenant=tenant_a)
    via_key = await client.get("/v1/documents", params={"collection": "docs"}, headers=bearer(key["key"]))
    assert {d["id"] for d in via_key.json()["documents"]} == A_IDS
    usage = (await client.get("/v1/usage", headers=bearer(token_b))).json()
    assert (usage["tenant"], usage["caller"]["id"]) == (tenant_b, "jwt:bob")
    # A token's scopes are its claim's: no admin scope, no keys.
    error_of(await client.get("/v1/keys", headers=bearer(token_a)), 403, "forbidden")


async def test_bad_jwts_are_refused(jwt_app: JwtApp) -> None:
    client, tenant = jwt_app.client, f"jwt-x-{uuid.uuid4().hex[:8]}"
    good = claims(tenant)
    assert (await client.get("/v1/models", headers=bearer(hs256(good, jwt_app.secret)))).status_code == 200
    now = int(time.time())
    signed_elsewhere = hs256(good, register(secrets.token_urlsafe(48)))
    header, _, signature = signed_elsewhere.split(".")
    cases = [
        ("expired", hs256({**good, "iat": now - 3600, "exp": now - 600}, jwt_app.secret), "expired"),
        ("wrong audience", hs256({**good, "aud": "someone-else"}, jwt_app.secret), "audience"),
        ("wrong issuer", hs256({**good, "iss": "https://evil.example.test"}, jwt_app.secret), "issuer"),
        ("bad signature", signed_elsewhere, "signature"),
        ("alg none", hand_signed({"alg": "none", "typ": "JWT"}, good, None), "unsigned"),
        ("alg None", hand_signed({"alg": "None", "typ": "JWT"}, good, None), "unsigned"),
        ("no tenant", hs256({k: v for k, v in good.items() if k != "tenant"}, jwt_app.secret), "tenant claim"),
        ("no expiry", hs256({k: v for k, v in good.items() if k != "exp"}, jwt_app.secret), "'exp'"),
        (
            "payload swapped for another tenant's",
            register(f"{header}.{b64url(json.dumps({**good, 'tenant': 'victim'}).encode())}.{signature}"),
            "signature",
        ),
    ]
    for what, token, reason in cases:
        message = assert_unauthenticated(await client.get("/v1/models", headers=bearer(token)))
        assert reason in message, (what, message)
        assert token not in message, what


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def test_with_rs256_configured_an_hs256_token_signed_with_the_public_key_is_refused(
    shared_rag: RAG, make_data_dir: Callable[[], Path], rsa_key: rsa.RSAPrivateKey
) -> None:
    data_dir = make_data_dir()
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (data_dir / "jwt.pem").write_bytes(public_pem)
    settings = Settings(
        data_dir=data_dir,
        auth_mode="jwt",
        jwt_algorithms=["RS256"],
        jwt_public_key_file=data_dir / "jwt.pem",
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        warmup=False,
    )
    payload = claims(f"rs-{uuid.uuid4().hex[:8]}")
    async with serve(settings, shared_rag) as client:
        valid = register(jwt.encode(payload, rsa_key, algorithm="RS256"))
        assert (await client.get("/v1/models", headers=bearer(valid))).status_code == 200  # the control
        confused = hand_signed({"alg": "HS256", "typ": "JWT"}, payload, public_pem)  # the key-confusion attack
        assert "algorithm" in assert_unauthenticated(await client.get("/v1/models", headers=bearer(confused)))
        unsigned = hand_signed({"alg": "none", "typ": "JWT"}, payload, None)
        assert_unauthenticated(await client.get("/v1/models", headers=bearer(unsigned)))
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = register(jwt.encode(payload, other, algorithm="RS256"))
        assert_unauthenticated(await client.get("/v1/models", headers=bearer(forged)))
        api_key = register(f"rsk_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}")
        assert "not accepted" in assert_unauthenticated(await client.get("/v1/models", headers=bearer(api_key)))


# ------------------------------------------------------------------ scopes


async def test_scopes_limit_what_a_key_may_do(client: Client, admin_api_key: str) -> None:
    tenant = f"scopes-{uuid.uuid4().hex[:8]}"
    reader = (await create_key(client, admin_api_key, ["query"], tenant=tenant))["key"]
    writer = (await create_key(client, admin_api_key, ["ingest"], tenant=tenant))["key"]
    r = await client.post(
        "/v1/documents", json={"documents": [{"id": "d.md", "text": "hello"}]}, headers=bearer(writer)
    )
    assert r.status_code == 201, r.text

    ingesting: list[Request] = [
        ("POST", "/v1/documents", {"json": {"documents": [{"text": "hello"}]}}),
        ("DELETE", "/v1/documents/d.md", {}),
        ("POST", "/v1/documents/upload", {"files": [("files", ("a.txt", b"hello there", "text/plain"))]}),
        ("GET", "/v1/jobs/some-job", {}),
    ]
    for method, path, extra in ingesting:
        r = await client.request(method, path, headers=bearer(reader), **extra)
        assert "'ingest' scope" in error_of(r, 403, "forbidden"), (method, path)
    asking: list[Request] = [
        ("POST", "/v1/query", {"json": {"query": "hello?"}}),
        ("POST", "/v1/search", {"json": {"query": "hello"}}),
        ("GET", "/v1/models", {}),
    ]
    for method, path, extra in asking:
        r = await client.request(method, path, headers=bearer(writer), **extra)
        assert "'query' scope" in error_of(r, 403, "forbidden"), (method, path)
    managing: list[Request] = [
        ("GET", "/v1/keys", {}),
        ("POST", "/v1/keys", {"json": {"name": "x", "scopes": ["query"]}}),
        ("DELETE", "/v1/keys/rsk_00000000", {}),
    ]
    for key in (reader, writer):
        for method, path, extra in managing:
            r = await client.request(method, path, headers=bearer(key), **extra)
            assert "'admin' scope" in error_of(r, 403, "forbidden"), (method, path)
    # What each may do still works: the 403s above are about scopes, not broken keys.
    assert (await client.get("/v1/documents/d.md", headers=bearer(reader))).status_code == 200
    assert (await client.delete("/v1/documents/d.md", headers=bearer(writer))).status_code == 200


async def test_a_tenant_admin_manages_its_own_tenant_only(client: Client, admin_api_key: str) -> None:
    tenant = f"adm-{uuid.uuid4().hex[:8]}"
    admin = (await create_key(client, admin_api_key, ["admin"], tenant=tenant))["key"]
    r = await client.post(
        "/v1/keys", json={"name": "x", "scopes": ["query"], "tenant": f"other-{tenant}"}, headers=bearer(admin)
    )
    assert "own tenant" in error_of(r, 403, "forbidden")
    own = await create_key(client, admin, ["query"], tenant=tenant)
    implied = await create_key(client, admin, ["query"])
    assert own["tenant"] == implied["tenant"] == tenant


async def test_a_key_restricted_to_collections_uses_those_only(client: Client, admin_api_key: str) -> None:
    tenant = f"coll-{uuid.uuid4().hex[:8]}"
    everything = (await create_key(client, admin_api_key, ["query", "ingest"], tenant=tenant))["key"]
    for collection in ("docs", "secret"):
        r = await client.post(
            "/v1/documents",
            json={"collection": collection, "documents": [{"id": f"{collection}.md", "text": f"About {collection}."}]},
            headers=bearer(everything),
        )
        assert r.status_code == 201, r.text
    limited = await create_key(client, admin_api_key, ["query", "ingest"], tenant=tenant, collections=["docs"])
    assert limited["collections"] == ["docs"]
    key = limited["key"]

    models = await client.get("/v1/models", headers=bearer(key))
    assert [m["id"] for m in models.json()["data"]] == ["docs"]
    assert {m["id"] for m in (await client.get("/v1/models", headers=bearer(everything))).json()["data"]} == {
        "docs",
        "secret",
    }
    assert (
        await client.post("/v1/search", json={"query": "about", "collection": "docs"}, headers=bearer(key))
    ).status_code == 200
    elsewhere: list[Request] = [
        ("POST", "/v1/search", {"json": {"query": "about", "collection": "secret"}}),
        ("POST", "/v1/query", {"json": {"query": "about?", "collection": "secret"}}),
        ("POST", "/v1/chat/completions", {"json": {"model": "secret", "messages": [{"role": "user", "content": "?"}]}}),
        ("GET", "/v1/documents", {"params": {"collection": "secret"}}),
        ("GET", "/v1/documents/secret.md", {"params": {"collection": "secret"}}),
        ("DELETE", "/v1/documents/secret.md", {"params": {"collection": "secret"}}),
        ("POST", "/v1/documents", {"json": {"collection": "secret", "documents": [{"text": "x"}]}}),
    ]
    for method, path, extra in elsewhere:
        r = await client.request(method, path, headers=bearer(key), **extra)
        assert "collection 'secret'" in error_of(r, 403, "forbidden"), (method, path)
    assert (
        await client.get("/v1/documents/secret.md", params={"collection": "secret"}, headers=bearer(everything))
    ).status_code == 200


# ------------------------------------------------------------------ constant time


@pytest.fixture
async def key_store(tmp_path: Path) -> AsyncIterator[ApiKeys]:
    db = Database.open(None, tmp_path)
    yield ApiKeys(db, cache_s=0.0)  # nothing remembered: every call does the whole check
    db.close()


async def time_calls(keys: ApiKeys, credentials: dict[str, str], rounds: int) -> dict[str, float]:
    """Median seconds of `authenticate` per credential, the cases interleaved in a shuffled order each round."""
    samples: dict[str, list[float]] = {name: [] for name in credentials}
    names = list(credentials)
    for _ in range(rounds):
        secrets.SystemRandom().shuffle(names)
        for name in names:
            started = time.perf_counter()
            with contextlib.suppress(AuthenticationError):
                await keys.authenticate(credentials[name])
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


async def test_a_near_miss_digest_takes_as_long_to_refuse_as_a_far_miss(key_store: ApiKeys) -> None:
    created = await key_store.create("acme", "timing", ["query"])
    register(created.key)
    key_id = created.info.id
    salt = await key_store.db.run(
        lambda conn: conn.execute(sa.select(api_keys.c.salt).where(api_keys.c.id == key_id)).scalar_one()
    )
    near = secrets.token_urlsafe(32)
    near_digest = key_store.digest(salt, near)
    stored = near_digest[:-1] + ("0" if near_digest[-1] != "0" else "1")  # 63 of 64 characters in common
    await key_store.db.run(
        lambda conn: conn.execute(sa.update(api_keys).where(api_keys.c.id == key_id).values(digest=stored))
    )
    far = next(s for s in iter(lambda: secrets.token_urlsafe(32), None) if key_store.digest(salt, s)[0] != stored[0])
    credentials = {
        "near": f"{key_id}_{near}",  # differs from the stored digest in its last character only
        "far": f"{key_id}_{far}",  # differs in its first
        "unknown": f"rsk_{secrets.token_hex(4)}_{far}",  # no such id: must cost the same
    }
    for credential in credentials.values():
        with pytest.raises(AuthenticationError):
            await key_store.authenticate(credential)

    medians = await time_calls(key_store, credentials, rounds=300)
    baseline = medians["far"]
    # Generous: a database read dominates; an early exit or a skipped digest would still show.
    tolerance = max(0.3 * baseline, 100e-6)
    assert abs(medians["near"] - baseline) <= tolerance, medians
    assert abs(medians["unknown"] - baseline) <= tolerance, medians


async def test_digests_are_compared_with_compare_digest_even_for_unknown_ids(
    key_store: ApiKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await key_store.create("acme", "spy", ["query"])
    register(created.key)
    compared: list[tuple[str, str]] = []
    digested: list[str] = []
    real_compare, real_digest = hmac.compare_digest, key_store.digest

    def compare_spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real_compare(a, b)

    def digest_spy(salt: str, secret: str) -> str:
        digested.append(salt)
        return real_digest(salt, secret)

    monkeypatch.setattr(hmac, "compare_digest", compare_spy)  # the module keys.py compares with
    monkeypatch.setattr(key_store, "digest", digest_spy)
    wrong = f"{created.info.id}_{secrets.token_urlsafe(32)}"
    unknown = f"rsk_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"

    for credential in (wrong, unknown):
        compared.clear()
        digested.clear()
        with pytest.raises(AuthenticationError):
            await key_store.authenticate(credential)
        assert len(digested) == 1, credential  # a digest is computed for an unknown id too
        assert len(compared) == 1, credential  # and compared, in constant time
        given, stored = compared[0]
        assert given == real_digest(digested[0], credential[13:]) and len(stored) == len(given) == 64
    assert digested[0] == keys_module._DUMMY_SALT  # the unknown id's: a dummy salt, the same work

    compared.clear()
    assert (await key_store.authenticate(created.key)).tenant == "acme"
    assert len(compared) == 1 and compared[0][0] == compared[0][1]
    compared.clear()
    with pytest.raises(AuthenticationError):
        await key_store.authenticate("rsk_short")
    assert compared == []  # a malformed key is refused by its shape alone, which is public


# ------------------------------------------------------------------ configuration


async def test_auth_mode_none_is_refused_in_production(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings(env="production", auth_mode="none", data_dir=tmp_path)
    message = refused.value.message
    assert "auth_mode=none is for development only" in message and "RAGSERVE_AUTH_MODE" in message
    admin = register(secrets.token_urlsafe(32))
    settings = load_settings(env="production", auth_mode="api_key", admin_api_key=admin, data_dir=tmp_path)
    assert settings.auth_mode == "api_key"
    assert load_settings(env="development", auth_mode="none", data_dir=tmp_path).auth_mode == "none"


# ------------------------------------------------------------------ the log scan itself


async def test_the_log_scan_catches_a_planted_secret(tmp_path: Path) -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex
    api_key = f"rsk_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"
    token = jwt.encode({"sub": "x", "exp": 1}, "k" * 32, algorithm="HS256")
    lines = [
        ("a", "nothing to see"),
        ("b", f"request failed for user with password {secret} and more"),
        ("c", f"key={api_key}"),
        ("d", f"Authorization: Bearer {token}"),
        ("e", "key id rsk_1234abcd alone is fine"),
    ]
    leaks = secrets_registry.scan(lines, {secret})
    assert [(leak.origin, leak.what) for leak in leaks] == [
        ("b", "a registered secret"),
        ("c", "an API key"),
        ("d", "a JWT"),
    ]
    shown = "\n".join(str(leak) for leak in leaks)
    assert secret not in shown and api_key not in shown and token not in shown  # reported masked
    assert api_key[:13] in shown  # the visible id stays, to find the key
    assert secrets_registry.scan([("x", "all clean")], {secret}) == []

    log_file = tmp_path / "server.log"
    log_file.write_text(f"line one\nleaked {secret}\n")
    assert [leak.origin for leak in secrets_registry.scan(secrets_registry.file_lines([log_file]), {secret})] == [
        str(log_file)
    ]


async def test_the_capture_renders_extras_and_structlog_event_dicts() -> None:
    # A handler of its own, not the session's: these records must not land in the session's capture.
    handler = secrets_registry.CaptureHandler()
    marker = uuid.uuid4().hex
    plain = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": "hello %s", "args": ("x",), "note": marker})
    structured = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": {"event": "e", "field": marker * 2}})
    try:
        raise ValueError(marker * 3)
    except ValueError:
        failed = logging.makeLogRecord({"name": "t", "levelname": "ERROR", "msg": "boom", "exc_info": sys.exc_info()})
    for record in (plain, structured, failed):
        handler.handle(record)
    texts = [text for _, text in handler.lines]
    assert marker in texts[0] and "hello x" in texts[0]
    assert marker * 2 in texts[1]
    assert marker * 3 in texts[2]
