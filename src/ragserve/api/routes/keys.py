"""API keys (`/v1/keys`, admin scope) and this month's usage (`GET /v1/usage`).

A tenant's admin manages its own tenant's keys; the bootstrap admin key
(`RAGSERVE_ADMIN_API_KEY`) manages every tenant's. A key of another tenant is a 404.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BeforeValidator, Field

from ragserve.api.access import Access, AccessDep
from ragserve.api.schemas import CollectionName, Strict, error_responses, json_integer
from ragserve.errors import PermissionDeniedError
from ragserve.security.gate import Gate
from ragserve.security.keys import MAX_MONTHLY_TOKENS, MAX_MONTHLY_USD, ApiKeys
from ragserve.security.principal import Scope_
from ragserve.security.usage import TENANT_TOTAL, Usage, current_month

router = APIRouter(prefix="/v1", tags=["keys"], responses=error_responses(400, 401, 403, 422, 429, 500, 503))


class KeyCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope_] = Field(min_length=1, max_length=3)
    tenant: CollectionName | None = Field(default=None, description="only the bootstrap admin key may name another")
    collections: list[CollectionName] | None = Field(default=None, max_length=1000)
    expires_in_s: float | None = Field(default=None, gt=0, le=10 * 365 * 86400, strict=False)
    monthly_tokens: (
        Annotated[int, Field(strict=False, ge=0, le=MAX_MONTHLY_TOKENS), BeforeValidator(json_integer)] | None
    ) = None
    monthly_usd: float | None = Field(default=None, ge=0, le=MAX_MONTHLY_USD, strict=False)


def _keys(request: Request) -> ApiKeys:
    keys: ApiKeys = request.app.state.keys
    return keys


def _managed_tenant(access: Access, tenant: str | None) -> str | None:
    """The tenant whose keys the caller manages (None: every tenant, for the bootstrap key)."""
    access.require("admin")
    caller = access.principal
    if caller.operator:
        return tenant
    if tenant is not None and tenant != caller.tenant:
        raise PermissionDeniedError("an admin key manages the keys of its own tenant only")
    return caller.tenant


@router.post("/keys", status_code=201, description="Create a key. The `key` is shown here once and never again.")
async def create_key(body: KeyCreate, access: AccessDep, request: Request) -> dict[str, object]:
    tenant = _managed_tenant(access, body.tenant) or access.principal.tenant
    created = await _keys(request).create(
        tenant,
        body.name,
        body.scopes,
        collections=body.collections,
        expires_in_s=body.expires_in_s,
        monthly_tokens=body.monthly_tokens,
        monthly_usd=body.monthly_usd,
    )
    return {**created.info.as_dict(time.time()), "key": created.key}


@router.get("/keys")
async def list_keys(
    access: AccessDep, request: Request, tenant: Annotated[str | None, Query(max_length=128)] = None
) -> dict[str, object]:
    now = time.time()
    keys = await _keys(request).list(_managed_tenant(access, tenant))
    return {"keys": [k.as_dict(now) for k in keys]}


@router.delete("/keys/{key_id}", responses=error_responses(404))
async def revoke_key(
    key_id: Annotated[str, Path(min_length=1, max_length=32)], access: AccessDep, request: Request
) -> dict[str, object]:
    revoked = await _keys(request).revoke(key_id, _managed_tenant(access, None))
    return revoked.as_dict(time.time())


@router.get("/usage", description="This month's requests, tokens and cost: the tenant's and this caller's.")
async def usage(access: AccessDep, request: Request) -> dict[str, object]:
    gate: Gate = request.app.state.gate
    caller = access.principal
    rows = await gate.usage(caller.tenant)
    body: dict[str, object] = {
        "tenant": caller.tenant,
        "month": current_month(),
        "total": rows.get(TENANT_TOTAL, Usage()).as_dict(),
        "caller": {"id": caller.key_id, **rows.get(caller.key_id, Usage()).as_dict()},
    }
    if caller.has_scope("admin"):
        body["by_caller"] = {k: u.as_dict() for k, u in sorted(rows.items()) if k != TENANT_TOTAL}
    return body
