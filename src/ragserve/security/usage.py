"""The usage ledger: requests, tokens and dollars per tenant, per caller and per month.

Each answered request adds to two rows of the `usage` table in one statement each: the
caller's (`key_id` = the API key id or "jwt:<subject>") and the tenant's total (`key_id` "").
Budgets are read from the same rows before a request is admitted, so a tenant that has spent
its budget is refused on its next request: at most the requests already in flight overshoot.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ragserve.errors import BudgetExceededError
from ragserve.relational.database import Database, usage

TENANT_TOTAL = ""


def current_month(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m")


@dataclass(frozen=True, slots=True)
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens": self.tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


@dataclass(frozen=True, slots=True)
class Budget:
    """A monthly allowance; None: unlimited."""

    tokens: int | None = None
    usd: float | None = None

    def check(self, spent: Usage, whose: str) -> None:
        if self.tokens is not None and spent.tokens >= self.tokens:
            raise BudgetExceededError(
                f"monthly token budget of {whose} is spent ({spent.tokens} of {self.tokens} tokens); "
                "it renews on the 1st (UTC) or when an administrator raises it"
            )
        if self.usd is not None and spent.cost_usd >= self.usd:
            raise BudgetExceededError(
                f"monthly cost budget of {whose} is spent (${spent.cost_usd:.4f} of ${self.usd:.2f}); "
                "it renews on the 1st (UTC) or when an administrator raises it"
            )

    @property
    def unlimited(self) -> bool:
        return self.tokens is None and self.usd is None


class UsageLedger:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, tenant: str, key_id: str, month: str, spent: Usage) -> None:
        """Add `spent` to the caller's row and to the tenant's total for `month`."""
        insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert

        def run(conn: Connection) -> None:
            for who in dict.fromkeys((key_id, TENANT_TOTAL)):
                statement = insert(usage).values(
                    tenant=tenant,
                    key_id=who,
                    month=month,
                    requests=spent.requests,
                    prompt_tokens=spent.prompt_tokens,
                    completion_tokens=spent.completion_tokens,
                    cost_usd=spent.cost_usd,
                )
                added = statement.excluded
                conn.execute(
                    statement.on_conflict_do_update(
                        index_elements=[usage.c.tenant, usage.c.key_id, usage.c.month],
                        set_={
                            "requests": usage.c.requests + added.requests,
                            "prompt_tokens": usage.c.prompt_tokens + added.prompt_tokens,
                            "completion_tokens": usage.c.completion_tokens + added.completion_tokens,
                            "cost_usd": usage.c.cost_usd + added.cost_usd,
                        },
                    )
                )

        await self.db.run(run)

    async def month(self, tenant: str, month: str | None = None) -> dict[str, Usage]:
        """This month's usage of `tenant` by caller; the tenant's total under ""."""
        chosen = month or current_month()

        def run(conn: Connection) -> dict[str, Usage]:
            rows = conn.execute(select(usage).where(usage.c.tenant == tenant, usage.c.month == chosen))
            return {row.key_id: _usage(row) for row in rows}

        return await self.db.run(run)

    async def spent(self, tenant: str, key_id: str) -> tuple[Usage, Usage]:
        """(the tenant's total, the caller's) for this month, in one read."""
        month = current_month()

        def run(conn: Connection) -> tuple[Usage, Usage]:
            rows = conn.execute(
                select(usage).where(
                    usage.c.tenant == tenant, usage.c.month == month, usage.c.key_id.in_([TENANT_TOTAL, key_id])
                )
            )
            found = {row.key_id: _usage(row) for row in rows}
            return found.get(TENANT_TOTAL, Usage()), found.get(key_id, Usage())

        return await self.db.run(run)


def _usage(row: object) -> Usage:
    return Usage(
        requests=int(row.requests),  # type: ignore[attr-defined]
        prompt_tokens=int(row.prompt_tokens),  # type: ignore[attr-defined]
        completion_tokens=int(row.completion_tokens),  # type: ignore[attr-defined]
        cost_usd=float(row.cost_usd),  # type: ignore[attr-defined]
    )
