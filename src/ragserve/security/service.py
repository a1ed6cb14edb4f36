"""The security parts a server needs, built from settings and closed together."""

from __future__ import annotations

from dataclasses import dataclass

from ragserve.ratelimit import build_rate_limiter
from ragserve.ratelimit.base import RateLimiter
from ragserve.relational.database import Database
from ragserve.resilience.breaker import BreakerRegistry
from ragserve.security.auth import Authenticator
from ragserve.security.gate import Gate
from ragserve.security.keys import ApiKeys
from ragserve.security.usage import UsageLedger
from ragserve.settings import Settings


@dataclass(slots=True)
class Security:
    db: Database
    keys: ApiKeys
    authenticator: Authenticator
    gate: Gate
    limiter: RateLimiter

    @classmethod
    def from_settings(cls, settings: Settings, breakers: BreakerRegistry) -> Security:
        db = Database.open(settings.database_url, settings.data_dir)
        authenticator = Authenticator.from_settings(settings, db)
        limiter = build_rate_limiter(
            settings.redis_url,
            timeout_ms=settings.rate_limit_timeout_ms,
            fail_open=settings.rate_limit_fail_open,
            breaker=breakers.get("ratelimit"),
        )
        gate = Gate.from_settings(settings, UsageLedger(db), limiter)
        return cls(db, authenticator.keys, authenticator, gate, limiter)

    async def aclose(self) -> None:
        await self.gate.aclose()
        await self.limiter.aclose()
        self.db.close()
