"""Who is asking: a tenant, the scopes granted, and optionally the only collections allowed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scope_ = Literal["query", "ingest", "admin"]
SCOPES: tuple[Scope_, ...] = ("query", "ingest", "admin")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    `kind` says how it authenticated ("api_key", "jwt", or "anonymous" when auth is off);
    `key_id` names the API key (its visible prefix) or the token's subject, for limits,
    budgets and logs. `collections` None means every collection of the tenant.
    """

    def __post_init__(self) -> None:
        if "admin" in self.scopes:
            # admin implies every other scope of its tenant.
            object.__setattr__(self, "scopes", frozenset(self.scopes) | frozenset(SCOPES))

    tenant: str
    scopes: frozenset[str]
    kind: Literal["api_key", "jwt", "anonymous"]
    key_id: str
    collections: frozenset[str] | None = None
    operator: bool = False  # the bootstrap admin key: manages keys of every tenant
    monthly_tokens: int | None = None  # this key's own budget, overriding the configured default
    monthly_usd: float | None = None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def may_use(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections
