"""The batch job's core without Spark or TensorFlow: rows per user with ranks, exclusions
and padding removed; model resolution from a workdir; the [index] and [batch] config."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from sparktf.config import load_config
from sparktf.errors import ConfigError, ModelError, RegistryError
from sparktf.inference.batch import recommend_rows
from sparktf.inference.resolve import fingerprint, latest_export, read_item_vectors, resolve_default, resolve_model
from sparktf.retrieval.index import BruteForceIndex

ITEMS = [f"i{i}" for i in range(6)]
EMB = np.eye(6, dtype=np.float32) * np.arange(1, 7, dtype=np.float32)[:, None]  # item i scores (i+1) * q[i]


class _MeanOfHistory:
    """A stand-in model: the query is the mean one-hot of the history (all ones when empty)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, users: list[str], histories: list[list[str]]) -> dict[str, np.ndarray]:
        self.calls.append(len(users))
        q = np.ones((len(users), 6), dtype=np.float32)
        for row, h in enumerate(histories):
            if h:
                q[row] = np.mean([np.eye(6)[ITEMS.index(x)] for x in h], axis=0)
        return {"query_embedding": q}


def test_rows_have_ranks_exclusions_and_no_padding() -> None:
    model = _MeanOfHistory()
    index = BruteForceIndex(EMB, ITEMS)
    users = ["a", "b", "c"]
    histories = [["i1", "i2"], [], ["i5"]]
    excludes = [["i2"], ["i0", "i1", "i2", "i3"], []]
    cols, short = recommend_rows(model, index, users, histories, excludes, k=3, batch_size=2)
    assert model.calls == [2, 1]  # batch_size users per model call
    got = list(zip(cols["user_id"], cols["rank"].tolist(), cols["item_id"], strict=True))
    # a: q = (i1 + i2) / 2 -> i2 (excluded), i1, then the zero scores by position;
    # b: every item scores (i+1), four excluded -> only i5, i4 remain (short of k);
    # c: i5 first.
    assert got[:3] == [("a", 1, "i1"), ("a", 2, "i0"), ("a", 3, "i3")]
    assert got[3:5] == [("b", 1, "i5"), ("b", 2, "i4")]
    assert got[5] == ("c", 1, "i5")
    assert short == 1
    assert cols["rank"].dtype == np.int32 and cols["score"].dtype == np.float32
    assert cols["score"][0] == pytest.approx(1.0)  # (1+1) * 0.5


def test_no_users_gives_empty_columns() -> None:
    cols, short = recommend_rows(_MeanOfHistory(), BruteForceIndex(EMB, ITEMS), [], [], None, k=2)
    assert short == 0 and all(len(v) == 0 for v in cols.values())


def _fake_export(path: Path, kind: str = "two_tower", run_id: str | None = "run-1") -> None:
    (path / "assets.extra").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"")
    (path / "assets.extra" / "item_ids.txt").write_text("\n".join(ITEMS) + "\n")
    np.save(path / "assets.extra" / "item_embeddings.npy", EMB)
    meta = {"kind": kind, "spec": {"run_id": run_id}} if run_id else {"kind": kind}
    (path / "assets.extra" / "sparktf.json").write_text(json.dumps(meta))


def test_latest_local_export_wins_and_carries_its_run(tmp_path: Path) -> None:
    base = tmp_path / "models" / "two_tower" / "export"
    for version in (1, 2, 10):
        _fake_export(base / str(version), run_id=f"run-{version}")
    (base / "11").mkdir()  # an unfinished export: no SavedModel yet
    assert latest_export(str(base)) == str(base / "10")
    ref, why = resolve_default(
        models_dir=str(tmp_path / "models"),
        kinds=("sequential", "two_tower"),
        registered_model=None,
        alias="champion",
        tracking_uri=None,
        download_root=None,
    )
    assert ref.path == str(base / "10") and ref.version == "two_tower/10" and ref.run_id == "run-10"
    assert "latest local export" in why and "no registry was given" in why
    assert resolve_model(str(base)).path == str(base / "10")
    ids, emb, meta = read_item_vectors(ref.path)
    assert ids.tolist() == ITEMS and meta["kind"] == "two_tower"
    assert fingerprint(ids, emb) == fingerprint(np.array(ITEMS, dtype=object), EMB.copy())
    assert fingerprint(ids, emb) != fingerprint(ids, emb * 2)


def test_missing_models_say_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="No model to use: no registry was given"):
        resolve_default(
            models_dir=str(tmp_path),
            kinds=("two_tower",),
            registered_model=None,
            alias="champion",
            tracking_uri=None,
            download_root=None,
        )
    with pytest.raises(ModelError, match="No model export at"):
        resolve_model(str(tmp_path / "nowhere"))
    with pytest.raises(RegistryError, match="is not of the form models:/name@alias"):
        resolve_model("models:/a/b/c")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ModelError, match="not written by sparktf's export_model"):
        resolve_model(str(tmp_path / "x"))
    assert not os.path.exists(tmp_path / "x" / "assets.extra")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("index.leaves_to_search=-1", "index.leaves_to_search = -1 is not allowed"),
        ("index.model_kind=ncf", "index.model_kind = 'ncf' is not allowed"),
        ("index.model=hdfs://x/y", "index.model = 'hdfs://x/y' is not allowed"),
        ("index.tuning_queries=5", "between 10 and 100,000"),
        ('batch.table="my table"', "batch.table = 'my table' is not allowed"),
        ("batch.batch_size=0", "batch.batch_size = 0 is not allowed"),
        ("batch.partitions=-2", "batch.partitions = -2 is not allowed"),
    ],
)
def test_index_and_batch_config_reject_bad_values(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_index_and_batch_config_defaults_round_trip() -> None:
    cfg = load_config(overrides=["index.model=models:/m@champion", "batch.users=/data/users", "batch.table=db.recs"])
    assert cfg.index.model == "models:/m@champion" and cfg.index.tune and cfg.index.tfrs_export
    assert cfg.batch.users == "/data/users" and cfg.batch.table == "db.recs" and cfg.batch.exclude_seen
