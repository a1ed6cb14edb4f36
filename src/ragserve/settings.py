"""Typed settings, read from `RAGSERVE_*` environment variables and a `.env` file.

Nothing here is built at import time: callers construct `Settings()` when they need it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragserve.errors import ConfigurationError
from ragserve.types import SearchMode


class ProviderSettings(BaseModel):
    """One entry of `RAGSERVE_LLM_PROVIDERS`, in fallback order."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    kind: Literal["openai", "anthropic", "extractive"]
    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str | None = None
    weight: float = Field(default=1.0, ge=0)
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_context_tokens: int = Field(default=8192, ge=512)
    max_tokens: int = Field(default=512, ge=1, le=32768)

    @model_validator(mode="after")
    def _complete(self) -> ProviderSettings:
        if self.kind != "extractive" and not self.model:
            raise ValueError(f"provider {self.name!r}: a {self.kind} provider needs a model")
        if self.kind == "anthropic" and self.api_key is None:
            raise ValueError(f"provider {self.name!r}: an anthropic provider needs an api_key")
        return self


class ModelPrice(BaseModel):
    """Dollars per million tokens."""

    model_config = ConfigDict(extra="forbid")

    prompt: float = Field(ge=0)
    completion: float = Field(ge=0)


class BudgetSettings(BaseModel):
    """A monthly allowance (UTC calendar month); None: unlimited."""

    model_config = ConfigDict(extra="forbid")

    tokens: int | None = Field(default=None, ge=0)
    usd: float | None = Field(default=None, ge=0)


AuthMode = Literal["none", "api_key", "jwt", "api_key+jwt"]

PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "sk-...", "your-key", "xxx", "test"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAGSERVE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("./data")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    default_tenant: str = Field(default="default", min_length=1, max_length=128)
    default_collection: str = Field(default="default", min_length=1, max_length=128)
    vector_store: Literal["embedded", "qdrant"] = "embedded"
    # Qdrant (vector_store=qdrant): a server URL, ":memory:", or a local path (Qdrant's embedded mode).
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_collection_prefix: str = Field(default="ragserve", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    qdrant_shards: int = Field(default=1, ge=1, le=1024)  # for collections created from now on
    qdrant_replication: int = Field(default=1, ge=1, le=16)
    request_timeout_s: float = Field(default=30.0, gt=0, le=600)

    embed_backend: Literal["auto", "torch", "onnx", "onnx-int8"] = "auto"
    embed_device: str | None = None
    embed_batch_size: int = Field(default=32, ge=1, le=1024)
    embed_threads: int | None = Field(default=None, ge=1, le=256)

    chunk_tokens: int = Field(default=200, ge=16, le=254)
    chunk_overlap: int = Field(default=32, ge=0, le=127)

    search_mode: SearchMode = "hybrid"
    top_k: int = Field(default=5, ge=1, le=100)
    rrf_k: float = Field(default=60.0, gt=0)
    dense_weight: float = Field(default=1.0, ge=0)
    keyword_weight: float = Field(default=1.0, ge=0)
    candidates: int = Field(default=100, ge=1, le=1000)
    mmr_lambda: float | None = Field(default=None, ge=0, le=1)

    hnsw_m: int = Field(default=16, ge=4, le=128)
    hnsw_ef_construction: int = Field(default=100, ge=16, le=2000)
    hnsw_ef_search: int = Field(default=100, ge=10, le=2000)

    max_request_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_query_chars: int = Field(default=4000, ge=16)

    # Uploads: per file, per request, and the size up to which an upload is ingested inline.
    max_upload_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    max_file_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    upload_inline_bytes: int = Field(default=1024 * 1024, ge=0)
    job_workers: int = Field(default=1, ge=1, le=32)
    # With a queue URL (redis://…), ingestion jobs go to Celery workers (`ragserve worker`);
    # without one, each API process runs them itself.
    queue_url: str | None = None
    job_max_retries: int = Field(default=3, ge=0, le=20)
    job_stale_s: float = Field(default=30.0, ge=3, le=3600)  # a running job silent this long is re-queued
    job_time_limit_s: float = Field(default=1800.0, gt=0, le=86400)
    job_parse_timeout_s: float = Field(default=120.0, gt=0, le=3600)  # per file of a job

    workers: int = Field(default=1, ge=1, le=64)
    graceful_timeout_s: float = Field(default=30.0, gt=0, le=600)
    warmup: bool = True

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"  # auto: console in development, JSON in production
    log_queries: bool = False

    # Generation: providers in fallback order (JSON); the chain always ends in the extractive answerer.
    llm_providers: list[ProviderSettings] = Field(
        default_factory=lambda: [ProviderSettings(name="extractive", kind="extractive")]
    )
    llm_prices: dict[str, ModelPrice] = Field(default_factory=dict)  # model -> $ per 1M tokens
    llm_retries: int = Field(default=1, ge=0, le=5)  # extra attempts per provider on retryable errors
    max_request_timeout_s: float = Field(default=120.0, gt=0, le=3600)  # cap for a request's own timeout_s
    breaker_failure_threshold: int = Field(default=5, ge=1, le=1000)
    breaker_reset_s: float = Field(default=30.0, gt=0, le=3600)
    breaker_success_threshold: int = Field(default=2, ge=1, le=100)
    maintenance: bool = False  # or create `<data_dir>/MAINTENANCE`: every process sharing it follows

    # Caches: in-process by default; with a Redis URL, Redis is shared L2 under the in-process L1.
    redis_url: str | None = None  # redis://host:6379/0, rediss://…, or redis+cluster://host:7000
    cache_ttl_s: float = Field(default=3600.0, gt=0)  # answers and retrievals
    cache_timeout_ms: float = Field(default=20.0, gt=0, le=10_000)  # a slower cache is treated as down
    cache_l1_entries: int = Field(default=10_000, ge=0)
    cache_l1_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    semantic_cache: bool = True
    semantic_threshold: float = Field(default=0.90, gt=0, le=1)
    cache_warmup_queries: int = Field(default=0, ge=0, le=1000)  # replay the N most asked questions at start

    # Security. `none` is for development only: refused when env=production.
    auth_mode: AuthMode = "none"
    admin_api_key: SecretStr | None = None  # bootstrap key with the admin scope over every tenant
    api_key_pepper: SecretStr | None = None  # HMAC key for stored API key digests
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["RS256"])
    jwt_secret: SecretStr | None = None  # HS256/384/512
    jwt_public_key_file: Path | None = None  # PEM, for RS*/ES*/PS*
    jwt_jwks_file: Path | None = None  # a JWKS document; keys picked by `kid`, re-read when it changes
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_s: float = Field(default=30.0, ge=0, le=300)
    jwt_tenant_claim: str = "tenant"
    jwt_scopes_claim: str = "scope"
    jwt_collections_claim: str = "collections"
    database_url: str | None = None  # postgresql://user:pass@host/db; default: SQLite in data_dir
    # Rate limits (0: none). Per API key / token subject and per tenant; shared through Redis when configured.
    rate_limit_key_rpm: int = Field(default=0, ge=0)
    rate_limit_tenant_rpm: int = Field(default=0, ge=0)
    rate_limit_key_tpm: int = Field(default=0, ge=0)  # LLM tokens per minute, a token bucket
    rate_limit_tenant_tpm: int = Field(default=0, ge=0)
    rate_limit_token_burst: float = Field(default=1.0, ge=1.0, le=100.0)  # bucket size, in minutes of tokens
    rate_limit_fail_open: bool = True  # when Redis cannot be asked: admit (default) or refuse
    # Measured on the event loop's clock, so a loop busy embedding counts against Redis: not too tight.
    rate_limit_timeout_ms: float = Field(default=100.0, gt=0, le=10_000)
    # Monthly budgets: the default for every tenant, per-tenant overrides, and the default per key.
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    tenant_budgets: dict[str, BudgetSettings] = Field(default_factory=dict)
    key_budget: BudgetSettings = Field(default_factory=BudgetSettings)
    # Prompt-injection guard: for questions, flag (log and count), sanitise, or reject (400);
    # for retrieved chunks, fence them as untrusted data or drop them.
    guard_query_action: Literal["off", "flag", "sanitise", "reject"] = "flag"
    guard_context_action: Literal["off", "fence", "drop"] = "fence"
    cors_origins: list[str] = Field(default_factory=list)  # exact origins; empty: CORS off

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.chunk_overlap * 2 >= self.chunk_tokens:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be less than half of chunk_tokens ({self.chunk_tokens})"
            )
        if self.dense_weight == 0 and self.keyword_weight == 0:
            raise ValueError("dense_weight and keyword_weight cannot both be 0")
        names = [p.name for p in self.llm_providers]
        if len(set(names)) != len(names):
            raise ValueError(f"llm_providers: names must be unique, got {names}")
        if self.request_timeout_s > self.max_request_timeout_s:
            raise ValueError("request_timeout_s must not exceed max_request_timeout_s")
        self._check_security()
        if self.env == "production":
            for provider in self.llm_providers:
                key = provider.api_key.get_secret_value() if provider.api_key else None
                if key is not None and key.strip().lower() in PLACEHOLDER_SECRETS:
                    raise ValueError(f"llm_providers: provider {provider.name!r} has a placeholder api_key")
        return self

    def _check_security(self) -> None:
        if self.env == "production" and self.auth_mode == "none":
            raise ValueError(
                "auth_mode=none is for development only; in production set RAGSERVE_AUTH_MODE to "
                "api_key, jwt or api_key+jwt"
            )
        if self.admin_api_key is not None and len(self.admin_api_key.get_secret_value()) < 32:
            raise ValueError("admin_api_key must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        if "jwt" in self.auth_mode and not (self.jwt_secret or self.jwt_public_key_file or self.jwt_jwks_file):
            raise ValueError("auth_mode uses jwt: set jwt_secret, jwt_public_key_file or jwt_jwks_file")
        if "*" in self.cors_origins:
            raise ValueError("cors_origins: list the exact origins; '*' would let any site call the API")


_SECRET_NAME = re.compile(r"(^|_)(key|secret|password|token)$", re.IGNORECASE)


def public_summary(settings: Settings) -> dict[str, Any]:
    """Every setting, safe to show: secrets masked, passwords cut out of URLs."""
    summary: dict[str, Any] = {}
    for name, value in settings.model_dump(mode="json").items():
        raw = getattr(settings, name)
        if isinstance(raw, SecretStr):
            value = "***" if raw.get_secret_value() else None
        elif isinstance(value, str) and name.endswith("_url"):
            value = re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", value)
        elif value and _SECRET_NAME.search(name):
            value = "***"
        summary[name] = value
    return summary


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one readable message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"RAGSERVE_{'_'.join(str(p) for p in err['loc']).upper() or 'SETTINGS'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from exc
