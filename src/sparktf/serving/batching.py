"""Server-side micro-batching: concurrent requests share one model call.

TF Serving's batching knobs, with the same meaning: a batch holds at most
``max_batch_size`` rows, waits at most ``batch_timeout_micros`` for more once it
could run, and ``num_threads`` batches run at once (``num_batch_threads``).
Requests are grouped into *lanes* by a key the caller chooses (model version,
signature, input shapes), so a batch never mixes versions or signatures.

Batches form while the worker threads are busy: a lane takes a worker, then
everything queued up to ``max_batch_size`` rides along. One deviation from TF
Serving, for latency at low load: when no other request is in flight that could
still join, the batch runs at once instead of waiting out the timeout. Another,
for isolation: when a batch call raises, its items are run again one at a time,
so a request the model cannot take fails alone instead of failing its batch-mates.

Why our own code: TF Serving's batcher is C++ inside its server; BentoML's and
Ray Serve's batchers come with their own servers, and ``asyncio`` has none.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["BatchStats", "MicroBatcher", "RunAlone"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatchStats:
    """Counters a metrics exporter reads (and tests check)."""

    batches: int = 0
    items: int = 0
    rows: int = 0
    isolated: int = 0  # batches rerun one item at a time after failing
    sizes: list[int] = field(default_factory=list)

    def record(self, items: int, rows: int) -> None:
        self.batches += 1
        self.items += items
        self.rows += rows
        if len(self.sizes) < 10_000:
            self.sizes.append(rows)


class RunAlone(Exception):
    """Raised by a batch function whose batch cannot be answered as one (outputs that do
    not split back per item): the batcher runs each item alone, without a warning."""


@dataclass(eq=False)
class _Pending(Generic[T, R]):
    item: T
    rows: int
    future: asyncio.Future[R]


@dataclass(eq=False)
class _Lane(Generic[T, R]):
    run: Callable[[list[T]], Sequence[R]]
    queue: deque[_Pending[T, R]] = field(default_factory=deque)
    rows: int = 0
    task: asyncio.Task[None] | None = None
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)


class MicroBatcher(Generic[T, R]):
    """Collects concurrent submissions per lane and runs them as batches in worker threads.

    Args:
        max_batch_size: the most rows in one batch.
        batch_timeout_s: how long a batch that could run waits for more rows.
        num_threads: batches running at once.
        on_batch: called with ``(lane_kind, rows)`` for every batch (metrics).
        in_flight: the number of requests the server is handling now; lets a lone
            request skip the wait. ``None`` always waits, as TF Serving does.
        on_isolate: called with ``lane_kind`` when a failed batch is rerun one item at a
            time (metrics).
    """

    def __init__(
        self,
        max_batch_size: int,
        batch_timeout_s: float,
        num_threads: int = 2,
        on_batch: Callable[[str, int], None] | None = None,
        in_flight: Callable[[], int] | None = None,
        on_isolate: Callable[[str], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be 1 or more; got {max_batch_size}")
        self.max_batch_size = max_batch_size
        self.timeout = max(0.0, batch_timeout_s)
        self.num_threads = num_threads
        self._executor = ThreadPoolExecutor(max_workers=num_threads, thread_name_prefix="sparktf-batch")
        self._sem: asyncio.Semaphore | None = None
        self._lanes: dict[Hashable, _Lane[T, R]] = {}
        self._queued_rows = 0
        self._running = 0
        self._on_batch = on_batch
        self._in_flight = in_flight
        self._on_isolate = on_isolate
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = BatchStats()

    async def submit(self, key: Hashable, item: T, rows: int, run: Callable[[list[T]], Sequence[R]]) -> R:
        """Queue ``item`` (``rows`` rows) on lane ``key`` and wait for its result.

        ``run(items)`` is called in a worker thread with a batch of items of the same
        lane and returns one result per item, in order. When it raises for a batch of
        several items, each item is run alone, and only the items whose own call
        raises get an exception.
        """
        if rows > self.max_batch_size:
            raise ValueError(f"{rows} rows exceed max_batch_size {self.max_batch_size}")
        loop = asyncio.get_running_loop()
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.num_threads)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(run)
        pending: _Pending[T, R] = _Pending(item, rows, loop.create_future())
        lane.queue.append(pending)
        lane.rows += rows
        self._queued_rows += rows
        lane.wakeup.set()
        if lane.task is None or lane.task.done():
            lane.task = loop.create_task(self._drain(key, lane))
        return await pending.future

    def _others_may_join(self) -> bool:
        if self._in_flight is None:
            return True
        # Requests in the server that are neither queued nor in a running batch may still arrive.
        return self._in_flight() > self._queued_items() + self._running

    def _queued_items(self) -> int:
        return sum(len(lane.queue) for lane in self._lanes.values())

    async def _drain(self, key: Hashable, lane: _Lane[T, R]) -> None:
        loop = asyncio.get_running_loop()
        assert self._sem is not None
        while lane.queue:
            await self._sem.acquire()
            try:
                deadline = loop.time() + self.timeout
                while lane.rows < self.max_batch_size and self._others_may_join():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    lane.wakeup.clear()
                    try:
                        await asyncio.wait_for(lane.wakeup.wait(), remaining)
                    except TimeoutError:
                        break
                batch = self._take(lane)
            except BaseException:
                self._sem.release()
                raise
            if not batch:
                self._sem.release()
                continue
            task = loop.create_task(self._run(key, lane, batch))
            # The loop keeps only weak references to tasks; hold each until it ends.
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._lanes.get(key) is lane and not lane.queue:
            del self._lanes[key]

    def _take(self, lane: _Lane[T, R]) -> list[_Pending[T, R]]:
        batch: list[_Pending[T, R]] = []
        rows = 0
        while lane.queue and rows + lane.queue[0].rows <= self.max_batch_size:
            p = lane.queue.popleft()
            lane.rows -= p.rows
            self._queued_rows -= p.rows
            if p.future.done():  # the client went away while it waited
                continue
            batch.append(p)
            rows += p.rows
        return batch

    async def _run(self, key: Hashable, lane: _Lane[T, R], batch: list[_Pending[T, R]]) -> None:
        assert self._sem is not None
        loop = asyncio.get_running_loop()
        rows = sum(p.rows for p in batch)
        self._running += len(batch)
        self.stats.record(len(batch), rows)
        if self._on_batch is not None:
            self._on_batch(_lane_kind(key), rows)
        try:
            try:
                results = await loop.run_in_executor(self._executor, lane.run, [p.item for p in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"a batch of {len(batch)} items returned {len(results)} results")
            except Exception as exc:
                if len(batch) == 1:
                    raise
                self._report_isolation(key, len(batch), exc)
                await self._run_one_by_one(lane, batch)
                return
            for p, r in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(r)
        except BaseException as exc:  # noqa: BLE001 - delivered to the waiting request(s)
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
        finally:
            self._running -= len(batch)
            self._sem.release()

    async def _run_one_by_one(self, lane: _Lane[T, R], batch: list[_Pending[T, R]]) -> None:
        """Each item of a failed batch alone, in the batch's worker slot: the failure stays
        with the item(s) that cause it."""
        loop = asyncio.get_running_loop()
        for p in batch:
            if p.future.done():
                continue
            try:
                results = await loop.run_in_executor(self._executor, lane.run, [p.item])
                if len(results) != 1:
                    raise RuntimeError(f"a batch of 1 item returned {len(results)} results")
            except Exception as exc:  # noqa: BLE001 - this item's own failure
                if not p.future.done():
                    p.future.set_exception(exc)
                continue
            if not p.future.done():
                p.future.set_result(results[0])

    def _report_isolation(self, key: Hashable, size: int, exc: Exception) -> None:
        self.stats.isolated += 1
        if self._on_isolate is not None:
            self._on_isolate(_lane_kind(key))
        if isinstance(exc, RunAlone):
            return
        log.warning(
            "a %s batch of %d requests failed (%s: %s); running them one by one so that only the failing request fails",
            _lane_kind(key),
            size,
            type(exc).__name__,
            exc,
        )

    async def run_alone(self, fn: Callable[[], R]) -> R:
        """Run ``fn`` in a worker thread, unbatched, sharing the batches' thread limit."""
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.num_threads)
        async with self._sem:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _lane_kind(key: Hashable) -> str:
    return str(key[0]) if isinstance(key, tuple) and key else "default"
