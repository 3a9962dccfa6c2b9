"""Full-catalogue metrics against a brute-force reference, and their edge cases."""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparktf.errors import DataError, ModelError
from sparktf.evaluation import metrics as M
from sparktf.evaluation.metrics import (
    EvalProtocol,
    EvaluationResult,
    Exclusions,
    Queries,
    evaluate_ranked_lists,
    evaluate_ranking,
    metrics_from_ranks,
    rank_targets,
    top_k,
)

# --------------------------------------------------------------------------- reference


def _ranked(scores: np.ndarray, excluded: set[int], target: int) -> list[int]:
    """Candidates of one query, best first: score descending, then column ascending."""
    n = len(scores)
    cands = [j for j in range(n) if j not in excluded or j == target]
    return sorted(cands, key=lambda j: (-scores[j], j))


def _reference(
    scores: np.ndarray, targets: list[int], excl: list[set[int]], ks: list[int], labels: list[str]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    q, n = scores.shape
    ranks = []
    lists = []
    for i in range(q):
        order = _ranked(scores[i], excl[i], targets[i])
        lists.append(order)
        ranks.append(order.index(targets[i]) + 1 if targets[i] >= 0 else math.inf)

    def summary(idx: list[int]) -> dict[str, float]:
        out: dict[str, float] = {}
        for k in ks:
            out[f"hr@{k}"] = sum(1.0 for i in idx if ranks[i] <= k) / len(idx)
            out[f"ndcg@{k}"] = sum(1.0 / math.log2(ranks[i] + 1) for i in idx if ranks[i] <= k) / len(idx)
        out["mrr"] = sum(1.0 / ranks[i] for i in idx) / len(idx)
        return out

    overall = summary(list(range(q)))
    for k in ks:
        overall[f"coverage@{k}"] = len({j for lst in lists for j in lst[:k]}) / n
    per: dict[str, dict[str, float]] = {}
    for value in sorted(set(labels)):
        idx = [i for i in range(q) if labels[i] == value]
        per[value] = {**summary(idx), "count": float(len(idx))}
    return overall, per


@st.composite
def cases(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(1, 9))
    q = draw(st.integers(1, 7))
    # Few distinct values so that ties are common; -inf is a legal score too.
    values = st.sampled_from([0.0, 1.0, 2.0, 3.0, -1.5, -math.inf])
    scores = np.array(draw(st.lists(st.lists(values, min_size=n, max_size=n), min_size=q, max_size=q)))
    targets = draw(st.lists(st.integers(-1, n - 1), min_size=q, max_size=q))
    excl = [set(draw(st.lists(st.integers(0, n - 1), max_size=n))) for _ in range(q)]
    ks = sorted(set(draw(st.lists(st.integers(1, n + 2), min_size=1, max_size=4))))
    labels = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=q, max_size=q))
    batch = draw(st.integers(1, q))
    return {"scores": scores, "targets": targets, "excl": excl, "ks": ks, "labels": labels, "batch": batch}


@settings(max_examples=300, deadline=None)
@given(cases())
def test_evaluate_ranking_matches_brute_force(case: dict[str, Any]) -> None:
    scores, targets, excl, ks, labels = (case[k] for k in ("scores", "targets", "excl", "ks", "labels"))
    queries = Queries(
        targets=np.array(targets),
        num_items=scores.shape[1],
        exclude=Exclusions.from_lists([sorted(e) for e in excl]),
        slices={"s": np.array(labels)},
    )
    calls: list[tuple[int, int]] = []

    def rows(a: int, b: int) -> np.ndarray:
        calls.append((a, b))
        return scores[a:b]

    result = evaluate_ranking(rows, queries, ks=ks, model="m", batch_size=case["batch"])
    overall, per = _reference(scores, targets, excl, ks, labels)
    assert result.overall.keys() == overall.keys()
    for key, value in overall.items():
        assert result.overall[key] == pytest.approx(value), key
    assert result.slices["s"].keys() == per.keys()
    for value, m in per.items():
        for key, x in m.items():
            assert result.slices["s"][value][key] == pytest.approx(x), (value, key)
    # Every query is scored exactly once, in order, in batches of the requested size.
    assert calls[0][0] == 0 and calls[-1][1] == len(targets)
    assert all(b - a <= case["batch"] for a, b in calls)
    assert all(calls[i][1] == calls[i + 1][0] for i in range(len(calls) - 1))
    assert result.protocol.oov_targets == sum(1 for t in targets if t < 0)


