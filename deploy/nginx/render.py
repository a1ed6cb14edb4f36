"""Render deploy/nginx/nginx.conf.template: one template for compose and for tests.

    python deploy/nginx/render.py            # rewrite deploy/nginx/nginx.conf (the compose config)
    python deploy/nginx/render.py --check    # exit 1 if deploy/nginx/nginx.conf is not up to date

`render_nginx_conf(["127.0.0.1:8001", "127.0.0.1:8002"], listen=8080, runtime_dir=tmp)` gives
the same configuration pointed at local replicas, with pid, logs and temp files under `tmp`.
Standard library only, so it runs without the project's virtual environment.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "nginx.conf.template"
COMPOSE_CONF = HERE / "nginx.conf"

# ragserve's defaults (src/ragserve/settings.py: max_request_bytes, max_upload_bytes);
# tests/deploy checks that they still match.
DEFAULT_MAX_REQUEST_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_UPLOAD_BYTES = 100 * 1024 * 1024

# The compose services of deploy/compose.yaml, and what nginx listens on there
# (nginxinc/nginx-unprivileged runs as uid 101 and cannot bind below 1024).
COMPOSE_UPSTREAMS = ["api-1:8000", "api-2:8000"]
COMPOSE_LISTEN = 8080

_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$")


def render_nginx_conf(
    upstreams: list[str],
    listen: int,
    *,
    runtime_dir: str | Path | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_fails: int = 3,
    fail_timeout_s: int = 10,
    next_upstream_tries: int | None = None,
    generated_note: str = "Rendered by deploy/nginx/render.py from nginx.conf.template: edit the template.",
) -> str:
    """The nginx configuration for `upstreams` ("host:port" each), listening on `listen`.

    `runtime_dir`: where the pid file, logs and temp files go (None: /tmp, logs to the
    container's stdout/stderr). `next_upstream_tries` defaults to one try per replica, at most 3.
    """
    if not upstreams:
        raise ValueError("at least one upstream is needed")
    for upstream in upstreams:
        if not _HOST_PORT.match(upstream):
            raise ValueError(f"upstream {upstream!r}: expected host:port")
    if not 1 <= listen <= 65535:
        raise ValueError(f"listen port {listen} out of range")
    if runtime_dir is None:
        pid, error_log, access_log, temp = "/tmp/nginx.pid", "/dev/stderr", "/dev/stdout", "/tmp"
    else:
        root = Path(runtime_dir)
        pid, error_log, access_log, temp = (
            str(root / "nginx.pid"),
            str(root / "error.log"),
            str(root / "access.log"),
            str(root / "temp"),
        )
    tries = next_upstream_tries if next_upstream_tries is not None else min(len(upstreams), 3)
    values = {
        "GENERATED_NOTE": generated_note,
        "PID_PATH": pid,
        "ERROR_LOG": error_log,
        "ACCESS_LOG": access_log,
        "TEMP_DIR": temp,
        "LISTEN": str(listen),
        "MAX_REQUEST_BYTES": str(max_request_bytes),
        "MAX_UPLOAD_BYTES": str(max_upload_bytes),
        "NEXT_UPSTREAM_TRIES": str(tries),
        "UPSTREAMS": "\n".join(
            f"        server {upstream} max_fails={max_fails} fail_timeout={fail_timeout_s}s;" for upstream in upstreams
        ),
    }
    template = TEMPLATE.read_text(encoding="utf-8")
    missing = set(_PLACEHOLDER.findall(template)) - set(values)
    if missing:
        raise ValueError(f"template placeholders without a value: {sorted(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def render_compose_conf() -> str:
    """What deploy/nginx/nginx.conf (mounted by deploy/compose.yaml) must contain."""
    return render_nginx_conf(COMPOSE_UPSTREAMS, COMPOSE_LISTEN)


def main(argv: list[str]) -> int:
    wanted = render_compose_conf()
    if "--check" in argv:
        current = COMPOSE_CONF.read_text(encoding="utf-8") if COMPOSE_CONF.exists() else ""
        if current != wanted:
            print(f"{COMPOSE_CONF} is out of date: run python deploy/nginx/render.py", file=sys.stderr)
            return 1
        return 0
    COMPOSE_CONF.write_text(wanted, encoding="utf-8")
    print(f"wrote {COMPOSE_CONF}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
