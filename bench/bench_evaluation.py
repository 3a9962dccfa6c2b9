"""Full-catalogue metrics: our chunked ranking against a full-sort reference.

Run: ``cd /work/main && .venv/bin/python -m bench.bench_evaluation``

Both sides get the same score batches (float32, one row per query) and the same
exclusions (50 seen items per query). The reference does what a straightforward
implementation does: a stable ``argsort`` of every masked row, the target's
position in it as the rank, the first K columns as the top-K list. Ours counts the
items above the target and selects the top-K with ``np.partition``
(:mod:`sparktf.evaluation.metrics`). The bench checks that both give identical
metrics, then reports wall time, queries per second and peak numpy memory
(tracemalloc) for a random-score model (no ties) and a popularity-like model (many
ties). Results go to ``bench/results/evaluation.md``.
"""

from __future__ import annotations

import os
import platform
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sparktf.evaluation.metrics import EvaluationResult, Exclusions, Queries, evaluate_ranking, metrics_from_ranks

KS = (10, 20, 50, 100)
SEEN_PER_QUERY = 50
CASES = [  # (queries, catalogue size, batch size)
    (20_000, 2_000, 1024),
    (2_000, 100_000, 160),
]


def _queries(q: int, n: int, rng: np.random.Generator) -> Queries:
    targets = rng.integers(0, n, size=q)
    seen = rng.integers(0, n, size=(q, SEEN_PER_QUERY))
    return Queries(targets=targets, num_items=n, exclude=Exclusions.from_lists(list(seen)))


def _scores(kind: str, q: int, n: int, seed: int) -> Callable[[int, int], np.ndarray]:
    if kind == "random":

        def rows(a: int, b: int) -> np.ndarray:
            return np.random.default_rng(seed + a).random((b - a, n), dtype=np.float32)

    else:  # popularity-like integer counts: many exact ties
        counts = np.floor(1000.0 / np.arange(1, n + 1) ** 0.8).astype(np.float32)

        def rows(a: int, b: int) -> np.ndarray:
            return np.broadcast_to(counts, (b - a, n))

    return rows


def _reference(rows: Callable[[int, int], np.ndarray], queries: Queries, batch: int) -> dict[str, float]:
    """Stable full sort of every masked row."""
    n = queries.num_items
    ranks = np.empty(len(queries))
    covered = {k: np.zeros(n, dtype=bool) for k in KS}
    assert queries.exclude is not None
    for a in range(0, len(queries), batch):
        b = min(a + batch, len(queries))
        s = np.array(rows(a, b), dtype=np.float64)
        ex = queries.exclude.rows(a, b)
        t = queries.targets[a:b]
        r = np.repeat(np.arange(b - a), np.diff(ex.indptr))
        keep = s[np.arange(b - a), t]
        s[r, ex.indices] = -np.inf
        s[np.arange(b - a), t] = keep
        order = np.argsort(-s, axis=1, kind="stable")
        valid = np.ones_like(s, dtype=bool)
        valid[r, ex.indices] = False
        valid[np.arange(b - a), t] = True
        valid_sorted = np.take_along_axis(valid, order, axis=1)
        pos = np.argmax(order == t[:, None], axis=1)
        # Excluded items sorted above the target do not count.
        ranks[a:b] = 1 + pos - np.count_nonzero(~valid_sorted & (np.arange(n)[None, :] < pos[:, None]), axis=1)
        for k in KS:
            pick = np.cumsum(valid_sorted, axis=1) <= k
            covered[k][order[valid_sorted & pick]] = True
    out = metrics_from_ranks(ranks, KS)
    for k in KS:
        out[f"coverage@{k}"] = float(covered[k].mean())
    return out


def _measure(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    tracemalloc.start()
    t = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return value, seconds, peak / 2**20


def main() -> None:
    rng = np.random.default_rng(0)
    lines = [
        "## Evaluation: full-catalogue ranking (sparktf.evaluation.metrics)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}, "
        f"Python {platform.python_version()}. Exclusions: {SEEN_PER_QUERY} seen items per query; K in {KS}. "
        "Reference: stable argsort of every masked row. Same batches on both sides; metrics checked identical.",
        "",
        "| queries | items | scores | reference s | ours s | speed-up | ours queries/s | reference peak MiB | ours peak MiB |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for q, n, batch in CASES:
        queries = _queries(q, n, rng)
        for kind in ("random", "tied"):
            rows = _scores(kind, q, n, seed=1)
            ref, ref_s, ref_mib = _measure(
                lambda rows=rows, queries=queries, batch=batch: _reference(rows, queries, batch)
            )
            ours_result, ours_s, ours_mib = _measure(
                lambda rows=rows, queries=queries, batch=batch, kind=kind: evaluate_ranking(
                    rows, queries, ks=KS, model=kind, batch_size=batch
                )
            )
            assert isinstance(ours_result, EvaluationResult)
            for key, value in ref.items():
                assert abs(ours_result.overall[key] - value) < 1e-12, (key, ours_result.overall[key], value)
            lines.append(
                f"| {q:,} | {n:,} | {kind} | {ref_s:.2f} | {ours_s:.2f} | {ref_s / ours_s:.1f}x | {q / ours_s:,.0f} "
                f"| {ref_mib:,.0f} | {ours_mib:,.0f} |"
            )
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    out = Path(__file__).resolve().parent / "results" / "evaluation.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
