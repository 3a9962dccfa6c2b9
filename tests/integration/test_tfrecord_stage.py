"""The ``tfrecords`` pipeline stage on a small ``data/features/examples`` table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sparktf.config import load_config
from sparktf.errors import DataError
from sparktf.stages import tfrecords
from sparktf.stages.runner import get_stage
from sparktf.tfrecord import tfrecord_dataset

pytestmark = pytest.mark.spark

EXAMPLES_DDL = (
    "user_id string, history array<string>, history_len int, target string, target_category string, "
    "target_brand string, target_price_bucket int, window_end boolean, event_time timestamp, user_activity string, "
    "split string"
)


def _examples(spark: Any, workdir: Path, splits: list[str]) -> Any:
    from datetime import datetime

    rows = [
        (
            f"u{i}",
            [f"i{j}" for j in range(i % 4)],
            i % 4,
            f"i{i}",
            "c",
            None,
            i % 3,
            i % 2 == 0,
            datetime(2026, 1, 1),
            "low",
            split,
        )
        for i, split in enumerate(splits)
    ]
    df = spark.createDataFrame(rows, EXAMPLES_DDL)
    df.write.mode("overwrite").partitionBy("split").parquet(str(workdir / "data" / "features" / "examples"))
    return df


def test_stage_writes_each_split_and_the_schema(spark: Any, workdir: Path) -> None:
    splits = ["train"] * 5 + ["validation"] * 2 + ["test"] * 2
    source = _examples(spark, workdir, splits)
    cfg = load_config(
        overrides=[
            f'workdir="{workdir}"',
            "tfrecord.codec=gzip",
            "tfrecord.compression_level=1",
            "tfrecord.files_per_split=2",
        ]
    )
    stage = get_stage("tfrecords")
    assert stage.run is tfrecords.run
    out = stage.run(cfg)
    assert out.rows == {"train": 5, "validation": 2, "test": 2}
    assert out.files["train"] == 2
    tfr = workdir / "tfrecords"
    for split in ("train", "validation", "test"):
        assert (tfr / split / "_SUCCESS").exists()
        assert all(p.name.endswith(".tfrecord.gz") for p in (tfr / split).glob("part-*"))
        # gzip's XFL header byte says how hard zlib worked: 4 is "fastest" (level 1).
        assert {p.read_bytes()[8] for p in (tfr / split).glob("part-*")} == {4}
    schema = json.loads((tfr / "schema.json").read_text())
    names = [f["name"] for f in schema["fields"]]
    assert "split" not in names and "event_time" not in names and "history" in names

    back = (
        spark.read.format("tfrecord")
        .schema(spark.read.parquet(str(workdir / "data/features/examples")).drop("split", "event_time").schema)
        .load(str(tfr / "train"))
    )
    expected = source.where("split = 'train'").drop("split", "event_time")
    assert sorted(back.collect()) == sorted(expected.collect())

    ds = tfrecord_dataset(str(tfr / "validation"), str(tfr / "schema.json"), batch_size=4)
    (batch,) = list(ds)
    assert sorted(u.decode() for u in batch["user_id"].numpy()) == ["u5", "u6"]
    assert batch["target_brand"].numpy().tolist() == [b"", b""]  # nulls read back as the default


def test_stage_refuses_unknown_splits(spark: Any, workdir: Path) -> None:
    _examples(spark, workdir, ["train", "holdout"])
    cfg = load_config(overrides=[f'workdir="{workdir}"'])
    with pytest.raises(DataError, match=r"split value\(s\) \['holdout'\]"):
        get_stage("tfrecords").run(cfg)
    assert not (workdir / "tfrecords").exists()
