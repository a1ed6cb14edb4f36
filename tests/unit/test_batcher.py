"""MicroBatcher against a hand-written batch function that records every call it gets."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import anyio.to_thread
import pytest

from ragserve.embed.batcher import MicroBatcher
from ragserve.errors import DependencyError


class RecordingBatchFn:
    """Doubles each item; remembers the batches; can be held at a gate to simulate a slow model."""

    def __init__(self, *, fail_with: Exception | None = None, gated: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.fail_with = fail_with
        self.started = threading.Event()
        self.gate = threading.Event()
        if not gated:
            self.gate.set()

    def __call__(self, items: list[int]) -> Sequence[int]:
        self.calls.append(list(items))
        self.started.set()
        self.gate.wait(timeout=5)
        if self.fail_with is not None:
            raise self.fail_with
        return [item * 2 for item in items]


async def test_concurrent_submits_within_the_window_share_one_call() -> None:
    fn = RecordingBatchFn()
    batcher = MicroBatcher(fn, window_ms=20)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    assert fn.calls == [list(range(10))]
    assert results == [i * 2 for i in range(10)]
    await batcher.aclose()


async def test_results_map_back_to_their_callers() -> None:
    fn = RecordingBatchFn()
    batcher = MicroBatcher(fn, window_ms=20)

    async def caller(item: int) -> tuple[int, int]:
        await asyncio.sleep(0.001 * (item % 3))  # arrive in a different order than created
        return item, await batcher.submit(item)

    pairs = await asyncio.gather(*(caller(i) for i in (7, 3, 11, 5, 2)))
    assert all(result == item * 2 for item, result in pairs)
    assert len(fn.calls) == 1
    await batcher.aclose()


async def test_an_exception_reaches_every_waiter_of_the_batch() -> None:
    fn = RecordingBatchFn(fail_with=ValueError("model exploded"))
    batcher = MicroBatcher(fn, window_ms=20)
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert len(fn.calls) == 1
    assert all(isinstance(o, ValueError) and str(o) == "model exploded" for o in outcomes)
    await batcher.aclose()


async def test_sequential_submits_are_each_served() -> None:
    fn = RecordingBatchFn()
    batcher = MicroBatcher(fn, window_ms=1)
    assert await batcher.submit(1) == 2
    assert await batcher.submit(2) == 4
    assert await batcher.submit(3) == 6
    assert fn.calls == [[1], [2], [3]]
    await batcher.aclose()


async def test_a_full_batch_goes_without_waiting_for_the_window() -> None:
    fn = RecordingBatchFn()
    batcher = MicroBatcher(fn, window_ms=10_000, max_batch=3)
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(i) for i in range(3))), timeout=5)
    assert results == [0, 2, 4]
    assert fn.calls == [[0, 1, 2]]
    await batcher.aclose()


async def test_items_beyond_max_batch_form_the_next_batches() -> None:
    fn = RecordingBatchFn()
    batcher = MicroBatcher(fn, window_ms=20, max_batch=2)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
    assert results == [0, 2, 4, 6, 8]
    assert fn.calls == [[0, 1], [2, 3], [4]]
    await batcher.aclose()


async def test_arrivals_during_a_running_batch_queue_into_the_next_one() -> None:
    fn = RecordingBatchFn(gated=True)
    batcher = MicroBatcher(fn, window_ms=1)
    first = asyncio.create_task(batcher.submit(1))
    await anyio.to_thread.run_sync(fn.started.wait, 5)
    later = [asyncio.create_task(batcher.submit(i)) for i in (2, 3)]
    await asyncio.sleep(0.05)  # well past the window: they wait for the model, not the clock
    fn.gate.set()
    assert await first == 2
    assert [await task for task in later] == [4, 6]
    assert fn.calls == [[1], [2, 3]]
    await batcher.aclose()


async def test_cancelling_a_waiter_in_a_running_batch_leaves_the_others_served() -> None:
    fn = RecordingBatchFn(gated=True)
    batcher = MicroBatcher(fn, window_ms=5)
    tasks = [asyncio.create_task(batcher.submit(i)) for i in range(3)]
    await anyio.to_thread.run_sync(fn.started.wait, 5)
    tasks[1].cancel()
    fn.gate.set()
    assert await tasks[0] == 0
    assert await tasks[2] == 4
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
    await batcher.aclose()


async def test_a_waiter_cancelled_before_dispatch_is_left_out_of_the_batch() -> None:
    fn = RecordingBatchFn()
    batcher = MicroBatcher(fn, window_ms=30)
    tasks = [asyncio.create_task(batcher.submit(i)) for i in range(3)]
    await asyncio.sleep(0)  # let them enqueue
    tasks[0].cancel()
    assert [await tasks[1], await tasks[2]] == [2, 4]
    assert fn.calls == [[1, 2]]
    await batcher.aclose()


async def test_a_wrong_number_of_results_fails_every_waiter() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda items: items[:-1], window_ms=5)
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(o, DependencyError) for o in outcomes)
    await batcher.aclose()


async def test_aclose_serves_what_is_queued_then_refuses_new_items() -> None:
    fn = RecordingBatchFn()
    batcher = MicroBatcher(fn, window_ms=60_000)
    queued = [asyncio.create_task(batcher.submit(i)) for i in range(2)]
    await asyncio.sleep(0)
    await asyncio.wait_for(batcher.aclose(), timeout=5)
    assert [await task for task in queued] == [0, 2]
    with pytest.raises(DependencyError):
        await batcher.submit(9)
