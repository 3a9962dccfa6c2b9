"""The micro-batcher with plain Python batch functions (no model)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from sparktf.serving.batching import MicroBatcher


def run(coro):  # one event loop per test
    return asyncio.run(coro)


def test_concurrent_submissions_share_batches_up_to_the_maximum() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()

    def double(items: list[int]) -> list[int]:
        gate.wait(5)  # hold the first batch so the rest queue up behind it
        calls.append(list(items))
        return [2 * x for x in items]

    async def main() -> list[int]:
        b: MicroBatcher[int, int] = MicroBatcher(max_batch_size=4, batch_timeout_s=0.05, num_threads=1)
        tasks = [asyncio.create_task(b.submit("lane", i, 1, double)) for i in range(10)]
        await asyncio.sleep(0.2)
        gate.set()
        out = await asyncio.gather(*tasks)
        b.shutdown()
        return out

    assert run(main()) == [2 * i for i in range(10)]
    assert sorted(x for c in calls for x in c) == list(range(10))
    assert max(len(c) for c in calls) == 4 and len(calls) == 3


def test_rows_count_toward_the_maximum_and_lanes_never_mix() -> None:
    seen: list[tuple[str, list[str]]] = []

    def tag(lane: str):
        def fn(items: list[str]) -> list[str]:
            seen.append((lane, list(items)))
            return [f"{lane}:{x}" for x in items]

        return fn

    async def main() -> list[str]:
        b: MicroBatcher[str, str] = MicroBatcher(max_batch_size=5, batch_timeout_s=0.02, num_threads=2)
        jobs = [b.submit(lane, f"{lane}{i}", 2, tag(lane)) for lane in ("a", "b") for i in range(4)]
        out = await asyncio.gather(*jobs)
        b.shutdown()
        return out

    out = run(main())
    assert out == [f"{lane}:{lane}{i}" for lane in ("a", "b") for i in range(4)]
    for lane, items in seen:
        assert all(x.startswith(lane) for x in items)
        assert 2 * len(items) <= 5


def test_an_error_fails_only_the_request_that_causes_it() -> None:
    """A batch call that raises is rerun item by item: the poison item's request gets the
    error, its batch-mates their results (before, every request of the batch failed)."""
    calls: list[list[str]] = []
    gate = threading.Event()

    def fail_on_bad(items: list[str]) -> list[str]:
        gate.wait(5)  # hold the first batch so that the rest queue up into one batch
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("bad input")
        return [x.upper() for x in items]

    async def main() -> list[object]:
        b: MicroBatcher[str, str] = MicroBatcher(max_batch_size=8, batch_timeout_s=0.02, num_threads=1)
        first = asyncio.create_task(b.submit("x", "first", 1, fail_on_bad))
        await asyncio.sleep(0.2)  # the first batch runs (and waits at the gate)
        rest = [asyncio.create_task(b.submit("x", x, 1, fail_on_bad)) for x in ("a", "bad", "b")]
        await asyncio.sleep(0.1)
        gate.set()
        out = await asyncio.gather(first, *rest, return_exceptions=True)
        assert b.stats.isolated == 1
        b.shutdown()
        return out

    first, a, bad, b = run(main())
    assert (first, a, b) == ("FIRST", "A", "B")
    assert isinstance(bad, ValueError) and str(bad) == "bad input"
    assert ["a", "bad", "b"] in calls and ["bad"] in calls  # batched, then rerun one by one


def test_a_batch_function_may_ask_for_its_items_one_by_one() -> None:
    from sparktf.serving.batching import RunAlone

    def whole_batch_only_when_single(items: list[int]) -> list[int]:
        if len(items) > 1:
            raise RunAlone("outputs do not split")
        return [items[0] * 10]

    async def main() -> list[int]:
        b: MicroBatcher[int, int] = MicroBatcher(max_batch_size=8, batch_timeout_s=0.05, num_threads=1)
        out = await asyncio.gather(*[b.submit("k", i, 1, whole_batch_only_when_single) for i in range(5)])
        b.shutdown()
        return list(out)

    assert run(main()) == [0, 10, 20, 30, 40]


def test_a_lone_request_does_not_wait_for_the_timeout() -> None:
    async def main() -> float:
        b: MicroBatcher[int, int] = MicroBatcher(
            max_batch_size=64, batch_timeout_s=5.0, num_threads=1, in_flight=lambda: 1
        )
        t0 = time.perf_counter()
        await b.submit("k", 1, 1, lambda items: items)
        b.shutdown()
        return time.perf_counter() - t0

    # With TF Serving's rule it would wait the whole 5 s timeout.
    assert run(main()) < 4.0


def test_more_rows_than_the_maximum_is_refused() -> None:
    async def main() -> None:
        b: MicroBatcher[int, int] = MicroBatcher(max_batch_size=2, batch_timeout_s=0.0)
        try:
            await b.submit("k", 1, 3, lambda items: items)
        finally:
            b.shutdown()

    with pytest.raises(ValueError, match="exceed max_batch_size"):
        run(main())


def test_batch_sizes_are_reported() -> None:
    sizes: list[tuple[str, int]] = []

    async def main() -> None:
        b: MicroBatcher[int, int] = MicroBatcher(8, 0.05, 1, on_batch=lambda kind, rows: sizes.append((kind, rows)))
        await asyncio.gather(*[b.submit(("predict", 1), i, 1, lambda items: items) for i in range(6)])
        b.shutdown()

    run(main())
    assert sum(r for _, r in sizes) == 6 and all(k == "predict" for k, _ in sizes)
