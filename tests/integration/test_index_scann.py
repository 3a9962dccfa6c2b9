"""ScaNN against brute force: recall at the tuned setting, save/load, exclusions, padding,
and the tuning logged to a real MLflow store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparktf.retrieval.index import PAD_ID, BruteForceIndex, ScannIndex, build_index, load_index

N, D, K = 20_000, 16, 10


def _clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((100, D))
    points = centres[rng.integers(0, 100, size=n)] + 0.6 * rng.standard_normal((n, D))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def catalogue() -> tuple[np.ndarray, list[str]]:
    return _clustered(N, 0), [f"sku-{i}" for i in range(N)]


def _queries(emb: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (emb[rng.integers(0, len(emb), n)] + 0.3 * rng.standard_normal((n, D))).astype(np.float32)


def _recall(got: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got.tolist(), exact.tolist(), strict=True)]))


@pytest.fixture(scope="module")
def tuned(catalogue: tuple[np.ndarray, list[str]]) -> tuple[Any, Any, np.ndarray]:
    from sparktf.retrieval.tuning import TuningGrid, tune_index

    emb, ids = catalogue
    held_out = _queries(emb, 400, seed=1)
    # One tree keeps the test quick; the grid over leaves is exercised by the benchmark.
    index, result = tune_index(
        emb, ids, k=K, target_recall=0.95, queries=held_out, grid=TuningGrid(num_leaves=(140,)), seed=3
    )
    return index, result, held_out


def test_recall_at_the_tuned_setting_reaches_the_target(
    tuned: tuple[Any, Any, np.ndarray], catalogue: tuple[np.ndarray, list[str]]
) -> None:
    index, result, held_out = tuned
    emb, ids = catalogue
    assert isinstance(index, ScannIndex), result.reason  # 20k items: ScaNN beats brute force by far
    assert result.kind == "scann" and result.met_target and result.recall >= 0.95
    assert index.params.leaves_to_search == result.params["leaves_to_search"]
    assert index.info["tuning"]["recall"] == result.recall

    exact = BruteForceIndex(emb, ids)
    got, scores = index.search(held_out, K)
    truth, truth_scores = exact.search(held_out, K)
    assert _recall(got, truth) >= 0.95
    # Reordering rescored the candidates exactly: each score is the item's true dot product,
    # and no approximate score beats the exact k-th best by more than rounding.
    position = {x: i for i, x in enumerate(ids)}
    true_dots = np.einsum("qd,qkd->qk", held_out, emb[[[position[x] for x in row] for row in got.tolist()]])
    np.testing.assert_allclose(scores, true_dots, rtol=1e-5, atol=1e-6)
    assert np.all(scores[:, 0] <= truth_scores[:, 0] + 1e-5)
    # Fresh queries from the same distribution: the tuned setting generalises (small slack).
    fresh = _queries(emb, 400, seed=2)
    assert _recall(index.search(fresh, K)[0], exact.search(fresh, K)[0]) >= 0.92


def test_save_and_load_give_identical_results(tuned: tuple[Any, Any, np.ndarray], tmp_path: Path) -> None:
    index, _, held_out = tuned
    index.save(str(tmp_path / "built"))
    (tmp_path / "built").rename(tmp_path / "moved")  # relative asset paths: the directory can move
    loaded = load_index(str(tmp_path / "moved"))
    assert isinstance(loaded, ScannIndex) and loaded.params == index.params
    exclude = [[f"sku-{i}" for i in range(j % 7)] for j in range(len(held_out))]
    for a, b in zip(index.search(held_out, K, exclude), loaded.search(held_out, K, exclude), strict=True):
        np.testing.assert_array_equal(a, b)


def test_exclusions_are_never_returned_and_match_brute_force(catalogue: tuple[np.ndarray, list[str]]) -> None:
    emb, ids = catalogue
    sub_emb, sub_ids = emb[:3000], ids[:3000]
    # Every leaf searched and every candidate rescored: ScaNN must give the exact answer.
    exhaustive = build_index(sub_emb, sub_ids, kind="scann", num_leaves=20, leaves_to_search=20, reorder=3000)
    exact = BruteForceIndex(sub_emb, sub_ids)
    q = _queries(sub_emb, 60, seed=4)
    top = exact.search(q, 400)[0]
    # Exclusion lists of very different lengths (0..399), so rows are regrouped by length inside.
    exclude = [[*top[r, : (r * 37) % 400].tolist(), "not-an-item"] for r in range(len(q))]
    got, scores = exhaustive.search(q, K, exclude)
    want, want_scores = exact.search(q, K, exclude)
    for r in range(len(q)):
        assert not set(got[r]) & set(exclude[r])
        assert got[r].tolist() == want[r].tolist()
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5)


def test_rows_short_of_k_are_padded(catalogue: tuple[np.ndarray, list[str]]) -> None:
    emb, ids = catalogue
    small = build_index(emb[:2500], ids[:2500], kind="scann", num_leaves=50, leaves_to_search=1, reorder=100)
    got, scores = small.search(_queries(emb[:2500], 5, seed=5), 2000)
    for r in range(5):
        real = [x for x in got[r].tolist() if x != PAD_ID]
        assert 0 < len(real) < 2000 and len(set(real)) == len(real)  # one leaf holds far fewer than 2000
        assert got[r].tolist()[len(real) :] == [PAD_ID] * (2000 - len(real))
        assert np.all(np.isneginf(scores[r, len(real) :])) and np.all(np.isfinite(scores[r, : len(real)]))
        assert np.all(np.diff(scores[r, : len(real)]) <= 1e-6)  # best first


def test_tuning_is_logged_to_mlflow(tuned: tuple[Any, Any, np.ndarray], tmp_path: Path) -> None:
    from sparktf.retrieval.tuning import log_tuning_to_mlflow
    from sparktf.training.tracking import RunTracker

    _, result, _ = tuned
    tracker = RunTracker(f"sqlite:///{tmp_path}/mlflow.db", "index-test", artifact_root=str(tmp_path / "art"))
    tracker.start("model-run")
    run_id = log_tuning_to_mlflow(tracker, result)
    log_tuning_to_mlflow(run_id, result, tracking_uri=tracker.tracking_uri)  # again: metrics may be re-logged
    run = tracker.client.get_run(run_id)
    assert run.data.metrics["index/recall_at_10"] == pytest.approx(result.recall)
    assert run.data.metrics["index/leaves_to_search"] == result.params["leaves_to_search"]
    assert run.data.metrics["index/reorder"] == result.params["reorder"]
    assert run.data.metrics["index/qps"] == pytest.approx(result.qps)
    assert run.data.tags["index/kind"] == "scann"
    assert [a.path for a in tracker.client.list_artifacts(run_id, "index")] == ["index/tuning.json"]
