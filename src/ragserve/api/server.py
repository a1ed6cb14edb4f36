"""Running the API: one uvicorn process, or gunicorn managing several uvicorn workers.

Under gunicorn every worker builds its own app with `create_app()` from the environment
(the master loads no model), and Prometheus multiprocess mode makes `/metrics` report
all workers whichever one answers the scrape.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
import warnings
from typing import Any

from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from ragserve.observability.metrics import prepare_multiprocess_dir
from ragserve.settings import Settings

with warnings.catch_warnings():
    # uvicorn points to the separate `uvicorn-worker` package, which holds the same class; we
    # keep to what is installed and subclass it, so the warning would only be noise.
    warnings.simplefilter("ignore", DeprecationWarning)
    from uvicorn.workers import UvicornWorker

# Several workers may each take a while to load the model before their first heartbeat.
WORKER_TIMEOUT_S = 120
# uvicorn's own default: gunicorn's 2 s drops idle keep-alive connections sooner than clients reuse them.
KEEPALIVE_S = 5


def fast_loop_and_http() -> dict[str, str]:
    """uvloop and httptools when installed; uvicorn's portable choices otherwise."""
    return {
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
    }


class RagserveUvicornWorker(UvicornWorker):
    """A gunicorn worker running uvicorn on uvloop + httptools, without uvicorn's access log (ours replaces it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.CONFIG_KWARGS = {**fast_loop_and_http(), "access_log": False}
        super().__init__(*args, **kwargs)


class StructlogGunicornLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's own messages go to the root logger, where `configure_logging` formats everything alike."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            log.handlers.clear()
        self.error_log.propagate = True


class GunicornServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from ragserve.api.app import create_app

        return create_app()


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def gunicorn_options(settings: Settings, host: str, port: int, workers: int) -> dict[str, Any]:
    bind_host = f"[{host}]" if ":" in host else host
    return {
        "bind": f"{bind_host}:{port}",
        "workers": workers,
        "worker_class": RagserveUvicornWorker,
        "graceful_timeout": math.ceil(settings.graceful_timeout_s),
        "timeout": WORKER_TIMEOUT_S,
        "keepalive": KEEPALIVE_S,
        "preload_app": False,
        "proc_name": "ragserve",
        "logger_class": StructlogGunicornLogger,
        "loglevel": settings.log_level,
        "errorlog": "-",
        "accesslog": None,
        # The control socket defaults to one path per user, which two instances on a host would share.
        "control_socket_disable": True,
        "child_exit": _child_exit,
    }


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """Serve until stopped (SIGTERM/SIGINT stop gracefully, waiting up to `graceful_timeout_s`)."""
    if workers <= 1:
        import uvicorn

        from ragserve.api.app import create_app

        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=math.ceil(settings.graceful_timeout_s),
            **fast_loop_and_http(),  # type: ignore[arg-type]
        )
        return
    created = prepare_multiprocess_dir()
    try:
        GunicornServer(gunicorn_options(settings, host, port, workers)).run()
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
