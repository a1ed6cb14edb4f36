"""The secrets the tests create, every log line the test suite produces, and a scan of the one for the other.

    from secrets_registry import register
    key = register(r.json()["key"])        # an API key, a JWT, a JWT secret, a provider api_key...

`tests/conftest.py` installs `CaptureHandler` on the root logger for the whole session (and puts it
back before each test if something removed it); `servers.py` registers the log file of every real
server process it starts. At the end of the session the conftest calls `scan()` over all of it:
a registered secret, a whole API key (`rsk_<8 hex>_<43 chars>`) or a three-part JWT in any line
fails the session.

A record is captured as the service's own log handler renders it when that handler is installed
(what production writes: structlog processors, `extra` fields, redaction and all), and otherwise
in full: message, structlog event dict, every `extra` attribute and the traceback.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ragserve.observability.logging import _RagserveHandler

MIN_SECRET_CHARS = 8

# A whole API key: the visible id and the secret after it. The id alone is not a secret.
FULL_API_KEY = re.compile(r"rsk_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")
# header.payload.signature, the header and payload being base64url JSON objects ('{"' is "eyJ").
JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")

_lock = threading.Lock()
_secrets: set[str] = set()
LOG_FILES: list[Path] = []  # server log files to scan at the end of the session


def register(secret: str) -> str:
    """Remember `secret` so that the end-of-session scan looks for it; returns it, for chaining."""
    if len(secret) < MIN_SECRET_CHARS:
        raise ValueError(f"register only real secrets ({MIN_SECRET_CHARS}+ characters): a short one matches anywhere")
    with _lock:
        _secrets.add(secret)
    return secret


def registered() -> frozenset[str]:
    with _lock:
        return frozenset(_secrets)


def register_log_file(path: Path) -> Path:
    with _lock:
        if path not in LOG_FILES:
            LOG_FILES.append(path)
    return path


# ------------------------------------------------------------------ capture


class CaptureHandler(logging.Handler):
    """Keeps every record as one rendered text (`lines`: (origin, text) pairs).

    Not a `_RagserveHandler`, so `configure_logging` (which replaces only its own handler) leaves it be.
    """

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = render(record)
        except Exception as exc:  # a record that cannot be rendered is still kept, raw
            text = f"{record.name} {record.levelname} {record.msg!r} {record.args!r} (render failed: {exc!r})"
        self.lines.append((f"log record {record.name}", text))


_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def render(record: logging.LogRecord) -> str:
    """What the service's root handler writes for `record` when it is installed, else the record in full."""
    service = next((h for h in logging.getLogger().handlers if isinstance(h, _RagserveHandler)), None)
    if service is not None and service.formatter is not None:
        # Its formatter redacts secret-looking fields (`api_key=...`, `Bearer ...`): what it writes is the log.
        return service.formatter.format(record)
    return full_text(record)


def full_text(record: logging.LogRecord) -> str:
    """The record in full: name, level, the message (or structlog's event dict), every extra, the traceback."""
    if isinstance(record.msg, dict):
        message = repr(record.msg)  # a structlog event dict, as `wrap_for_formatter` leaves it
    else:
        try:
            message = record.getMessage()
        except Exception:
            message = f"{record.msg!r} % {record.args!r}"
    extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRIBUTES and not k.startswith("_")}
    text = f"{record.name} {record.levelname} {message}"
    if extras:
        text += f" {extras!r}"
    if record.exc_info and record.exc_info[0] is not None:
        text += "\n" + "".join(traceback.format_exception(*record.exc_info))
    elif record.exc_text:
        text += "\n" + record.exc_text
    if record.stack_info:
        text += "\n" + record.stack_info
    return text


def install(handler: CaptureHandler) -> None:
    """Put `handler` on the root logger unless it is there already."""
    root = logging.getLogger()
    if handler not in root.handlers:
        root.addHandler(handler)


def file_lines(paths: Iterable[Path]) -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            continue
        lines.extend((str(path), line) for line in text.splitlines())
    return lines


# ------------------------------------------------------------------ scan


@dataclass(frozen=True, slots=True)
class Leak:
    origin: str  # "log record <logger>" or the log file's path
    what: str  # "a registered secret", "an API key", "a JWT"
    line: str  # masked: no secret survives in it

    def __str__(self) -> str:
        return f"{self.origin}: {self.what}: {self.line}"


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every registered secret, whole API key and JWT replaced by a placeholder."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, f"[SECRET:{len(secret)} chars]")
    text = FULL_API_KEY.sub(lambda m: m.group(0)[:13] + "[SECRET]", text)
    return JWT_LIKE.sub("eyJ[JWT]", text)


def scan(lines: Iterable[tuple[str, str] | str], secrets: Iterable[str]) -> list[Leak]:
    """Every line holding a registered secret, a whole API key or a JWT, masked; [] when clean."""
    wanted = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)
    leaks: list[Leak] = []
    for entry in lines:
        origin, line = entry if isinstance(entry, tuple) else ("line", entry)
        found = [
            what
            for what, hit in (
                ("a registered secret", any(s in line for s in wanted)),
                ("an API key", FULL_API_KEY.search(line) is not None),
                ("a JWT", JWT_LIKE.search(line) is not None),
            )
            if hit
        ]
        if found:
            leaks.append(Leak(origin, " and ".join(found), mask(line, wanted)))
    return leaks