@settings(max_examples=200, deadline=None)
@given(cases())
def test_top_k_and_rank_match_brute_force(case: dict[str, Any]) -> None:
    scores, targets, excl = case["scores"], case["targets"], case["excl"]
    k = max(case["ks"])
    exclusions = Exclusions.from_lists([sorted(e) for e in excl])
    lists = top_k(scores, k, exclusions, np.array(targets))
    ranks = rank_targets(scores, np.array(targets), exclusions)
    for i in range(len(targets)):
        order = _ranked(scores[i], excl[i], targets[i])
        expected = order[:k] + [-1] * (k - len(order[:k]))
        assert lists[i].tolist() == expected
        assert ranks[i] == (order.index(targets[i]) + 1 if targets[i] >= 0 else math.inf)


@settings(max_examples=100, deadline=None)
@given(cases())
def test_ranked_lists_agree_with_full_ranking(case: dict[str, Any]) -> None:
    # Lists cut from the full ranking give the same hit rates, NDCG and coverage.
    scores, targets, excl, ks = case["scores"], case["targets"], case["excl"], case["ks"]
    exclusions = Exclusions.from_lists([sorted(e) for e in excl])
    queries = Queries(targets=np.array(targets), num_items=scores.shape[1], exclude=exclusions)
    full = evaluate_ranking(lambda a, b: scores[a:b], queries, ks=ks, model="m")
    lists = top_k(scores, max(ks), exclusions, np.array(targets))
    from_lists = evaluate_ranked_lists(lists, queries, ks=ks, model="m")
    for key, value in full.overall.items():
        if key != "mrr":
            assert from_lists.overall[key] == pytest.approx(value), key
    assert from_lists.overall[f"mrr@{max(ks)}"] <= full.overall["mrr"] + 1e-12
    assert from_lists.protocol.list_length == max(ks)


# --------------------------------------------------------------------------- edge cases


def _one(
    scores: list[float], target: int, ks: tuple[int, ...] = (1, 2, 3), exclude: list[int] | None = None
) -> dict[str, float]:
    s = np.array([scores])
    q = Queries(
        targets=np.array([target]),
        num_items=len(scores),
        exclude=Exclusions.from_lists([exclude]) if exclude is not None else None,
    )
    return evaluate_ranking(lambda a, b: s[a:b], q, ks=ks, model="m").overall


def test_target_at_rank_one() -> None:
    m = _one([0.1, 0.9, 0.5], target=1)
    assert m["hr@1"] == 1.0 and m["ndcg@1"] == 1.0 and m["mrr"] == 1.0


def test_target_at_rank_k_and_k_plus_one() -> None:
    # Target at rank 3: a hit at K=3 with gain 1/log2(4) = 0.5, a miss at K=2.
    m = _one([0.9, 0.8, 0.7, 0.1], target=2, ks=(2, 3))
    assert m["hr@2"] == 0.0 and m["ndcg@2"] == 0.0
    assert m["hr@3"] == 1.0 and m["ndcg@3"] == pytest.approx(0.5)
    assert m["mrr"] == pytest.approx(1 / 3)


def test_excluded_items_leave_the_ranking_but_never_the_target() -> None:
    m = _one([0.9, 0.8, 0.7, 0.1], target=2, ks=(1,), exclude=[0, 1, 2])
    assert m["hr@1"] == 1.0
    assert m["coverage@1"] == pytest.approx(1 / 4)


def test_ties_are_broken_by_column_order() -> None:
    # Equal scores: an item in an earlier column (more popular) ranks first.
    assert _one([0.5, 0.5, 0.5], target=0)["mrr"] == 1.0
    assert _one([0.5, 0.5, 0.5], target=2)["mrr"] == pytest.approx(1 / 3)
    # A strictly higher score always wins, whatever the column.
    assert _one([0.5, 0.5, 0.7], target=0)["mrr"] == pytest.approx(1 / 2)


