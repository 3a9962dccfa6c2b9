"""Interop with the real TensorFlow, both ways, and the tf.data reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparktf.tfenv import import_tensorflow
from sparktf.tfrecord import codec, tfrecord_dataset, write_tfrecord
from sparktf.tfrecord.dataset import parse_spec
from sparktf.tfrecord.schema import feature_specs


@pytest.fixture(scope="module")
def tf() -> Any:
    return import_tensorflow()


# --------------------------------------------------------------------------- our bytes, protobuf's parser


def _pb_values(feature: Any) -> list[Any] | None:
    kind = feature.WhichOneof("kind")
    if kind is None:
        return None
    return list(getattr(feature, kind).value)


@settings(deadline=None, max_examples=30)
@given(
    st.lists(
        st.tuples(
            st.none() | st.text(max_size=8),
            st.none() | st.integers(-(2**63), 2**63 - 1),
            st.none() | st.lists(st.floats(width=32, allow_nan=False), max_size=4),
            st.none() | st.lists(st.binary(max_size=5), max_size=4),
        ),
        max_size=8,
    )
)
def test_codec_output_parses_with_protobuf_to_the_same_values(tf: Any, rows: list[tuple[Any, ...]]) -> None:
    table = pa.table(
        {
            "s": pa.array([r[0] for r in rows], pa.string()),
            "i": pa.array([r[1] for r in rows], pa.int64()),
            "f": pa.array([r[2] for r in rows], pa.list_(pa.float32())),
            "b": pa.array([r[3] for r in rows], pa.list_(pa.binary())),
        }
    )
    buf, offsets = codec.encode_examples(table, feature_specs(table.schema))
    data = buf.to_pybytes()
    for row, a, b in zip(rows, offsets[:-1], offsets[1:], strict=True):
        example = tf.train.Example.FromString(data[a:b])
        feats = example.features.feature
        assert (_pb_values(feats["s"]) if "s" in feats else None) == (None if row[0] is None else [row[0].encode()])
        assert (_pb_values(feats["i"]) if "i" in feats else None) == (None if row[1] is None else [row[1]])
        assert (_pb_values(feats["f"]) if "f" in feats else None) == row[2]
        assert (_pb_values(feats["b"]) if "b" in feats else None) == row[3]
        # Byte-identical to protobuf's own serialization of the parsed message (fields in key order).
        rebuilt = tf.train.Example()
        rebuilt.features.SetInParent()
        for key in sorted(feats.keys()):
            rebuilt.features.feature[key].CopyFrom(feats[key])
        assert rebuilt == example


# --------------------------------------------------------------------------- Spark -> TensorFlow


@pytest.mark.spark
def test_spark_written_files_parse_with_tf_parse_example(spark: Any, tf: Any, tmp_path: Path) -> None:
    schema = "user string, n bigint, flag boolean, price double, hist array<string>, xs array<float>"
    rows = [
        ("u1", 5, True, 1.25, ["a", "b"], [0.5]),
        ("u2", None, False, None, [], []),
        ("u3", -3, None, 2.0, None, None),
    ]
    df = spark.createDataFrame(rows, schema).coalesce(1)
    out = tmp_path / "spark"
    write_tfrecord(df, str(out), codec="gzip")
    (part,) = sorted(out.glob("part-*.tfrecord.gz"))
    spec = parse_spec(df)
    serialized = next(iter(tf.data.TFRecordDataset(str(part), compression_type="GZIP").batch(10)))
    parsed = tf.io.parse_example(serialized, dict(spec.features))
    by_user = {u.decode(): i for i, u in enumerate(parsed["user"].numpy())}
    for user, n, flag, price, hist, xs in rows:
        i = by_user[user]
        assert parsed["n"][i].numpy() == (n if n is not None else 0)
        assert bool(parsed["flag"][i].numpy()) == bool(flag)
        assert parsed["price"][i].numpy() == np.float32(price if price is not None else 0.0)
        assert [h.decode() for h in parsed["hist"][i].numpy()] == (hist or [])
        assert parsed["xs"][i].numpy().tolist() == (xs or [])

    ds = tfrecord_dataset(str(out), df, batch_size=2, auto_shard_policy="DATA")
    batches = list(ds)
    assert [int(b["user"].shape[0]) for b in batches] == [2, 1]
    assert batches[0]["flag"].dtype == tf.bool and batches[0]["hist"].dtype == tf.string
    policy = ds.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA


@pytest.mark.spark
def test_tf_dataset_reads_partitions_and_sequence_examples(spark: Any, tf: Any, tmp_path: Path) -> None:
    df = spark.createDataFrame(
        [(1, [[1, 2], [3]], "train"), (2, [[4]], "test"), (3, [], "train")],
        "id bigint, steps array<array<bigint>>, split string",
    )
    out = tmp_path / "seq"
    write_tfrecord(df, str(out), record_type="SequenceExample", partition_by=["split"])
    ds = tfrecord_dataset(str(out), df, batch_size=8, record_type="SequenceExample")
    assert ds.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.FILE
    got = {}
    for batch in ds:
        for i, ident in enumerate(batch["id"].numpy().tolist()):
            got[ident] = (batch["steps"][i].to_list(), batch["split"][i].numpy().decode())
    assert got == {1: ([[1, 2], [3]], "train"), 2: ([[4]], "test"), 3: ([], "train")}


# --------------------------------------------------------------------------- TensorFlow -> Spark


@pytest.mark.spark
def test_tf_written_files_read_back_in_spark(spark: Any, tf: Any, tmp_path: Path) -> None:
    out = tmp_path / "tfw"
    out.mkdir()
    examples = []
    for i in range(3):
        ex = tf.train.Example()
        feats = ex.features.feature
        feats["id"].int64_list.value.append(i - 1)
        feats["name"].bytes_list.value.append(f"n{i}".encode())
        feats["scores"].float_list.value.extend([0.5 * j for j in range(i)])  # [] for i == 0
        if i == 0:
            feats["scores"].float_list.SetInParent()
        feats["nokind"].SetInParent()  # a Feature with no kind set
        feats["tags"].bytes_list.SetInParent()  # an empty list
        examples.append(ex)
    with tf.io.TFRecordWriter(str(out / "a.tfrecord")) as writer:
        for ex in examples[:2]:
            writer.write(ex.SerializeToString())
    with tf.io.TFRecordWriter(
        str(out / "b.tfrecord"), options=tf.io.TFRecordOptions(compression_type="GZIP")
    ) as writer:
        writer.write(examples[2].SerializeToString())
    schema = "id bigint, name string, scores array<float>, nokind array<string>, tags array<string>"
    got = sorted(spark.read.format("tfrecord").schema(schema).load(str(out)).collect())
    assert [tuple(r) for r in got] == [(-1, "n0", [], [], []), (0, "n1", [0.0], [], []), (1, "n2", [0.0, 0.5], [], [])]
    # A feature empty (or kind-less) in every record is a nullable list that reads as empty,
    # not Spark's void type, whose read failed ("Unsupported cast from large_binary to null").
    inferred = spark.read.format("tfrecord").load(str(out))
    assert {f.name: f.dataType.simpleString() for f in inferred.schema.fields} == {
        "id": "bigint",
        "name": "string",
        "scores": "array<float>",
        "nokind": "array<string>",
        "tags": "array<string>",
    }
    assert sorted(tuple(r) for r in inferred.select("id", "name", "scores", "nokind", "tags").collect()) == [
        tuple(r) for r in got
    ]

    seq_dir = tmp_path / "tfseq"
    seq_dir.mkdir()
    seq = tf.train.SequenceExample()
    seq.context.feature["user"].bytes_list.value.append(b"u")
    steps = seq.feature_lists.feature_list["steps"]
    steps.feature.add().int64_list.value.extend([1, 2])
    steps.feature.add().int64_list.SetInParent()
    steps.feature.add().int64_list.value.append(-5)
    seq.feature_lists.feature_list["clicks"].SetInParent()  # a feature list with no steps
    with tf.io.TFRecordWriter(str(seq_dir / "s.tfrecord")) as writer:
        writer.write(seq.SerializeToString())
    back = spark.read.format("tfrecord").option("recordType", "SequenceExample").load(str(seq_dir))
    assert {f.name: f.dataType.simpleString() for f in back.schema.fields} == {
        "user": "string",
        "steps": "array<array<bigint>>",
        "clicks": "array<array<string>>",
    }
    assert [r.asDict() for r in back.collect()] == [{"user": "u", "steps": [[1, 2], [], [-5]], "clicks": []}]
