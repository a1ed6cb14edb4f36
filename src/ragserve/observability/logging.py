"""Structured logs: one format for ragserve, uvicorn and gunicorn, secrets redacted.

`configure_logging(settings)` routes the standard library's `logging` (which uvicorn,
gunicorn and `logging.getLogger(__name__)` users write to) and structlog through one
handler on the root logger: JSON lines in production (or `RAGSERVE_LOG_FORMAT=json`),
readable console lines otherwise. Calling it again replaces that handler.

Queries are personal data: log them through `query_fields()`, which gives a hash unless
`RAGSERVE_LOG_QUERIES` is on.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from ragserve.settings import Settings

REDACTED = "[REDACTED]"

_SECRET_KEYS = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "api_key",
        "apikey",
        "password",
        "passwd",
        "secret",
        "token",
        "cookie",
        "set_cookie",
        "jwt",
        "credentials",
    }
)
# Suffixes, not substrings: `max_tokens` and `prompt_tokens` are usage counts, not secrets.
_SECRET_SUFFIXES = ("_key", "_secret", "_password", "_token")
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)

# Loggers of the servers we run under; their records go to the root handler like ours.
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "gunicorn", "gunicorn.error")
# Our access log (api/observability.py) replaces these.
_ACCESS_LOGGERS = ("uvicorn.access", "gunicorn.access")


def is_secret_key(key: str) -> bool:
    name = key.lower().replace("-", "_")
    return name in _SECRET_KEYS or name.endswith(_SECRET_SUFFIXES)


def _redact(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", value)
    if depth >= 4:
        return value
    if isinstance(value, MutableMapping):
        return {
            k: REDACTED if isinstance(k, str) and is_secret_key(k) else _redact(v, depth + 1) for k, v in value.items()
        }
    if type(value) in (list, tuple):
        return type(value)(_redact(v, depth + 1) for v in value)
    return value


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: secret-looking keys get `[REDACTED]`; `Bearer ...` credentials inside text too."""
    for key, value in event_dict.items():
        if is_secret_key(key):
            event_dict[key] = REDACTED
        elif not key.startswith("_"):
            event_dict[key] = _redact(value)
    return event_dict


def _drop_formatting_leftovers(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # Record attributes that other formatters set (`message`, `asctime`) or that repeat the
    # event with terminal colours (uvicorn's `color_message`): not extra data worth a field.
    for key in ("message", "asctime", "color_message"):
        event_dict.pop(key, None)
    return event_dict


def query_fields(query: str, settings: Settings) -> dict[str, str]:
    """Log fields for a query: its hash, and its text only when `log_queries` is on."""
    fields = {"query_hash": hashlib.sha256(query.encode("utf-8")).hexdigest()[:16]}
    if settings.log_queries:
        fields["query"] = query
    return fields


def wants_json(settings: Settings) -> bool:
    return settings.log_format == "json" or (settings.log_format == "auto" and settings.env == "production")


class _RagserveHandler(logging.StreamHandler[TextIO]):
    """The root handler we install (configuring again replaces it).

    Without a stream of its own it writes to whatever `sys.stderr` is at the time, so code that
    swaps stderr (test capture, daemonizing) does not leave it writing to a closed file.
    """

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream or sys.stderr)
        self.follows_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self.follows_stderr:
            self.stream = sys.stderr
        super().emit(record)


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Send structlog and stdlib logging through one handler writing to `stream` (stderr by default)."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    target = stream or sys.stderr
    # Tracebacks become plain text (no local variables, which may hold secrets) before redaction runs.
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if wants_json(settings)
        else structlog.dev.ConsoleRenderer(colors=target.isatty())
    )

    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # The stdlib logger decides the level at call time, so cached loggers follow a reconfiguration.
        cache_logger_on_first_use=True,
    )
    handler = _RagserveHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), _drop_formatting_leftovers, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_secrets,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _RagserveHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())

    for name in _SERVER_LOGGERS:
        server_log = logging.getLogger(name)
        server_log.handlers.clear()
        server_log.setLevel(logging.NOTSET)
        server_log.propagate = True
    for name in _ACCESS_LOGGERS:
        access_log = logging.getLogger(name)
        access_log.handlers.clear()
        access_log.propagate = False
        access_log.disabled = True