def test_oov_target_is_a_counted_miss() -> None:
    s = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    q = Queries(targets=np.array([0, -1]), num_items=3)
    r = evaluate_ranking(lambda a, b: s[a:b], q, ks=(1, 3), model="m")
    assert r.overall["hr@3"] == 0.5 and r.overall["mrr"] == 0.5
    assert r.protocol.oov_targets == 1 and r.protocol.num_queries == 2
    assert "1 out-of-vocabulary targets counted as misses" in r.protocol.sentence()


def test_coverage_counts_distinct_items_in_lists() -> None:
    s = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    q = Queries(targets=np.array([0, 3]), num_items=4)
    r = evaluate_ranking(lambda a, b: s[a:b], q, ks=(1, 2), model="m")
    assert r.overall["coverage@1"] == 0.5 and r.overall["coverage@2"] == 1.0


def test_slices_report_only_present_values_with_counts() -> None:
    s = np.array([[3.0, 2.0], [3.0, 2.0], [3.0, 2.0]])
    q = Queries(
        targets=np.array([0, 1, 0]),
        num_items=2,
        slices={"act": np.array(["hi", "lo", "hi"]), "none": np.array(["x"] * 3)},
    )
    r = evaluate_ranking(lambda a, b: s[a:b], q, ks=(1,), model="m")
    assert r.slices["act"] == {
        "hi": {"hr@1": 1.0, "ndcg@1": 1.0, "mrr": 1.0, "count": 2.0},
        "lo": {"hr@1": 0.0, "ndcg@1": 0.0, "mrr": 0.5, "count": 1.0},
    }
    assert list(r.slices["none"]) == ["x"]
    no_slices = evaluate_ranking(
        lambda a, b: s[a:b], Queries(targets=np.array([0, 1, 0]), num_items=2), ks=(1,), model="m"
    )
    assert no_slices.slices == {}


def test_zero_queries_is_an_error() -> None:
    with pytest.raises(DataError, match="no queries"):
        evaluate_ranking(
            lambda a, b: np.zeros((0, 3)), Queries(targets=np.zeros(0, dtype=np.int64), num_items=3), ks=(1,), model="m"
        )
    with pytest.raises(DataError, match="zero queries"):
        metrics_from_ranks(np.zeros(0), (1,))


def test_wrong_shape_names_the_batch_and_the_oov_column() -> None:
    q = Queries(targets=np.array([0, 1]), num_items=3)
    with pytest.raises(ModelError, match=r"shape \(2, 4\); expected \(2, 3\).*scores\[:, 1:\]"):
        evaluate_ranking(lambda a, b: np.zeros((b - a, 4)), q, ks=(1,), model="m")
    with pytest.raises(ModelError, match=r"shape \(1, 3\); expected \(2, 3\)"):
        evaluate_ranking(lambda a, b: np.zeros((1, 3)), q, ks=(1,), model="m")


def test_nan_names_the_query_and_the_item() -> None:
    s = np.array([[1.0, 2.0, 3.0], [1.0, np.nan, 3.0]])
    q = Queries(
        targets=np.array([0, 1]), num_items=3, user_ids=np.array(["u1", "u2"]), item_ids=np.array(["a", "b", "c"])
    )
    with pytest.raises(ModelError, match=r"row 1 \(user 'u2'\), column 1 \(item 'b'\)"):
        evaluate_ranking(lambda a, b: s[a:b], q, ks=(1,), model="m")


def test_queries_reject_targets_and_exclusions_outside_the_catalogue() -> None:
    with pytest.raises(DataError, match=r"target column 5, outside the catalogue 0..2"):
        Queries(targets=np.array([0, 5]), num_items=3)
    with pytest.raises(DataError, match=r"columns 0..7, outside 0..2"):
        Queries(targets=np.array([0]), num_items=3, exclude=Exclusions.from_lists([[0, 7]]))
    with pytest.raises(DataError, match="cover 2 queries but there are 1"):
        Queries(targets=np.array([0]), num_items=3, exclude=Exclusions.empty(2))
    with pytest.raises(DataError, match="'s' have 2 entries but there are 1"):
        Queries(targets=np.array([0]), num_items=3, slices={"s": np.array(["a", "b"])})
    with pytest.raises(DataError, match="catalogue is empty"):
        Queries(targets=np.zeros(0, dtype=np.int64), num_items=0)


