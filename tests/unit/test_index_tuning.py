"""Tuning's pure parts: recall, the choice among trials, the grid, held-out queries, and
the exact fallback for small catalogues (no ScaNN is built here)."""

from __future__ import annotations

import numpy as np
import pytest

from sparktf.errors import AnnIndexError, TrackingError
from sparktf.retrieval.index import BruteForceIndex
from sparktf.retrieval.tuning import (
    Trial,
    TuningGrid,
    choose_trial,
    default_grid,
    holdout_queries,
    log_tuning_to_mlflow,
    recall_at_k,
    tune_index,
)


def test_recall_counts_overlap_and_ignores_padding() -> None:
    exact = np.array([["a", "b", "c"], ["d", "e", ""], ["", "", ""]], dtype=object)
    approx = np.array([["c", "x", "a"], ["e", "", ""], ["q", "", ""]], dtype=object)
    # Row 0: 2/3; row 1: 1/2 (padding is not a neighbour); row 2 has no truth and is skipped.
    assert recall_at_k(approx, exact) == pytest.approx((2 / 3 + 1 / 2) / 2)
    positions = np.array([[3, 1, -1]])
    assert recall_at_k(np.array([[1, 7, -1]]), positions) == pytest.approx(1 / 2)
    with pytest.raises(AnnIndexError, match="2 approximate rows and 3 exact rows"):
        recall_at_k(approx[:2], exact)


def test_choose_trial_takes_the_fastest_that_reaches_the_target() -> None:
    trials = [
        Trial(10, 1, 50, recall=0.80, qps=9000.0),
        Trial(10, 2, 50, recall=0.95, qps=5000.0),
        Trial(20, 2, 50, recall=0.97, qps=6000.0),
        Trial(20, 4, 50, recall=0.99, qps=6000.0),
    ]
    assert choose_trial(trials, 0.95) == trials[3]  # equal speed: the higher recall
    assert choose_trial(trials, 0.98) == trials[3]
    assert choose_trial(trials, 0.999) is None


def test_default_grid_brackets_sqrt_n_and_stays_inside_the_catalogue() -> None:
    grid = default_grid(1_000_000, 10)
    assert grid.num_leaves == (500, 1000, 2000)
    assert grid.reorder == (50, 200)
    small = default_grid(300, 100)
    assert all(1 <= n <= 300 // 200 + 1 for n in small.num_leaves)
    assert max(small.reorder) <= 300
    assert TuningGrid(num_leaves=(100,)).leaves_to_search(100) == [1, 2, 3, 5, 8, 12, 20, 30, 50, 100]


def test_holdout_queries_are_near_items_but_not_on_them() -> None:
    emb = np.random.default_rng(0).standard_normal((200, 5)).astype(np.float32)
    q = holdout_queries(emb, 30, seed=1)
    assert q.shape == (30, 5) and q.dtype == np.float32
    nearest = np.min(((q[:, None, :] - emb[None]) ** 2).sum(-1), axis=1)
    assert np.all(nearest > 0)
    np.testing.assert_array_equal(q, holdout_queries(emb, 30, seed=1))


def test_small_catalogue_is_not_tuned_and_says_why() -> None:
    emb = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
    index, result = tune_index(emb, [f"i{i}" for i in range(64)], k=5, min_items=100, num_queries=20)
    assert isinstance(index, BruteForceIndex)
    assert result.kind == "brute_force" and result.recall == 1.0 and result.met_target
    assert "64 items, fewer than min_items = 100" in result.reason
    assert index.info["tuning"]["kind"] == "brute_force"
    with pytest.raises(AnnIndexError, match="target_recall = 1.5"):
        tune_index(emb, [f"i{i}" for i in range(64)], target_recall=1.5)


def test_logging_needs_a_run() -> None:
    emb = np.random.default_rng(0).standard_normal((8, 2)).astype(np.float32)
    _, result = tune_index(emb, [f"i{i}" for i in range(8)], k=2, num_queries=10)
    with pytest.raises(TrackingError, match="needs a run id or a started RunTracker"):
        log_tuning_to_mlflow(None, result)
