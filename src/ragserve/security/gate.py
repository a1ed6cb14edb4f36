"""What every request passes before the core does work for it, and what it leaves behind.

    gate = Gate.from_settings(settings, db, limiter)
    admitted = await gate.admit(principal, "query", "docs")   # 403, 402 or 429, or a Scope
    answer = await rag.query(question, admitted.scope)
    await gate.settle(principal, answer.usage, answer.cost_usd)

`admit` is where tenancy is enforced: the Scope every core call takes is built here from
the principal's own tenant, never from the request, and only for a collection the
principal may use with the scope it needs. Then, for questions, the monthly budgets (from
the usage ledger) and the rate limits: requests per minute per caller and per tenant (a
sliding window), and LLM tokens per minute (a token bucket checked before the answer and
charged after it). `settle` charges the tokens and records the usage.

Usage rows are written in batches, once a second and at shutdown, so an answered request
does not wait for a database write. A budget check adds what this process has not yet
written, so one process never overshoots; across replicas the overshoot is bounded by what
the others answered in the last second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ragserve.errors import PermissionDeniedError, RateLimitedError
from ragserve.ratelimit.base import BucketRule, Decision, RateLimiter, WindowRule, most_restrictive
from ragserve.security.principal import Principal
from ragserve.security.usage import TENANT_TOTAL, Budget, Usage, UsageLedger, current_month
from ragserve.settings import BudgetSettings, Settings
from ragserve.types import Scope, check_name

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


@dataclass(frozen=True, slots=True)
class Admission:
    scope: Scope
    headers: dict[str, str] = field(default_factory=dict)  # X-RateLimit-*: for every response to this request


@dataclass(frozen=True, slots=True)
class Limits:
    key_requests: WindowRule | None = None
    tenant_requests: WindowRule | None = None
    key_tokens: BucketRule | None = None
    tenant_tokens: BucketRule | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        def window(name: str, per_minute: int) -> WindowRule | None:
            return WindowRule(name, per_minute, 60.0) if per_minute else None

        def bucket(name: str, per_minute: int) -> BucketRule | None:
            if not per_minute:
                return None
            return BucketRule(name, per_minute * settings.rate_limit_token_burst, per_minute / 60.0)

        return cls(
            window("key_requests", settings.rate_limit_key_rpm),
            window("tenant_requests", settings.rate_limit_tenant_rpm),
            bucket("key_tokens", settings.rate_limit_key_tpm),
            bucket("tenant_tokens", settings.rate_limit_tenant_tpm),
        )


class Gate:
    def __init__(
        self,
        *,
        limiter: RateLimiter,
        ledger: UsageLedger,
        limits: Limits | None = None,
        tenant_budget: Budget | None = None,
        tenant_budgets: Mapping[str, Budget] | None = None,
        key_budget: Budget | None = None,
    ) -> None:
        self.limiter = limiter
        self.ledger = ledger
        self.limits = limits or Limits()
        self.tenant_budget = tenant_budget or Budget()
        self.tenant_budgets = dict(tenant_budgets or {})
        self.key_budget = key_budget or Budget()
        self._pending: dict[tuple[str, str, str], Usage] = {}  # (tenant, key_id, month) -> not yet written
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, ledger: UsageLedger, limiter: RateLimiter) -> Gate:
        def budget(b: BudgetSettings) -> Budget:
            return Budget(tokens=b.tokens, usd=b.usd)

        return cls(
            limiter=limiter,
            ledger=ledger,
            limits=Limits.from_settings(settings),
            tenant_budget=budget(settings.budget),
            tenant_budgets={t: budget(b) for t, b in settings.tenant_budgets.items()},
            key_budget=budget(settings.key_budget),
        )

    # ------------------------------------------------------------------ who may

    @staticmethod
    def scope(principal: Principal, need: str, collection: str) -> Scope:
        """The Scope `principal` may use for `need` on `collection`; PermissionDeniedError (403) otherwise."""
        Gate.require(principal, need)
        check_name(collection, "collection")
        if not principal.may_use(collection):
            raise PermissionDeniedError(f"this credential may not use collection {collection!r}")
        return Scope(tenant=principal.tenant, collection=collection)

    @staticmethod
    def require(principal: Principal, need: str) -> None:
        if not principal.has_scope(need):
            raise PermissionDeniedError(f"this credential lacks the {need!r} scope")

    # --------------------------------------------------------------- how much

    async def admit(self, principal: Principal, need: str, collection: str) -> Admission:
        """Authorise, then (for questions) check budgets and rate limits; raise 403, 402 or 429."""
        scope = self.scope(principal, need, collection)
        if need == "query":
            await self._check_budgets(principal)
        decisions = await self._rate(principal, asking=need == "query")
        if not decisions:
            return Admission(scope)
        shown = most_restrictive(d for _, d in decisions)
        headers = rate_headers(shown)
        if not shown.allowed:
            whose, rule = next((whose, rule) for (whose, rule), d in decisions if d is shown)
            raise RateLimitedError(
                f"{rule} limit of this {whose} reached; retry in {max(1, math.ceil(shown.retry_after_s))} s",
                retry_after_s=shown.retry_after_s,
                headers=headers,
            )
        return Admission(scope, headers)

    async def settle(self, principal: Principal, usage: Mapping[str, int], cost_usd: float | None) -> None:
        """Charge an answer's tokens to the token buckets and the ledger."""
        prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        tokens = prompt + completion
        if tokens:
            for rule, key in self._token_rules(principal):
                await self.limiter.debit(key, rule, tokens)
        spent = Usage(requests=1, prompt_tokens=prompt, completion_tokens=completion, cost_usd=cost_usd or 0.0)
        slot = (principal.tenant, principal.key_id, current_month())
        self._pending[slot] = _add(self._pending.get(slot, Usage()), spent)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later())

    async def flush(self) -> None:
        """Write what this process has recorded; kept for the next flush if the database fails."""
        pending, self._pending = self._pending, {}
        for (tenant, key_id, month), spent in pending.items():
            try:
                await self.ledger.add(tenant, key_id, month, spent)
            except Exception:
                log.exception("usage ledger write failed; kept for the next flush")
                slot = (tenant, key_id, month)
                self._pending[slot] = _add(self._pending.get(slot, Usage()), spent)

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()

    async def usage(self, tenant: str) -> dict[str, Usage]:
        """This month's usage of `tenant` by caller ("" is the tenant's total), written or not."""
        found = await self.ledger.month(tenant)
        for who, spent in self._unwritten(tenant).items():
            found[who] = _add(found.get(who, Usage()), spent)
        return found

    def _unwritten(self, tenant: str) -> dict[str, Usage]:
        """What this process recorded for `tenant` this month and has not yet written, by caller and in total."""
        month = current_month()
        found: dict[str, Usage] = {}
        for (t, key_id, m), spent in self._pending.items():
            if t == tenant and m == month:
                for who in dict.fromkeys((key_id, TENANT_TOTAL)):
                    found[who] = _add(found.get(who, Usage()), spent)
        return found

    async def _flush_later(self) -> None:
        await asyncio.sleep(FLUSH_INTERVAL_S)
        await self.flush()

    async def _check_budgets(self, principal: Principal) -> None:
        tenant_budget = self.tenant_budgets.get(principal.tenant, self.tenant_budget)
        key_budget = Budget(
            tokens=principal.monthly_tokens if principal.monthly_tokens is not None else self.key_budget.tokens,
            usd=principal.monthly_usd if principal.monthly_usd is not None else self.key_budget.usd,
        )
        if tenant_budget.unlimited and key_budget.unlimited:
            return
        tenant_spent, key_spent = await self.ledger.spent(principal.tenant, principal.key_id)
        unwritten = self._unwritten(principal.tenant)
        tenant_spent = _add(tenant_spent, unwritten.get(TENANT_TOTAL, Usage()))
        key_spent = _add(key_spent, unwritten.get(principal.key_id, Usage()))
        tenant_budget.check(tenant_spent, f"tenant {principal.tenant!r}")
        key_budget.check(key_spent, f"credential {principal.key_id!r}")

    async def _rate(self, principal: Principal, *, asking: bool) -> list[tuple[tuple[str, str], Decision]]:
        """Each rule's decision, labelled (whose, what); stops at the first refusal, which then counts nothing more."""
        limits = self.limits
        tenant_key, caller_key = f"t:{principal.tenant}", f"k:{principal.tenant}:{principal.key_id}"
        checks: list[tuple[tuple[str, str], WindowRule | BucketRule | None, str]] = [
            (("tenant", "request"), limits.tenant_requests, tenant_key),
            (("credential", "request"), limits.key_requests, caller_key),
        ]
        if asking:
            checks += [
                (("tenant", "token"), limits.tenant_tokens, tenant_key),
                (("credential", "token"), limits.key_tokens, caller_key),
            ]
        decisions: list[tuple[tuple[str, str], Decision]] = []
        for label, rule, key in checks:
            if rule is None:
                continue
            if isinstance(rule, WindowRule):
                decision = await self.limiter.hit(key, rule)
            else:
                decision = await self.limiter.take(key, rule, 0)
            decisions.append((label, decision))
            if not decision.allowed:
                break
        return decisions

    def _token_rules(self, principal: Principal) -> list[tuple[BucketRule, str]]:
        rules = []
        if self.limits.tenant_tokens is not None:
            rules.append((self.limits.tenant_tokens, f"t:{principal.tenant}"))
        if self.limits.key_tokens is not None:
            rules.append((self.limits.key_tokens, f"k:{principal.tenant}:{principal.key_id}"))
        return rules


def rate_headers(decision: Decision) -> dict[str, str]:
    values = (decision.limit, max(0, decision.remaining), max(0, math.ceil(decision.reset_s)))
    return dict(zip(RATE_HEADERS, map(str, values), strict=True))


def _add(a: Usage, b: Usage) -> Usage:
    return replace(
        a,
        requests=a.requests + b.requests,
        prompt_tokens=a.prompt_tokens + b.prompt_tokens,
        completion_tokens=a.completion_tokens + b.completion_tokens,
        cost_usd=a.cost_usd + b.cost_usd,
    )
