"""Structured logging: secrets redacted, queries hashed unless asked, one format for every logger."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from ragserve.observability.logging import REDACTED, configure_logging, query_fields, redact_secrets
from ragserve.settings import Settings


def redact(**event: Any) -> dict[str, Any]:
    return dict(redact_secrets(None, "info", event))


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_secret_keys_are_redacted() -> None:
    event = redact(
        event="calling provider",
        authorization="Bearer abc.def",
        Authorization="Basic dXNlcjpwdw==",
        api_key="sk-123",
        apiKey="sk-456",
        password="hunter2",
        client_secret="s3",
        admin_key="k",
        refresh_token="r",
        token="t",
        **{"x-api-key": "k2"},
    )
    assert event == {
        "event": "calling provider",
        "authorization": REDACTED,
        "Authorization": REDACTED,
        "api_key": REDACTED,
        "apiKey": REDACTED,
        "password": REDACTED,
        "client_secret": REDACTED,
        "admin_key": REDACTED,
        "refresh_token": REDACTED,
        "token": REDACTED,
        "x-api-key": REDACTED,
    }


def test_usage_counts_and_ordinary_fields_are_kept() -> None:
    event = redact(event="answered", tokens=12, prompt_tokens=10, max_tokens=256, tokenizer="bert", keys=3, status=200)
    assert event == {
        "event": "answered",
        "tokens": 12,
        "prompt_tokens": 10,
        "max_tokens": 256,
        "tokenizer": "bert",
        "keys": 3,
        "status": 200,
    }


def test_bearer_credentials_inside_text_and_nested_values_are_redacted() -> None:
    event = redact(
        event="upstream said: header was Bearer eyJhbGciOi.payload.sig, retrying",
        headers={"Authorization": "Bearer abc", "accept": "application/json"},
        attempts=[{"password": "p"}, "bearer xyz"],
    )
    assert event["event"] == f"upstream said: header was Bearer {REDACTED}, retrying"
    assert event["headers"] == {"Authorization": REDACTED, "accept": "application/json"}
    assert event["attempts"] == [{"password": REDACTED}, f"bearer {REDACTED}"]


def test_query_fields_hash_the_query_unless_logging_queries_is_on() -> None:
    query = "What is the refund policy for order 1234?"
    digest = hashlib.sha256(query.encode()).hexdigest()[:16]
    assert query_fields(query, Settings()) == {"query_hash": digest}
    assert query_fields(query, Settings(log_queries=True)) == {"query_hash": digest, "query": query}


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_from_structlog_and_stdlib_loggers(restore_root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(Settings(log_format="json"), stream=stream)
    configure_logging(Settings(log_format="json"), stream=stream)  # twice: still one line per event

    structlog.stdlib.get_logger("ragserve.test").info("hello", api_key="sk-1", items=3)
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    logging.getLogger("ragserve.some.module").warning("token was Bearer abc123")
    logging.getLogger("uvicorn.access").info("GET / 200")  # replaced by our access log
    logging.getLogger("ragserve.test").debug("below the level")

    lines = json_lines(stream)
    assert [line["event"] for line in lines] == [
        "hello",
        "Started server process [42]",
        f"token was Bearer {REDACTED}",
    ]
    assert [line["level"] for line in lines] == ["info", "info", "warning"]
    assert lines[0]["api_key"] == REDACTED and lines[0]["items"] == 3
    assert lines[1]["logger"] == "uvicorn.error"
    for line in lines:
        assert line["timestamp"].endswith("Z")


def test_production_defaults_to_json_and_development_to_console(restore_root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(Settings(env="production", log_format="auto", auth_mode="api_key"), stream=stream)
    logging.getLogger("ragserve.test").info("in production")
    assert json_lines(stream)[0]["event"] == "in production"

    stream = io.StringIO()
    configure_logging(Settings(env="development", log_format="auto", log_level="debug"), stream=stream)
    logging.getLogger("ragserve.test").debug("in development")
    text = stream.getvalue()
    assert "in development" in text
    assert not text.lstrip().startswith("{")


def test_tracebacks_are_plain_text_and_redacted(restore_root_logging: None) -> None:
    for log_format in ("json", "console"):
        stream = io.StringIO()
        configure_logging(Settings(log_format=log_format), stream=stream)
        try:
            local_secret = "sk-live-do-not-print"
            raise ValueError(f"upstream refused Bearer abc.def ({len(local_secret)})")
        except ValueError:
            logging.getLogger("ragserve.test").exception("call failed")
        text = stream.getvalue()
        assert "ValueError: upstream refused Bearer [REDACTED]" in text, log_format
        assert "abc.def" not in text and "sk-live-do-not-print" not in text, log_format
