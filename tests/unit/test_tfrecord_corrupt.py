"""Corrupt TFRecord data: every reader names the file and the byte offset, and says the data is at fault."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyspark.sql.types import LongType, StringType, StructField, StructType

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


def _read(path: Path, mode: str) -> list[dict[str, Any]]:
    opts = ReadOptions(path=str(path), mode=mode)
    schema = (
        StructType([*SCHEMA.fields, StructField("_corrupt_record", StringType())]) if mode == "PERMISSIVE" else SCHEMA
    )
    return [row for batch in read_file(str(path), _plan(schema, opts, []), opts, {}) for row in batch.to_pylist()]


def _cut_gzip(tmp_path: Path, records: int, *, at_record: int | None = None) -> tuple[Path, int, int]:
    """A gzip TFRecord file cut short: ``(path, whole records before the cut, where the damage starts)``.

    Cut inside the deflate data, or (``at_record``) right after a full flush that ends
    exactly on that record, so the stream breaks between two records. The expected
    numbers come from zlib directly, not from the code under test.
    """
    data = _records(records)
    if at_record is None:
        cut = gzip.compress(data)[:-12]  # the trailer and 4 bytes of the last deflate block
    else:
        end = int(fmt.split_records(data).record_offsets[at_record])
        co = zlib.compressobj(wbits=31)
        cut = co.compress(data[:end]) + co.flush(zlib.Z_FULL_FLUSH)  # never finished
    prefix = zlib.decompressobj(wbits=31).decompress(cut)
    spans = fmt.split_records(prefix, final=True)
    path = tmp_path / "part-0.tfrecord.gz"
    path.write_bytes(cut)
    return path, int(spans.starts.size), spans.error[0] if spans.error else len(prefix)


@pytest.mark.parametrize("at_record", [None, 20], ids=["inside-a-record", "between-records"])
def test_a_cut_short_gzip_file_reads_to_the_cut_then_follows_the_read_mode(
    tmp_path: Path, at_record: int | None
) -> None:
    from sparktf.tfrecord.datasource import infer_schema

    path, whole, offset = _cut_gzip(tmp_path, 5000, at_record=at_record)
    assert 0 < whole < 5000 and (at_record is None or whole == at_record)
    with pytest.raises(CorruptRecordError) as info:
        _read(path, "FAILFAST")
    assert f"Corrupt TFRecord data in {path} at byte offset {offset}: " in info.value.message
    assert "the gzip stream cannot be decompressed past here" in info.value.message
    assert info.value.context == {"file": str(path), "offset": offset}
    assert [r["id"] for r in _read(path, "DROPMALFORMED")] == list(range(whole))
    rows = _read(path, "PERMISSIVE")
    assert [r["id"] for r in rows[:-1]] == list(range(whole)) and rows[-1]["id"] is None
    assert rows[-1]["_corrupt_record"].startswith(f"{path} at byte offset {offset}: ")
    # Schema inference samples the records before the cut (it used to raise a bare EOFError).
    assert infer_schema(ReadOptions(path=str(tmp_path))).simpleString() == "struct<id:bigint>"
    assert fmt.first_corruption(fmt.GunzipStream(path.open("rb")), str(path))[0] == offset  # the tf.data check


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
    with pytest.raises(
        tf.errors.OpError,
        match=r"Corrupt TFRecord data in .*part-1\.tfrecord at byte offset \d+: .*the gzip stream cannot",
    ):
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


def test_a_file_that_is_not_tfrecords_is_named_as_such_and_an_underscore_hides_it(tmp_path: Path) -> None:
    from sparktf.tfrecord import files

    (tmp_path / "part-0.tfrecord").write_bytes(_records(3))
    readme = tmp_path / "README.md"
    readme.write_text("These are the training examples, written by sparktf on Monday.\n")
    found, _ = files.list_files(str(tmp_path))
    assert [Path(f.path).name for f in found] == ["README.md", "part-0.tfrecord"]
    with pytest.raises(CorruptRecordError) as info:
        _read(readme, "FAILFAST")
    assert f"Corrupt TFRecord data in {readme} at byte offset 0: the file does not start with a TFRecord header" in (
        info.value.message
    )
    assert "start its name with '_' or '.'" in info.value.message
    # PERMISSIVE looks for a whole record further on before calling the file foreign.
    [row] = _read(readme, "PERMISSIVE")
    assert "does not start with a TFRecord header" in row["_corrupt_record"]
    # A damaged length further in is still reported as damage, not as a foreign file.
    data = bytearray(_records(3))
    data[int(fmt.split_records(bytes(data)).record_offsets[1])] ^= 0xFF
    assert fmt.split_records(bytes(data)).error[1].startswith("length CRC mismatch: the length field is corrupt")
    readme.rename(tmp_path / "_README.md")
    assert [Path(f.path).name for f in files.list_files(str(tmp_path))[0]] == ["part-0.tfrecord"]
