"""Corrupt TFRecord data: every reader names the file and the byte offset, and says the data is at fault."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyspark.sql.types import LongType, StructField, StructType

from sparktf.errors import CorruptRecordError
from sparktf.tfrecord import codec
from sparktf.tfrecord import format as fmt
from sparktf.tfrecord.datasource import ReadOptions, _plan, read_file
from sparktf.tfrecord.schema import feature_specs

SCHEMA = StructType([StructField("id", LongType())])


def _records(n: int = 5) -> bytes:
    table = pa.table({"id": pa.array(range(n), pa.int64())})
    buf, offsets = codec.encode_examples(table, feature_specs(table.schema))
    return bytes(fmt.frame(buf, offsets).to_pybytes())


def _damaged(data: bytes, record: int) -> tuple[bytes, int]:
    """``data`` with one payload byte of ``record`` flipped, and that record's offset."""
    spans = fmt.split_records(data)
    out = bytearray(data)
    out[int(spans.starts[record])] ^= 0xFF
    return bytes(out), int(spans.record_offsets[record])


def test_the_error_says_the_data_is_corrupt_and_to_rewrite_it_not_to_fix_code() -> None:
    err = fmt.corrupt("/data/part-0.tfrecord", 4096, "data CRC mismatch")
    text = str(err)
    assert "Corrupt TFRecord data in /data/part-0.tfrecord at byte offset 4096: data CRC mismatch" in err.message
    assert "Rewrite the file" in text and "writer" in text and "DROPMALFORMED" in text
    assert "train_fn" not in text
    assert err.context == {"file": "/data/part-0.tfrecord", "offset": 4096}
    assert "at byte offset" not in fmt.corrupt("/x.tfrecord.gz", None, "bad gzip").message


def test_first_corruption_finds_the_first_bad_record_or_none() -> None:
    import io

    good = _records()
    assert fmt.first_corruption(io.BytesIO(good), "good") is None
    bad, offset = _damaged(good, 3)
    assert fmt.first_corruption(io.BytesIO(bad), "bad") == (
        offset,
        "data CRC mismatch (the record's bytes are corrupt)",
    )
    found = fmt.first_corruption(io.BytesIO(good[:-2]), "cut")
    assert found is not None and found[1].startswith("truncated record")


def test_a_cut_short_gzip_file_fails_the_spark_reader_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "part-0.tfrecord.gz"
    path.write_bytes(gzip.compress(_records(50))[:-12])
    opts = ReadOptions(path=str(path), mode="PERMISSIVE")
    with pytest.raises(CorruptRecordError) as info:
        list(read_file(str(path), _plan(SCHEMA, opts, []), opts, {}))
    assert f"Corrupt TFRecord data in {path}: the gzip stream cannot be decompressed" in info.value.message


# --------------------------------------------------------------------------- the tf.data reader


@pytest.fixture(scope="module")
def tf() -> Any:
    from sparktf.tfenv import import_tensorflow

    return import_tensorflow()


def _read_all(path: Path, **kwargs: Any) -> list[int]:
    from sparktf.tfrecord.dataset import tfrecord_dataset

    ds = tfrecord_dataset(str(path), StructType([StructField("id", LongType())]), 2, **kwargs)
    return sorted(int(v) for batch in ds for v in batch["id"].numpy())


@pytest.mark.slow
def test_tf_data_names_the_corrupt_file_and_offset(tf: Any, tmp_path: Path) -> None:
    (tmp_path / "part-0.tfrecord").write_bytes(_records(3))
    bad, offset = _damaged(_records(4), 2)
    victim = tmp_path / "part-1.tfrecord"
    victim.write_bytes(bad)
    with pytest.raises(tf.errors.OpError) as info:
        _read_all(tmp_path)
    text = str(info.value)
    assert f"Corrupt TFRecord data in {victim} at byte offset {offset}" in text
    assert "Rewrite the file" in text

    victim.write_bytes(gzip.compress(_records(4))[:-12])  # a gzip file cut short
    with pytest.raises(tf.errors.OpError, match=r"Corrupt TFRecord data in .*part-1\.tfrecord: the gzip stream"):
        _read_all(tmp_path)


@pytest.mark.slow
def test_tf_data_reads_intact_files_as_before_and_checks_a_rewritten_file_again(tf: Any, tmp_path: Path) -> None:
    import os

    path = tmp_path / "part-0.tfrecord"
    path.write_bytes(_records(5))
    assert _read_all(path) == [0, 1, 2, 3, 4]
    assert _read_all(path) == [0, 1, 2, 3, 4]  # found intact once, not read again (same size and time)
    bad, _offset = _damaged(_records(5), 1)
    path.write_bytes(bad)
    os.utime(path, ns=(1, 1))  # a different modification time: checked again
    with pytest.raises(tf.errors.OpError, match="Corrupt TFRecord data"):
        _read_all(path)
    # verify=False leaves corruption to TensorFlow's own, unnamed, error.
    with pytest.raises(tf.errors.OpError) as info:
        _read_all(path, verify=False)
    assert "Corrupt TFRecord data" not in str(info.value)
