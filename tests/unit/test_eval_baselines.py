"""Baseline scoring, popularity buckets and evaluate_scores, without Spark."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from sparktf.errors import DataError, ModelError
from sparktf.evaluation.baselines import ALSRecommender, ItemCooccurrence, MostPopular, RepeatFrequent
from sparktf.evaluation.evalset import EvalSet, evaluate_scores, popularity_buckets
from sparktf.evaluation.metrics import Exclusions, Queries

ITEMS = np.array(["a", "b", "c", "d"], dtype=object)
COUNTS = np.array([9, 5, 5, 1])


def _markov() -> ItemCooccurrence:
    # a -> c (3 times), a -> d (1), b -> a (2); c and d have no successors.
    return ItemCooccurrence(
        item_ids=ITEMS,
        indptr=np.array([0, 2, 3, 3, 3]),
        indices=np.array([2, 3, 0]),
        counts=np.array([3, 1, 2]),
        popularity=COUNTS,
    )


def _order(row: np.ndarray) -> list[str]:
    return [ITEMS[j] for j in sorted(range(len(row)), key=lambda j: (-row[j], j))]


def test_most_popular_scores_every_row_by_count() -> None:
    s = MostPopular(counts=COUNTS).score(pd.DataFrame({"user_id": ["u", "v"], "history": [["a"], []]}))
    assert s.shape == (2, 4)
    assert _order(s[0]) == _order(s[1]) == ["a", "b", "c", "d"]


def test_cooccurrence_ranks_successors_then_popularity() -> None:
    batch = pd.DataFrame({"history": [["d", "a"], ["b"], ["c"], [], ["zzz"], None]})
    s = _markov().score(batch)
    assert _order(s[0]) == ["c", "d", "a", "b"]  # successors of a by count, then the rest by popularity
    assert _order(s[1]) == ["a", "b", "c", "d"]  # b -> a, then popularity
    # No successors, no history, an unknown last item: popularity alone.
    for row in s[2:]:
        assert _order(row) == ["a", "b", "c", "d"]
    # Pair counts always outrank the popularity tie-break.
    assert s[0, 3] > s[0, 0]


def test_cooccurrence_tie_between_successors_goes_to_the_more_popular() -> None:
    m = ItemCooccurrence(
        item_ids=ITEMS,
        indptr=np.array([0, 0, 0, 0, 2]),
        indices=np.array([2, 1]),
        counts=np.array([4, 4]),
        popularity=np.array([1, 3, 7, 2]),
    )
    assert _order(m.score(pd.DataFrame({"history": [["d"]]}))[0])[:2] == ["c", "b"]


def test_als_scores_by_dot_product_and_falls_back_to_popularity() -> None:
    als = ALSRecommender(
        user_ids=np.array(["u1", "u2"], dtype=object),
        user_factors=np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32),
        item_factors=np.array([[0.1, 0.9], [0.5, 0.5], [0.9, 0.1], [0.0, 0.0]], dtype=np.float32),
        popularity=COUNTS,
    )
    s = als.score(pd.DataFrame({"user_id": ["u2", "nobody", "u1"]}))
    np.testing.assert_allclose(s[0], [0.9, 0.5, 0.1, 0.0], rtol=1e-6)
    np.testing.assert_allclose(s[2], [0.1, 0.5, 0.9, 0.0], rtol=1e-6)
    assert _order(s[1]) == ["a", "b", "c", "d"]


T0 = pd.Timestamp("2020-01-01")


def _repeat() -> RepeatFrequent:
    # u1 had a once and c twice before any query, then d at +100 s and +120 s and b at +200 s
    # (validation/test steps); u2 had b three times. Times in microseconds, as fitted.
    def us(seconds: int) -> int:
        return (T0 + pd.Timedelta(seconds=seconds)).value // 1000

    return RepeatFrequent(
        user_ids=np.array(["u1", "u2"], dtype=object),
        base_indptr=np.array([0, 2, 3]),
        base_indices=np.array([0, 2, 1]),
        base_counts=np.array([1, 2, 3]),
        later_indptr=np.array([0, 3, 3]),
        later_indices=np.array([3, 3, 1]),
        later_times=np.array([us(100), us(120), us(200)]),
        popularity=COUNTS,
    )


def test_repeat_frequent_counts_the_users_steps_before_the_query_then_popularity() -> None:
    batch = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u1", "u2", "nobody"],
            "event_time": T0 + pd.to_timedelta([110, 150, 200, 250, 150, 150], unit="s"),
        }
    )
    s = _repeat().score(batch)
    tie = COUNTS / 10  # popularity below 1: 9 / (9 + 1) for the most popular
    np.testing.assert_allclose(s[0], np.array([1, 0, 2, 1]) + tie)  # d once before +110 s
    np.testing.assert_allclose(s[1], np.array([1, 0, 2, 2]) + tie)  # d twice before +150 s
    np.testing.assert_allclose(s[2], np.array([1, 0, 2, 2]) + tie)  # b at +200 s is not before a query at +200 s
    np.testing.assert_allclose(s[3], np.array([1, 1, 2, 2]) + tie)
    assert _order(s[3]) == ["c", "d", "a", "b"]
    np.testing.assert_allclose(s[4], np.array([0, 3, 0, 0]) + tie)
    np.testing.assert_allclose(s[5], tie)  # an unknown user: popularity alone
    assert _order(s[5]) == ["a", "b", "c", "d"]
    # A count of one outranks any popularity.
    assert s[0, 3] > s[0, 1] and s[4, 1] > s[4, 0]


def test_repeat_frequent_needs_the_query_time_only_for_later_steps() -> None:
    s = _repeat().score(pd.DataFrame({"user_id": ["u2", "nobody"]}))
    np.testing.assert_allclose(s[0], [0, 3, 0, 0] + COUNTS / 10)
    with pytest.raises(DataError, match=r"repeat_frequent needs the queries' event_time") as info:
        _repeat().score(pd.DataFrame({"user_id": ["u1"]}))
    assert info.value.hint


def test_recommenders_pickle() -> None:
    m = pickle.loads(pickle.dumps(_markov()))
    assert _order(m.score(pd.DataFrame({"history": [["a"]]}))[0]) == ["c", "d", "a", "b"]
    r = pickle.loads(pickle.dumps(_repeat()))
    assert _order(r.score(pd.DataFrame({"user_id": ["u2"]}))[0]) == ["b", "a", "c", "d"]


def test_popularity_buckets_cut_by_cumulative_share() -> None:
    # Shares before each item (most popular first): 0, .5, .7, .8, .9 of 10 interactions.
    labels = popularity_buckets(np.array([1, 5, 2, 1, 1]), (0.5, 0.8))
    assert labels.tolist() == ["torso", "head", "torso", "tail", "tail"]
    assert popularity_buckets(np.array([0, 0]), (0.5, 0.8)).tolist() == ["head", "head"]


def _eval_set() -> EvalSet:
    frame = pd.DataFrame(
        {"user_id": ["u1", "u2", "u3"], "history": [["b"], ["a"], ["a", "b"]], "history_len": [1, 1, 2]}
    )
    queries = Queries(
        targets=np.array([0, 2, -1]),
        num_items=4,
        exclude=Exclusions.from_lists([[1], [0], [0, 1]]),
        slices={"user_activity": np.array(["low", "high", "high"])},
        user_ids=frame["user_id"].to_numpy(),
        item_ids=ITEMS,
    )
    return EvalSet(split="test", item_ids=ITEMS, item_counts=COUNTS, frame=frame, queries=queries)


def test_evaluate_scores_feeds_rows_without_targets_and_ranks() -> None:
    seen: list[pd.DataFrame] = []

    def score_fn(batch: pd.DataFrame) -> np.ndarray:
        seen.append(batch)
        return _markov().score(batch)

    r = evaluate_scores(_eval_set(), score_fn, model="markov", ks=(1, 2), batch_size=2)
    assert [len(b) for b in seen] == [2, 1]
    assert all(list(b.index) == list(range(len(b))) for b in seen)
    assert not any(c.startswith("target") for b in seen for c in b.columns)
    # u1: last b -> a (hit at 1); u2: last a -> c (hit at 1, a is excluded anyway); u3: OOV target.
    assert r.overall["hr@1"] == pytest.approx(2 / 3)
    assert r.protocol.oov_targets == 1 and r.protocol.num_items == 4
    assert r.slices["user_activity"]["high"]["count"] == 2


def test_evaluate_scores_names_the_bad_item() -> None:
    def score_fn(batch: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(batch), 4))
        out[:, 3] = np.nan
        return out

    with pytest.raises(ModelError, match=r"user 'u1'.*item 'd'"):
        evaluate_scores(_eval_set(), score_fn, model="broken", ks=(1,))
