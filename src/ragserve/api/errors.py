"""One table from error classes to HTTP status codes, and the JSON error body."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ragserve.errors import (
    AuthenticationError,
    BudgetExceededError,
    ConfigurationError,
    DeadlineExceededError,
    DependencyError,
    InvalidInputError,
    MaintenanceError,
    NotFoundError,
    ParseError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RagserveError,
    RateLimitedError,
    UnsupportedMediaError,
)
from ragserve.observability.metrics import get_metrics
from ragserve.types import NAME_PATTERN, NON_BLANK

log = logging.getLogger(__name__)

MAINTENANCE_RETRY_AFTER_S = 60

# Most specific first: the first class an error is an instance of decides.
STATUS_BY_ERROR: tuple[tuple[type[RagserveError], int], ...] = (
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (RateLimitedError, 429),
    (BudgetExceededError, 402),
    (PayloadTooLargeError, 413),
    (UnsupportedMediaError, 415),
    (InvalidInputError, 400),
    (NotFoundError, 404),
    (ParseError, 422),  # content we accept the format of but could not read (an upload's every file)
    (DeadlineExceededError, 504),
    (MaintenanceError, 503),
    (DependencyError, 503),
    (ConfigurationError, 500),
)


def status_for(exc: RagserveError) -> int:
    return next((status for cls, status in STATUS_BY_ERROR if isinstance(exc, cls)), 500)


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def error_response(
    status: int, type_: str, message: str, request_id: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    get_metrics().errors.labels(type=type_).inc()
    return JSONResponse(
        {"error": {"type": type_, "message": message, "request_id": request_id}},
        status_code=status,
        headers={**(headers or {}), **({"X-Request-ID": request_id} if request_id else {})},
    )


def _field(loc: tuple[int | str, ...]) -> str:
    # Only the first element says where the value came from; later ones are field names,
    # and a body field may itself be called "query" or "body".
    if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
        loc = loc[1:]
    return ".".join(str(p) for p in loc) or "body"


async def _ragserve_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RagserveError)
    status = status_for(exc)
    if status >= 500 and not isinstance(exc, MaintenanceError):
        log.error("request failed: %s", exc.message)
    return error_response(status, exc.type, exc.message, request_id_of(request), _headers_for(exc))


def _headers_for(exc: RagserveError) -> dict[str, str] | None:
    if isinstance(exc, MaintenanceError):
        return {"Retry-After": str(MAINTENANCE_RETRY_AFTER_S)}
    if isinstance(exc, RateLimitedError):
        return {**exc.headers, "Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    if isinstance(exc, AuthenticationError):
        # RFC 6750: a 401 names the scheme the client should use.
        return {"WWW-Authenticate": 'Bearer realm="ragserve"'}
    return None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            problems.append(f"body is not valid JSON: {err.get('ctx', {}).get('error', err['msg'])}")
        else:
            problems.append(f"{_field(tuple(err['loc']))}: {_explain(err)}")
    return error_response(422, "validation_error", "; ".join(problems), request_id_of(request))


# Pydantic says "String should match pattern '…'"; say what the pattern means instead.
PATTERN_MEANINGS = {
    NAME_PATTERN: "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
    NON_BLANK: "must not be blank",
}


def _explain(err: Mapping[str, Any]) -> str:
    if err.get("type") == "string_pattern_mismatch":
        meaning = PATTERN_MEANINGS.get(err.get("ctx", {}).get("pattern", ""))
        if meaning:
            return f"{meaning}, got {err.get('input')!r}"
    return str(err["msg"])


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        # The framework's words for bytes that are not JSON (or not UTF-8, or a broken multipart).
        message = "body: could not be parsed as its content type (JSON bodies must be UTF-8 JSON)"
        return error_response(422, "validation_error", message, request_id_of(request))
    kinds = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the first route on this path; a path may have one route per method.
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return error_response(
        exc.status_code, kinds.get(exc.status_code, "http_error"), str(exc.detail), request_id_of(request), headers
    )


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error")
    return error_response(500, "internal_error", "internal error; see the server log", request_id_of(request))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RagserveError, _ragserve_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
