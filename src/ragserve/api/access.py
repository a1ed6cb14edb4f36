"""The caller of a request, and what it may touch: `AccessDep` in a route's signature.

    async def search(body: SearchRequest, access: AccessDep) -> ...:
        scope = await access.scope("query", body.collection)   # 401, 403, 402 or 429 here

Authentication happens when the dependency is resolved (a 401 comes before any body
validation). `scope()` asks the core's Gate, which builds the Scope from the caller's own
tenant; the rate-limit headers it returns go on the response whatever its status.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ragserve.security.auth import Authenticator
from ragserve.security.gate import Gate
from ragserve.security.principal import Principal
from ragserve.settings import Settings
from ragserve.types import Answer, Scope

RESPONSE_HEADERS = "response_headers"  # request.state key read by RequestIdMiddleware


class Access:
    def __init__(self, request: Request, principal: Principal) -> None:
        self.request = request
        self.principal = principal
        self.gate: Gate = request.app.state.gate
        self.settings: Settings = request.app.state.settings

    async def scope(self, need: str, collection: str | None = None) -> Scope:
        """The Scope for `need` ("query", "ingest", "admin") on `collection` (the default when None)."""
        try:
            admitted = await self.gate.admit(self.principal, need, collection or self.settings.default_collection)
        except Exception as exc:
            self._add_headers(getattr(exc, "headers", None) or {})
            raise
        self._add_headers(admitted.headers)
        return admitted.scope

    def require(self, need: str) -> None:
        self.gate.require(self.principal, need)

    async def settle(self, answer: Answer) -> None:
        await self.gate.settle(self.principal, answer.usage, answer.cost_usd)

    def _add_headers(self, headers: dict[str, str]) -> None:
        if headers:
            current = getattr(self.request.state, RESPONSE_HEADERS, {})
            setattr(self.request.state, RESPONSE_HEADERS, {**current, **headers})


async def get_access(request: Request) -> Access:
    authenticator: Authenticator = request.app.state.authenticator
    principal = await authenticator.authenticate(request.headers.get("authorization"), request.headers.get("x-api-key"))
    request.state.principal = principal
    return Access(request, principal)


AccessDep = Annotated[Access, Depends(get_access)]
