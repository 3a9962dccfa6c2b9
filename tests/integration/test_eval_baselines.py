"""Evaluation against the real things: features on Spark, Spark ML ALS, a SQLite MLflow store.

``write_features`` writes the tables of docs/data-contract.md from plain sequences, so
these tests do not depend on the features stage; the MovieLens test reuses it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sparktf.config import EvalConfig
from sparktf.errors import DataError, SchemaError, TrackingError
from sparktf.evaluation.baselines import MostPopular, evaluate_baselines, fit_repeat_frequent
from sparktf.evaluation.evalset import EvalSet, evaluate_scores, load_eval_set
from sparktf.evaluation.report import comparison_markdown, log_to_mlflow

pytestmark = pytest.mark.spark

EXAMPLE_SCHEMA = (
    "user_id string, history array<string>, history_len int, target string, target_category string, "
    "target_brand string, target_price_bucket int, event_time timestamp, user_activity string, split string"
)


def write_features(
    spark: Any,
    root: Path,
    sequences: Mapping[str, Sequence[str]],
    categories: Mapping[str, str],
    *,
    max_history: int = 20,
) -> None:
    """Leave-last-out features from each user's items in time order (at least 3 each).

    Last item = test, second-last = validation, the rest = train; train examples start
    at the second item (the first has no history). The vocabulary and ``seen`` cover the
    train part only, as the data contract says.
    """
    rows = []
    train_counts: Counter[str] = Counter()
    user_train: dict[str, int] = {}
    for user, items in sequences.items():
        n = len(items)
        train_counts.update(items[: n - 2])
        user_train[user] = n - 2
        for pos in range(1, n):
            split = "test" if pos == n - 1 else "validation" if pos == n - 2 else "train"
            history = list(items[max(0, pos - max_history) : pos])
            rows.append((user, history, len(history), items[pos], split, pos))
    cuts = np.quantile(list(user_train.values()), [1 / 3, 2 / 3])
    activity = {u: "low" if c <= cuts[0] else "mid" if c <= cuts[1] else "high" for u, c in user_train.items()}
    examples = pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "history": [r[1] for r in rows],
            "history_len": np.array([r[2] for r in rows], dtype=np.int32),
            "target": [r[3] for r in rows],
            "target_category": [categories.get(r[3]) for r in rows],
            "target_brand": [None] * len(rows),
            "target_price_bucket": np.zeros(len(rows), dtype=np.int32),
            "event_time": pd.to_datetime([1_600_000_000 + r[5] for r in rows], unit="s"),
            "user_activity": [activity[r[0]] for r in rows],
            "split": [r[4] for r in rows],
        }
    )
    spark.createDataFrame(examples, EXAMPLE_SCHEMA).write.partitionBy("split").parquet(str(root / "examples"))
    ranked = sorted(train_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    vocab = pd.DataFrame(
        {
            "item_id": [k for k, _ in ranked],
            "index": np.arange(1, len(ranked) + 1, dtype=np.int32),
            "count": np.array([c for _, c in ranked], dtype=np.int64),
        }
    )
    spark.createDataFrame(vocab, "item_id string, index int, count long").write.parquet(str(root / "vocab" / "items"))
    users = sorted(sequences)
    spark.createDataFrame(
        pd.DataFrame(
            {
                "user_id": users,
                "index": np.arange(1, len(users) + 1, dtype=np.int32),
                "count": np.array([user_train[u] for u in users], dtype=np.int64),
            }
        ),
        "user_id string, index int, count long",
    ).write.parquet(str(root / "vocab" / "users"))
    seen = pd.DataFrame({"user_id": users, "items": [sorted(set(sequences[u][:-2])) for u in users]})
    spark.createDataFrame(seen, "user_id string, items array<string>").write.parquet(str(root / "seen"))


# A world where every user walks a cycle of 12 items, one step at a time, from
# a different start: the next item is a function of the last one.
CYCLE = [f"i{j:02d}" for j in range(12)]
CATEGORIES = {item: ("even" if j % 2 == 0 else "odd") for j, item in enumerate(CYCLE)}


def _cycle_sequences() -> dict[str, list[str]]:
    rng = np.random.default_rng(7)
    out = {}
    for u in range(30):
        start, length = int(rng.integers(0, 12)), int(rng.integers(4, 9))
        out[f"u{u:02d}"] = [CYCLE[(start + s) % 12] for s in range(length)]
    return out


@pytest.fixture(scope="module")
def cycle_features(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    root = tmp_path_factory.mktemp("eval-features")
    sequences = _cycle_sequences()
    write_features(spark, root, sequences, CATEGORIES)
    return root, sequences


@pytest.fixture(scope="module")
def cycle_results(spark: Any, cycle_features: tuple[Path, dict[str, list[str]]]) -> dict[str, Any]:
    root, _ = cycle_features
    cfg = EvalConfig(
        ks=(1, 3, 10),
        als_rank=4,
        als_max_iter=3,
        baselines=("most_popular", "item_cooccurrence", "als", "repeat_frequent"),
    )
    return evaluate_baselines(spark, str(root), cfg)


def test_eval_set_maps_targets_exclusions_and_slices(
    spark: Any, cycle_features: tuple[Path, dict[str, list[str]]]
) -> None:
    root, sequences = cycle_features
    es: EvalSet = load_eval_set(spark, str(root), split="test")
    assert len(es) == len(sequences)
    assert list(es.frame["user_id"]) == sorted(sequences)
    assert not any(c.startswith("target") or c == "split" for c in es.frame.columns)
    col = {item: j for j, item in enumerate(es.item_ids)}
    for q, user in enumerate(es.frame["user_id"]):
        items = sequences[user]
        target = items[-1]
        assert es.queries.targets[q] == col.get(target, -1)
        lo, hi = es.queries.exclude.indptr[q], es.queries.exclude.indptr[q + 1]  # type: ignore[union-attr]
        excluded = {es.item_ids[j] for j in es.queries.exclude.indices[lo:hi]}  # type: ignore[union-attr]
        # Everything before the target that the catalogue knows: train part and history.
        assert excluded == {i for i in items[:-1] if i in col}
        assert es.queries.slices["target_category"][q] == CATEGORIES[target]
    assert set(es.queries.slices["user_activity"]) <= {"low", "mid", "high"}
    assert set(es.queries.slices["target_popularity"]) <= {"head", "torso", "tail", "oov"}
    plain = load_eval_set(spark, str(root), split="validation", exclude_seen=False)
    assert plain.queries.exclude is None and len(plain) == len(sequences)


def test_baselines_on_a_deterministic_walk(cycle_results: dict[str, Any]) -> None:
    assert list(cycle_results) == ["most_popular", "item_cooccurrence", "als", "repeat_frequent"]
    markov = cycle_results["item_cooccurrence"].overall
    popular = cycle_results["most_popular"].overall
    # Nobody walks the whole cycle, so no target is a repeat: the user's counts only touch
    # excluded items and what is left is ranked by popularity.
    assert cycle_results["repeat_frequent"].overall == popular
    # The last item determines the next one, so the Markov baseline is always right.
    assert markov["hr@1"] == 1.0 and markov["mrr"] == 1.0
    assert popular["hr@1"] < 1.0
    als = cycle_results["als"].overall
    assert 0.0 <= als["hr@10"] <= 1.0 and als["coverage@10"] > 0.0
    proto = cycle_results["most_popular"].protocol
    assert proto.num_queries == 30 and proto.exclude_seen and proto.split == "test"
    assert {r.protocol for r in cycle_results.values()} == {proto}
    print("\n" + comparison_markdown(list(cycle_results.values())))


def test_repeat_frequent_counts_every_step_before_the_target(spark: Any, tmp_path: Path) -> None:
    # Shoppers who buy again, with histories of only 2 items: most counts must come from
    # beyond the history.
    rng = np.random.default_rng(11)
    items = [f"p{j}" for j in range(6)]
    sequences = {f"u{u:02d}": [str(x) for x in rng.choice(items, size=int(rng.integers(4, 12)))] for u in range(40)}
    write_features(spark, tmp_path, sequences, {}, max_history=2)
    plain = {s: load_eval_set(spark, str(tmp_path), split=s, exclude_seen=False) for s in ("test", "validation")}
    repeat = fit_repeat_frequent(spark, str(tmp_path), plain["test"])  # the fit does not depend on the split
    for split, back in (("test", 1), ("validation", 2)):
        es = plain[split]
        scores = repeat.score(es.frame)
        col = {item: j for j, item in enumerate(es.item_ids)}
        for q, user in enumerate(es.frame["user_id"]):
            before = Counter(sequences[user][:-back])  # every step before the target, never the target
            expected = np.zeros(es.num_items)
            for item, n in before.items():
                if item in col:
                    expected[col[item]] = n
            np.testing.assert_array_equal(np.floor(scores[q]), expected, err_msg=f"{split} {user}")
    popular = MostPopular(counts=plain["test"].item_counts)
    hr = {m.name: evaluate_scores(plain["test"], m, model=m.name, ks=(3,)).overall["hr@3"] for m in (popular, repeat)}
    assert hr["repeat_frequent"] > hr["most_popular"]
    # The product protocol keeps the target among the excluded seen items, so every repeated
    # target is the one candidate with a count: ranked first (see the module docstring).
    product = load_eval_set(spark, str(tmp_path), split="test")
    ranked = evaluate_scores(product, repeat, model="repeat_frequent", ks=(1,)).overall
    repeats = sum(items[-1] in items[:-1] for items in sequences.values())
    assert repeats > 0 and ranked["hr@1"] >= repeats / len(sequences)


def test_missing_tables_and_columns_are_named(spark: Any, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"Cannot read the item vocabulary table at .*nowhere/vocab/items"):
        load_eval_set(spark, str(tmp_path / "nowhere"))
    root = tmp_path / "f"
    spark.createDataFrame([("a", 1, 3)], "item_id string, index int, count long").write.parquet(
        str(root / "vocab" / "items")
    )
    spark.createDataFrame([("u", "a", "test")], "user_id string, target string, split string").write.parquet(
        str(root / "examples")
    )
    with pytest.raises(SchemaError, match=r"examples table at .*/examples lacks column\(s\) history, target_category"):
        load_eval_set(spark, str(root))


def test_vocabulary_must_be_numbered_from_one(spark: Any, tmp_path: Path) -> None:
    spark.createDataFrame([("a", 1, 3), ("b", 3, 1)], "item_id string, index int, count long").write.parquet(
        str(tmp_path / "vocab" / "items")
    )
    with pytest.raises(DataError, match=r"number its 2 items 1..2; row 1 \(item 'b'\) has index 3"):
        load_eval_set(spark, str(tmp_path))


def test_log_to_mlflow_sqlite(cycle_results: dict[str, Any], tmp_path: Path) -> None:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        # Artifacts under tmp_path: an experiment made without a location would put them
        # in ./mlruns, the project root when `make test` runs.
        mlflow.set_experiment(
            experiment_id=mlflow.create_experiment("eval-test", artifact_location=(tmp_path / "art").as_uri())
        )
        result = cycle_results["item_cooccurrence"]
        run_id = log_to_mlflow(result, prefix="test/")
        with mlflow.start_run(run_name="model") as active:
            inner = log_to_mlflow(cycle_results["most_popular"])
        assert inner == active.info.run_id
        assert mlflow.active_run() is None
        client = mlflow.MlflowClient()
        run = client.get_run(run_id)
        assert run.data.metrics["test/hr_at_1"] == result.overall["hr@1"]
        assert run.data.metrics["test/ndcg_at_10"] == pytest.approx(result.overall["ndcg@10"])
        assert run.data.metrics["test/target_category/even/count"] == result.slices["target_category"]["even"]["count"]
        assert run.data.tags["test/evaluation.protocol"] == result.protocol.sentence()
        artifacts = {a.path for a in client.list_artifacts(run_id, "evaluation")}
        assert artifacts == {
            "evaluation/test_item_cooccurrence.md",
            "evaluation/test_item_cooccurrence.json",
            "evaluation/test_item_cooccurrence.metric_names.json",
        }
        assert client.get_run(inner).data.metrics["mrr"] == cycle_results["most_popular"].overall["mrr"]
        # An explicit store and run, whatever the current store is.
        other = f"sqlite:///{tmp_path}/other.db"
        other_client = mlflow.MlflowClient(other)
        elsewhere = other_client.create_experiment("elsewhere", artifact_location=(tmp_path / "art2").as_uri())
        target = other_client.create_run(elsewhere).info.run_id
        assert log_to_mlflow(result, run_id=target, tracking_uri=other) == target
        assert other_client.get_run(target).data.metrics["hr_at_1"] == result.overall["hr@1"]
        with pytest.raises(TrackingError, match=r"no run_id was given"):
            log_to_mlflow(result, tracking_uri=other)
    finally:
        mlflow.set_tracking_uri(None)
