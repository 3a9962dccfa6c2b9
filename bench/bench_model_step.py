"""One training step of the sequential (GRU) model: the recurrence unrolled against the loop.

Run: ``.venv/bin/python -m bench.bench_model_step [--repeats 3] [--steps 30]``

The model is :class:`sparktf.models.sequential.SequentialRecommender` as ``sparktf run``
builds it for MovieLens-100K (1,682 items, 64 dimensions, full softmax with the history
masked, batch 256), trained in this process (no Spark, no collectives: the step alone)
on synthetic histories of 20 and 50 items. Reference: the same model with the recurrence
as a loop (``layers.UNROLL_MAX_STEPS = 0`` while it is built). The sides take turns
(rotated each repeat), each run a fresh model; a run's rate is the median of its epochs
after the first, each timed from its first to its last step. Quality: the two sides
compute the same function (``tests/integration/test_models.py`` checks the outputs agree
for the same weights), so only speed is measured here.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ITEMS = 1682
BATCH = 256


def _data(tf: Any, length: int, steps: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(0)
    n = BATCH * steps
    hist = rng.integers(0, ITEMS, size=(n, length))
    cut = rng.integers(1, length + 1, size=n)  # right-padded histories of every length
    rows = [[f"i{x}" for x in h[:c]] + [""] * (length - c) for h, c in zip(hist, cut, strict=True)]
    target = [f"i{x}" for x in rng.integers(0, ITEMS, size=n)]
    users = [f"u{i % 943}" for i in range(n)]
    ds = tf.data.Dataset.from_tensor_slices({"user_id": users, "history": rows, "target": target})
    return ds.batch(BATCH).cache().repeat()


def run_once(length: int, steps: int, unroll: bool) -> float:
    from sparktf.models import layers
    from sparktf.models.base import ModelParams, make_optimizer
    from sparktf.models.catalog import Catalog
    from sparktf.models.factory import build_model
    from sparktf.tfenv import import_tensorflow

    tf = import_tensorflow()
    catalog = Catalog.from_arrays(
        [f"i{i}" for i in range(ITEMS)],
        category=["c"] * ITEMS,
        brand=["b"] * ITEMS,
        price_bucket=[0] * ITEMS,
        user_ids=[f"u{u}" for u in range(943)],
    )
    params = ModelParams(kind="sequential", embedding_dim=64, max_history=length, mask_history=True, seed=1)
    saved = layers.UNROLL_MAX_STEPS
    layers.UNROLL_MAX_STEPS = saved if unroll else 0
    try:
        model = build_model(catalog, params)
    finally:
        layers.UNROLL_MAX_STEPS = saved
    model.compile(optimizer=make_optimizer(0.005, 0.9, steps))
    ends: list[tuple[int, int, float]] = []

    class Clock(tf.keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch = epoch

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            ends.append((self.epoch, batch, time.perf_counter()))

    model.fit(_data(tf, length, steps), epochs=3, steps_per_epoch=steps, callbacks=[Clock()], verbose=0)
    rates = []
    for epoch in (1, 2):
        times = [t for e, _, t in ends if e == epoch]
        rates.append((len(times) - 1) / (times[-1] - times[0]))
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="steps per epoch (3 epochs)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[20, 50])
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    rows = [
        "| history | recurrence | steps/s, median | min–max | examples/s | vs the loop |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for length in args.lengths:
        rates: dict[bool, list[float]] = {False: [], True: []}
        for r in range(args.repeats):
            for unroll in (r % 2 == 1, r % 2 == 0):  # alternate which side goes first
                rates[unroll].append(run_once(length, args.steps, unroll))
        base = statistics.median(rates[False])
        for unroll in (False, True):
            med = statistics.median(rates[unroll])
            rows.append(
                f"| {length} | {'unrolled' if unroll else 'loop (reference)'} | {med:.2f} "
                f"| {min(rates[unroll]):.2f}–{max(rates[unroll]):.2f} | {med * BATCH:,.0f} | {med / base:.2f}x |"
            )
    notes = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load average "
        f"{load:.1f} at start; {args.repeats} runs of each side, alternated; batch {BATCH}, {ITEMS} items, "
        "64 dimensions, full softmax with the history masked; in-process, CPU only"
    )
    text = "# Sequential model step: unrolled recurrence\n\n" + notes + "\n\n" + "\n".join(rows) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "model_step.md").write_text(text, encoding="utf-8")
    print(text)
    return text


if __name__ == "__main__":
    main()
