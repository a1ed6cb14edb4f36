"""Keeping a request alive when its dependencies are not: circuit breakers, request deadlines, retries.

- `breaker.CircuitBreaker` fails fast while a dependency keeps failing and probes it back to health;
  `breaker.BreakerRegistry` holds one per dependency for metrics and `/status`.
- `deadline.Deadline` is a request's time budget; `deadline_scope` / `current_deadline` carry it to deep code.
- `retry.retry_async` retries transient dependency errors with full-jitter backoff, inside the deadline.
"""
