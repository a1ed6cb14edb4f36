"""API keys: random, shown once, stored as a salted HMAC, identified by a visible prefix.

    rsk_1f2e3d4c_Qm9vZ0JhY2tlbmRJbmZyYVN0cnVjdHVyZVRva2VuMDAx
    └─ id ─────┘ └─ secret: 32 random bytes, base64url ──────┘

The id is stored and shown (lists, logs, usage); the secret never is. Each key has its own
salt, and the digest is HMAC-SHA256 under an optional server-side pepper
(`RAGSERVE_API_KEY_PEPPER`), so a copy of the table alone verifies nothing. A 256-bit secret
needs no slow hash: there is nothing to brute-force. Digests are compared in constant time,
and an unknown id costs the same work as a known one.

Verified keys are remembered for `cache_s` (default 1 s) so a hot key is not read from the
database on every request; revocation takes effect at once on the revoking process and within
`cache_s` on the others.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, select, update

from ragserve.errors import AuthenticationError, InvalidInputError, NotFoundError
from ragserve.relational.database import Database, api_keys
from ragserve.security.principal import SCOPES, Principal
from ragserve.types import check_name

PREFIX = "rsk_"
_KEY = re.compile(r"^(rsk_[0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
_DUMMY_SALT = "0" * 32
# Budgets a database integer column and a float sum hold exactly.
MAX_MONTHLY_TOKENS = 10**15
MAX_MONTHLY_USD = 1e12
_DUMMY_DIGEST = "0" * 64


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    id: str
    tenant: str
    name: str
    scopes: tuple[str, ...]
    collections: tuple[str, ...] | None
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    monthly_tokens: int | None
    monthly_usd: float | None

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def as_dict(self, now: float) -> dict[str, object]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "name": self.name,
            "scopes": list(self.scopes),
            "collections": None if self.collections is None else list(self.collections),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "monthly_tokens": self.monthly_tokens,
            "monthly_usd": self.monthly_usd,
            "state": self.state(now),
        }


@dataclass(frozen=True, slots=True)
class NewKey:
    info: ApiKeyInfo
    key: str  # the whole key: shown to its creator once, never stored


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    given = tuple(dict.fromkeys(scopes))
    unknown = [s for s in given if s not in SCOPES]
    if unknown or not given:
        raise InvalidInputError(
            f"scopes must be a non-empty subset of {list(SCOPES)}, got {list(given)}", field="scopes"
        )
    return given


class ApiKeys:
    def __init__(self, db: Database, *, pepper: bytes = b"", cache_s: float = 1.0) -> None:
        self.db = db
        self.pepper = pepper
        self.cache_s = cache_s
        self._verified: dict[str, _Verified] = {}

    def digest(self, salt: str, secret: str) -> str:
        return hmac.new(self.pepper, (salt + secret).encode(), hashlib.sha256).hexdigest()

    async def create(
        self,
        tenant: str,
        name: str,
        scopes: Iterable[str],
        *,
        collections: Iterable[str] | None = None,
        expires_in_s: float | None = None,
        monthly_tokens: int | None = None,
        monthly_usd: float | None = None,
    ) -> NewKey:
        check_name(tenant, "tenant")
        if not name.strip() or len(name) > 200:
            raise InvalidInputError("name must be 1-200 characters", field="name")
        if expires_in_s is not None and expires_in_s <= 0:
            raise InvalidInputError("expires_in_s must be positive", field="expires_in_s")
        if monthly_tokens is not None and not 0 <= monthly_tokens <= MAX_MONTHLY_TOKENS:
            raise InvalidInputError(f"monthly_tokens must be 0 to {MAX_MONTHLY_TOKENS}", field="monthly_tokens")
        if monthly_usd is not None and not 0 <= monthly_usd <= MAX_MONTHLY_USD:
            raise InvalidInputError(f"monthly_usd must be 0 to {MAX_MONTHLY_USD:g}", field="monthly_usd")
        allowed = None if collections is None else tuple(dict.fromkeys(collections))
        for collection in allowed or ():
            check_name(collection, "collections")
        now = time.time()
        key_id = PREFIX + secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        info = ApiKeyInfo(
            id=key_id,
            tenant=tenant,
            name=name.strip(),
            scopes=check_scopes(scopes),
            collections=allowed,
            created_at=now,
            expires_at=None if expires_in_s is None else now + expires_in_s,
            revoked_at=None,
            monthly_tokens=monthly_tokens,
            monthly_usd=monthly_usd,
        )
        row = {
            "id": info.id,
            "tenant": info.tenant,
            "name": info.name,
            "salt": salt,
            "digest": self.digest(salt, secret),
            "scopes": " ".join(info.scopes),
            "collections": None if allowed is None else json.dumps(list(allowed)),
            "created_at": now,
            "expires_at": info.expires_at,
            "revoked_at": None,
            "monthly_tokens": monthly_tokens,
            "monthly_usd": monthly_usd,
        }
        await self.db.run(lambda conn: conn.execute(api_keys.insert().values(**row)))
        return NewKey(info, f"{key_id}_{secret}")

    async def list(self, tenant: str | None) -> list[ApiKeyInfo]:
        """Keys of `tenant` (every tenant's for None), newest first."""

        def run(conn: Connection) -> list[ApiKeyInfo]:
            query = select(api_keys).order_by(api_keys.c.created_at.desc())
            if tenant is not None:
                query = query.where(api_keys.c.tenant == tenant)
            return [_info(row) for row in conn.execute(query)]

        return await self.db.run(run)

    async def get(self, key_id: str, tenant: str | None) -> ApiKeyInfo:
        def run(conn: Connection) -> Row[tuple[object, ...]] | None:
            return conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()

        row = await self.db.run(run)
        # Another tenant's key is as absent as a missing one: its existence is not disclosed.
        if row is None or (tenant is not None and row.tenant != tenant):
            raise NotFoundError(f"API key {key_id!r} not found")
        return _info(row)

    async def revoke(self, key_id: str, tenant: str | None) -> ApiKeyInfo:
        """Revoke (idempotent); NotFoundError for a key that is not there or belongs to another tenant."""
        info = await self.get(key_id, tenant)
        if info.revoked_at is None:
            now = time.time()
            await self.db.run(
                lambda conn: conn.execute(
                    update(api_keys)
                    .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
            )
        self._verified.pop(key_id, None)
        return await self.get(key_id, tenant)

    async def authenticate(self, key: str) -> Principal:
        """The key's principal; AuthenticationError for a malformed, unknown, expired or revoked key."""
        match = _KEY.match(key)
        if match is None:
            raise AuthenticationError("malformed API key", reason="malformed")
        key_id, secret = match.groups()
        now = time.monotonic()
        remembered = self._verified.get(key_id)
        if (
            remembered is not None
            and remembered.until > now
            and hmac.compare_digest(self.digest(remembered.salt, secret), remembered.digest)
        ):
            return remembered.principal
        row = await self.db.run(lambda conn: conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first())
        salt = row.salt if row is not None else _DUMMY_SALT
        given = self.digest(salt, secret)
        # Compared even for an unknown id, so that it costs what a wrong secret costs.
        matches = hmac.compare_digest(given, row.digest if row is not None else _DUMMY_DIGEST)
        if row is None or not matches:
            raise AuthenticationError("unknown API key", reason="unknown")
        info = _info(row)
        state = info.state(time.time())
        if state != "active":
            raise AuthenticationError(f"API key {key_id} is {state}", reason=state)
        principal = Principal(
            tenant=info.tenant,
            scopes=frozenset(info.scopes),
            kind="api_key",
            key_id=info.id,
            collections=None if info.collections is None else frozenset(info.collections),
            monthly_tokens=info.monthly_tokens,
            monthly_usd=info.monthly_usd,
        )
        until = now + self.cache_s
        if info.expires_at is not None:
            until = min(until, now + (info.expires_at - time.time()))
        if len(self._verified) >= 10_000:
            self._verified.clear()
        self._verified[key_id] = _Verified(until, principal, salt, row.digest)
        return principal


@dataclass(frozen=True, slots=True)
class _Verified:
    until: float  # monotonic
    principal: Principal
    salt: str
    digest: str


def _info(row: Row[tuple[object, ...]] | Any) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row.id,
        tenant=row.tenant,
        name=row.name,
        scopes=tuple(row.scopes.split()),
        collections=None if row.collections is None else tuple(json.loads(row.collections)),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        monthly_tokens=row.monthly_tokens,
        monthly_usd=row.monthly_usd,
    )
