"""Operating the service: Prometheus metrics, structured logs, traces.

Nothing here is set up at import time; `get_metrics()`, `configure_logging()` and
`configure_tracing()` do their work when first called.
"""