def test_exclusions_validate_their_layout() -> None:
    with pytest.raises(DataError, match="start at 0"):
        Exclusions(np.array([1, 2]), np.array([0, 1]))
    with pytest.raises(DataError, match="ends at 3 but there are 2"):
        Exclusions(np.array([0, 3]), np.array([0, 1]))
    e = Exclusions.from_lists([[1, 2], [], [0]])
    assert len(e) == 3
    assert e.rows(1, 3).indptr.tolist() == [0, 0, 1] and e.rows(1, 3).indices.tolist() == [0]


def test_batches_are_capped_by_catalogue_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(M, "MAX_BATCH_ELEMENTS", 10)
    s = np.arange(7 * 4, dtype=np.float64).reshape(7, 4)
    sizes: list[int] = []

    def rows(a: int, b: int) -> np.ndarray:
        sizes.append(b - a)
        return s[a:b]

    capped = evaluate_ranking(
        rows, Queries(targets=np.arange(7) % 4, num_items=4), ks=(1, 2), model="m", batch_size=100
    )
    assert max(sizes) == 2 and sum(sizes) == 7
    monkeypatch.setattr(M, "MAX_BATCH_ELEMENTS", 1 << 24)
    whole = evaluate_ranking(lambda a, b: s[a:b], Queries(targets=np.arange(7) % 4, num_items=4), ks=(1, 2), model="m")
    assert capped.overall == whole.overall


def test_ranked_lists_reject_bad_lists() -> None:
    q = Queries(targets=np.array([0, 1]), num_items=3)
    with pytest.raises(DataError, match="K = 3 is longer than the top-2 lists"):
        evaluate_ranked_lists(np.array([[0, 1], [1, 0]]), q, ks=(3,), model="m")
    with pytest.raises(DataError, match="holds an item twice"):
        evaluate_ranked_lists(np.array([[0, 0], [1, -1]]), q, ks=(1,), model="m")
    with pytest.raises(DataError, match="column 9 at position 2"):
        evaluate_ranked_lists(np.array([[0, 9], [1, -1]]), q, ks=(1,), model="m")
    ok = evaluate_ranked_lists(np.array([[2, -1], [1, 0]]), q, ks=(1, 2), model="m")
    assert ok.overall["hr@1"] == 0.5 and ok.overall["mrr@2"] == 0.5
    assert "top-2 list" in ok.protocol.sentence() and "MRR truncated at 2" in ok.protocol.sentence()


def test_cut_offs_must_be_positive() -> None:
    with pytest.raises(DataError, match="positive integers"):
        evaluate_ranking(lambda a, b: np.zeros((1, 2)), Queries(targets=np.array([0]), num_items=2), ks=(0,), model="m")


# --------------------------------------------------------------------------- protocol and result


def test_protocol_sentence_states_everything() -> None:
    p = EvalProtocol(split="test", num_items=1682, exclude_seen=True, ks=(10, 20), num_queries=943, oov_targets=2)
    s = p.sentence()
    for part in (
        "943 queries",
        "test split",
        "full catalogue of 1,682 items",
        "excluded, except the target itself",
        "ties broken",
        "2 out-of-vocabulary",
        "K in {10, 20}",
    ):
        assert part in s, part
    assert "not excluded" in EvalProtocol("validation", 5, False, (1,), 3, 0).sentence()


def test_result_pickles_and_round_trips_through_dict() -> None:
    s = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    q = Queries(
        targets=np.array([0, 1]),
        num_items=3,
        exclude=Exclusions.from_lists([[1], []]),
        slices={"a": np.array(["x", "y"])},
    )
    r = evaluate_ranking(lambda a, b: s[a:b], q, ks=(1, 2), model="m")
    assert pickle.loads(pickle.dumps(r)) == r
    assert EvaluationResult.from_dict(r.to_dict()) == r
    assert r.to_dict()["protocol"]["sentence"] == r.protocol.sentence()
