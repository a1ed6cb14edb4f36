"""One error root for the whole library.

    RagserveError
    ├── ConfigurationError          settings are missing, ambiguous or unsafe
    ├── InvalidInputError           the caller sent something unusable (-> 4xx)
    │   ├── PayloadTooLargeError    a body, file or text is over its limit
    │   └── UnsupportedMediaError   a file type we cannot parse
    ├── NotFoundError               a document or collection does not exist in this scope
    ├── ParseError                  one file could not be turned into text (fails alone)
    ├── DependencyError             a part we rely on failed
    │   ├── EmbedderError
    │   └── StoreError
    └── DeadlineExceededError       the request ran out of time

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


class DeadlineExceededError(RagserveError):
    type = "deadline_exceeded"
    retryable = True
