"""One error root for the whole library.

    RagserveError
    ├── ConfigurationError          settings are missing, ambiguous or unsafe
    ├── InvalidInputError           the caller sent something unusable (-> 4xx)
    │   ├── PayloadTooLargeError    a body, file or text is over its limit
    │   └── UnsupportedMediaError   a file type we cannot parse
    ├── NotFoundError               a document or collection does not exist in this scope
    ├── ParseError                  one file could not be turned into text (fails alone)
    ├── DependencyError             a part we rely on failed (retryable)
    │   ├── EmbedderError
    │   ├── StoreError
    │   ├── CacheError
    │   ├── CircuitOpenError        a breaker is open: failing fast, nothing was called
    │   └── LLMError                a model provider failed
    │       ├── LLMTimeoutError
    │       ├── LLMRateLimitedError     carries `retry_after` (seconds) when the provider said
    │       ├── LLMUnavailableError     5xx, connection refused or reset, a stream that broke
    │       ├── LLMBadRequestError      the provider refused the request (not retryable)
    │       └── ContextTooLongError     the prompt does not fit the model (not retryable)
    ├── MaintenanceError            the operator switched the service to maintenance
    ├── DeadlineExceededError       the request ran out of time
    ├── AuthenticationError         no valid credentials (401)
    ├── PermissionDeniedError       valid credentials, not allowed this (403)
    ├── RateLimitedError            over a request or token rate (429, Retry-After)
    └── BudgetExceededError         a monthly budget is spent (402)

The HTTP layer maps these classes to status codes in one table; the core never
knows about HTTP.
"""

from __future__ import annotations


class RagserveError(Exception):
    """Base of every error ragserve raises on purpose."""

    type: str = "internal_error"
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(RagserveError):
    type = "configuration_error"


class InvalidInputError(RagserveError):
    type = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PayloadTooLargeError(InvalidInputError):
    type = "payload_too_large"


class UnsupportedMediaError(InvalidInputError):
    type = "unsupported_media_type"


class NotFoundError(RagserveError):
    type = "not_found"


class ParseError(RagserveError):
    type = "parse_error"


class DependencyError(RagserveError):
    type = "dependency_unavailable"
    retryable = True


class EmbedderError(DependencyError):
    type = "embedder_unavailable"


class StoreError(DependencyError):
    type = "store_unavailable"


class CacheError(DependencyError):
    type = "cache_unavailable"


class CircuitOpenError(DependencyError):
    type = "circuit_open"

    def __init__(self, dependency: str, retry_in: float | None = None) -> None:
        super().__init__(f"{dependency} is failing; its circuit breaker is open")
        self.dependency = dependency
        self.retry_in = retry_in


class LLMError(DependencyError):
    """A model provider failed. `provider` names the configured provider."""

    type = "llm_unavailable"

    def __init__(self, message: str, *, provider: str | None = None) -> None:
        super().__init__(message)
        self.provider = provider


class LLMTimeoutError(LLMError):
    type = "llm_timeout"


class LLMRateLimitedError(LLMError):
    type = "llm_rate_limited"

    def __init__(self, message: str, *, provider: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, provider=provider)
        self.retry_after = retry_after


class LLMUnavailableError(LLMError):
    type = "llm_unavailable"


class LLMBadRequestError(LLMError):
    type = "llm_bad_request"
    retryable = False


class ContextTooLongError(LLMBadRequestError):
    type = "llm_context_too_long"


class MaintenanceError(RagserveError):
    type = "maintenance"
    retryable = True


class DeadlineExceededError(RagserveError):
    """`stage` names the step that found the budget spent (`retrieve`, `generate`, ...), when known."""

    type = "deadline_exceeded"
    retryable = True

    def __init__(self, message: str, *, stage: str | None = None) -> None:
        super().__init__(message)
        self.stage = stage


class AuthenticationError(RagserveError):
    """No credentials, or credentials that are malformed, unknown, expired or revoked (401).

    `reason` is a bounded word for metrics: missing, malformed, unknown, expired, revoked, invalid.
    """

    type = "unauthenticated"

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class PermissionDeniedError(RagserveError):
    """Valid credentials without the scope or collection the call needs (403)."""

    type = "forbidden"


class RateLimitedError(RagserveError):
    """Too many requests or tokens for a key or tenant; `retry_after_s` says when to come back (429)."""

    type = "rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after_s: float, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.headers = headers or {}  # X-RateLimit-* for the refusal


class BudgetExceededError(RagserveError):
    """The monthly token or cost budget of a tenant or key is spent (402)."""

    type = "budget_exceeded"
