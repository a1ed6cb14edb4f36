"""Micro-batching: many concurrent single-item calls served by one blocking batch call.

A model forward pass over 16 short queries costs little more than over one, so under
load it pays to wait a couple of milliseconds and serve everyone who arrived together.

    >>> batcher = MicroBatcher(lambda texts: [t.upper() for t in texts], window_ms=2.0)
    >>> async def main() -> None:
    ...     print(await asyncio.gather(batcher.submit("a"), batcher.submit("b")))  # one call
    ...     await batcher.aclose()
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import anyio.to_thread

from ragserve.errors import DependencyError

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Collects items submitted concurrently and runs ``fn`` once per batch in a worker thread.

    The first item to find the queue empty opens a window of ``window_ms``; the batch goes
    when the window closes or ``max_batch`` items are waiting, whichever comes first.
    ``fn`` takes the items and returns one result per item, in the same order. An exception
    from ``fn`` reaches every caller of that batch; a caller that is cancelled leaves the
    others untouched (its item is dropped if the batch has not started yet).

    At most ``max_concurrency`` batches run at once: on a CPU, a second forward pass in
    parallel only steals cores from the first, while queueing lets the next batch grow.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        *,
        window_ms: float = 2.0,
        max_batch: int = 64,
        max_concurrency: int = 1,
    ) -> None:
        if window_ms < 0 or max_batch < 1 or max_concurrency < 1:
            raise ValueError("window_ms must be >= 0, max_batch and max_concurrency >= 1")
        self._fn = fn
        self._window_s = window_ms / 1000.0
        self._max_batch = max_batch
        self._max_concurrency = max_concurrency
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._due = False  # the oldest pending item has waited its window out
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False
        self.batches_run = 0

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its result."""
        if self._closed:
            raise DependencyError("the micro-batcher is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self._max_batch:
            self._due = True
            self._dispatch()
        elif self._timer is None and not self._due:
            self._timer = loop.call_later(self._window_s, self._on_window_closed)
        return await future

    async def aclose(self) -> None:
        """Serve what is already queued, wait for running batches, then refuse new items."""
        self._closed = True
        self._due = True
        self._dispatch()
        while self._running or self._pending:
            await asyncio.gather(*self._running, return_exceptions=True)
            self._dispatch()

    def _on_window_closed(self) -> None:
        self._timer = None
        self._due = True
        self._dispatch()

    def _dispatch(self) -> None:
        while self._due and self._pending and len(self._running) < self._max_concurrency:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            live = [(item, future) for item, future in batch if not future.done()]
            if live:
                task = asyncio.get_running_loop().create_task(self._run(live))
                self._running.add(task)
                task.add_done_callback(self._on_batch_done)
        # Items left behind have already waited at least one window: they stay due.
        if not self._pending:
            self._due = False
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _on_batch_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._dispatch()

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.batches_run += 1
        try:
            results = await anyio.to_thread.run_sync(self._fn, [item for item, _ in batch])
            if len(results) != len(batch):
                raise DependencyError(f"batch function returned {len(results)} results for {len(batch)} items")
        except BaseException as exc:
            # Every waiter gets the failure; a bare cancellation of this task becomes one too,
            # so nobody waits forever on a future that will never be resolved.
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else DependencyError(repr(exc)))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
