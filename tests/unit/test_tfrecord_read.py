"""Reading one file in each mode, without Spark: what FAILFAST says, what DROPMALFORMED counts."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pyspark.sql.types import LongType, StringType, StructField, StructType

from sparktf.errors import CorruptRecordError
from sparktf.tfrecord import codec
from sparktf.tfrecord import format as fmt
from sparktf.tfrecord.datasource import ReadOptions, _plan, read_file
from sparktf.tfrecord.schema import feature_specs

SCHEMA = StructType([StructField("id", LongType()), StructField("s", StringType())])


def _write(path: Path, n: int = 6, *, gz: bool = False) -> fmt.RecordSpans:
    table = pa.table({"id": pa.array(range(n), pa.int64()), "s": pa.array([f"v{i}" for i in range(n)])})
    buf, offsets = codec.encode_examples(table, feature_specs(table.schema))
    data = fmt.frame(buf, offsets).to_pybytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return fmt.split_records(data)


def _read(path: Path, mode: str, schema: StructType = SCHEMA, decoder: str = "compiled") -> list[dict[str, object]]:
    opts = ReadOptions(path=str(path), mode=mode, batch_size=4, decoder=decoder)
    plan = _plan(schema, opts, [])
    rows: list[dict[str, object]] = []
    for batch in read_file(str(path), plan, opts, {}):
        assert batch.schema == plan.arrow_schema
        rows += batch.to_pylist()
    return rows


def _corrupt(path: Path) -> tuple[int, int]:
    spans = _write(path)
    data = bytearray(path.read_bytes())
    data[int(spans.starts[1]) + 1] ^= 0x55  # record 1: data CRC fails
    data[int(spans.starts[4]) : int(spans.starts[4]) + 2] = b"\x0a\x7f"  # record 4: broken protobuf
    # Fix record 4's CRC so only its protobuf is wrong.
    start, end = int(spans.starts[4]), int(spans.ends[4])
    data[end : end + 4] = fmt.masked_crc32c(bytes(data[start:end])).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return int(spans.record_offsets[1]), int(spans.record_offsets[4])


def test_gzip_and_plain_files_read_the_same(tmp_path: Path) -> None:
    _write(tmp_path / "a.tfrecord")
    _write(tmp_path / "b.tfrecord.gz", gz=True)
    assert _read(tmp_path / "a.tfrecord", "FAILFAST") == _read(tmp_path / "b.tfrecord.gz", "FAILFAST")
    assert [r["id"] for r in _read(tmp_path / "a.tfrecord", "FAILFAST")] == list(range(6))


def test_failfast_names_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "c.tfrecord"
    crc_offset, _ = _corrupt(path)
    with pytest.raises(CorruptRecordError, match=rf"{path} at byte offset {crc_offset}: data CRC mismatch"):
        _read(path, "FAILFAST")


def test_dropmalformed_skips_and_logs_count_and_offsets(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "d.tfrecord"
    crc_offset, proto_offset = _corrupt(path)
    with caplog.at_level(logging.WARNING, logger="sparktf.tfrecord"):
        rows = _read(path, "DROPMALFORMED")
    assert [r["id"] for r in rows] == [0, 2, 3, 5]
    (message,) = [r.getMessage() for r in caplog.records]
    assert f"skipped 2 corrupt record(s) in {path}" in message
    assert f"{crc_offset}, {proto_offset}" in message


def test_permissive_keeps_bad_records_as_corrupt_rows(tmp_path: Path) -> None:
    path = tmp_path / "p.tfrecord"
    crc_offset, proto_offset = _corrupt(path)
    schema = StructType([*SCHEMA.fields, StructField("_corrupt_record", StringType())])
    rows = _read(path, "PERMISSIVE", schema)
    assert len(rows) == 6
    bad = {i: r["_corrupt_record"] for i, r in enumerate(rows) if r["_corrupt_record"]}
    assert sorted(bad) == [1, 4]
    assert f"byte offset {crc_offset}: data CRC mismatch" in str(bad[1])
    assert f"byte offset {proto_offset}: malformed" in str(bad[4])
    assert rows[1]["id"] is None and rows[4]["s"] is None and rows[5]["id"] == 5


def test_truncated_tail_is_one_corrupt_row_after_the_good_ones(tmp_path: Path) -> None:
    path = tmp_path / "t.tfrecord"
    spans = _write(path)
    path.write_bytes(path.read_bytes()[:-7])
    schema = StructType([*SCHEMA.fields, StructField("_corrupt_record", StringType())])
    rows = _read(path, "PERMISSIVE", schema)
    assert [r["id"] for r in rows] == [0, 1, 2, 3, 4, None]
    assert f"byte offset {int(spans.record_offsets[5])}: truncated" in str(rows[-1]["_corrupt_record"])
    assert np.all([r["_corrupt_record"] is None for r in rows[:-1]])


def test_bytes_that_are_not_utf8_infer_as_binary_and_read_back_with_inference(tmp_path: Path) -> None:
    """A BytesList is ``string`` only when every sampled value is valid UTF-8; the project's
    own binary columns read back with inference, and a ``string`` schema over them is an error."""
    from pyspark.sql.types import ArrayType, BinaryType

    from sparktf.tfrecord.datasource import infer_schema

    n = 40
    blobs = [bytes([0xFF, i, 0xC3]) if i % 7 == 3 else f"ok{i}".encode() for i in range(n)]
    table = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "blob": pa.array(blobs, pa.binary()),
            "text": pa.array([f"é{i}" for i in range(n)]),  # multi-byte, valid
            "split_char": pa.array([[b"\xc3", b"\xa9"]] * n, pa.list_(pa.binary())),  # é cut in two values
            "bin_list": pa.array([[b"a", b"\x80"]] * n, pa.list_(pa.binary())),
        }
    )
    buf, offsets = codec.encode_examples(table, feature_specs(table.schema))
    path = tmp_path / "part-0.tfrecord"
    path.write_bytes(fmt.frame(buf, offsets).to_pybytes())
    schema = infer_schema(ReadOptions(path=str(tmp_path)))
    assert {f.name: f.dataType for f in schema.fields} == {
        "id": LongType(),
        "blob": BinaryType(),
        "text": StringType(),
        "split_char": ArrayType(BinaryType()),
        "bin_list": ArrayType(BinaryType()),
    }
    rows = _read(path, "FAILFAST", schema)
    assert [r["blob"] for r in rows] == blobs and rows[5]["text"] == "é5"
    assert rows[0]["split_char"] == [b"\xc3", b"\xa9"] and rows[0]["bin_list"] == [b"a", b"\x80"]
    # Asked for text, the bytes that are not text are an error naming the column.
    with pytest.raises(Exception, match="blob"):
        _read(path, "FAILFAST", StructType([StructField("blob", StringType())]))


def test_the_decoder_option_picks_the_decoder_and_both_read_the_same(tmp_path: Path) -> None:
    from sparktf.errors import TFRecordError

    assert ReadOptions.parse({"path": "p", "decoder": "NumPy"}).decoder == "numpy"
    assert ReadOptions.parse({"path": "p"}).decoder == "compiled"
    with pytest.raises(TFRecordError, match="decoder = 'numba'.*compiled, numpy"):
        ReadOptions.parse({"path": "p", "decoder": "numba"})
    path = tmp_path / "both.tfrecord"
    _corrupt(path)
    schema = StructType([*SCHEMA.fields, StructField("_corrupt_record", StringType())])
    compiled_rows = _read(path, "PERMISSIVE", schema, decoder="compiled")
    assert compiled_rows == _read(path, "PERMISSIVE", schema, decoder="numpy")
    assert [r["id"] for r in compiled_rows] == [0, None, 2, 3, None, 5]


# --------------------------------------------------------------------------- a corrupt length, byte-range splits


def _write_ids(path: Path, sizes: list[int]) -> fmt.RecordSpans:
    """Records of ids 0..n-1, record i padded to about ``sizes[i]`` bytes by its string."""
    table = pa.table({"id": pa.array(range(len(sizes)), pa.int64()), "s": pa.array(["x" * k for k in sizes])})
    buf, offsets = codec.encode_examples(table, feature_specs(table.schema))
    data = fmt.frame(buf, offsets).to_pybytes()
    path.write_bytes(data)
    return fmt.split_records(data)


def _break_length(path: Path, spans: fmt.RecordSpans, i: int) -> int:
    data = bytearray(path.read_bytes())
    head = int(spans.record_offsets[i])
    data[head] ^= 0x01  # the length no longer matches its CRC
    path.write_bytes(bytes(data))
    return head


def _ids(path: Path, mode: str, start: int = 0, end: int | None = None, schema: StructType = SCHEMA) -> list[dict]:
    opts = ReadOptions(path=str(path), mode=mode, batch_size=3)
    plan = _plan(schema, opts, [])
    return [r for b in read_file(str(path), plan, opts, {}, start=start, end=end) for r in b.to_pylist()]


def test_after_a_corrupt_length_reading_resumes_at_the_next_record(tmp_path: Path) -> None:
    path = tmp_path / "len.tfrecord"
    spans = _write_ids(path, [5, 40, 7, 300, 2, 9])
    bad = _break_length(path, spans, 2)
    nxt = int(spans.record_offsets[3])
    # Only the record whose length is corrupt is lost (it was the whole rest of the file).
    assert [r["id"] for r in _ids(path, "DROPMALFORMED")] == [0, 1, 3, 4, 5]
    schema = StructType([*SCHEMA.fields, StructField("_corrupt_record", StringType())])
    rows = _ids(path, "PERMISSIVE", schema=schema)
    assert [r["id"] for r in rows] == [0, 1, None, 3, 4, 5]
    reason = str(rows[2]["_corrupt_record"])
    assert f"byte offset {bad}: length CRC mismatch" in reason
    assert f"reading resumes at byte offset {nxt}, the next whole record ({nxt - bad} bytes skipped)" in reason
    with pytest.raises(CorruptRecordError, match=rf"byte offset {bad}: length CRC mismatch"):
        _ids(path, "FAILFAST")


def test_a_corrupt_length_in_the_last_record_skips_only_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "last.tfrecord"
    spans = _write_ids(path, [5, 6, 7])
    _break_length(path, spans, 2)
    schema = StructType([*SCHEMA.fields, StructField("_corrupt_record", StringType())])
    rows = _ids(path, "PERMISSIVE", schema=schema)
    assert [r["id"] for r in rows] == [0, 1, None]
    assert "no whole record follows it" in str(rows[2]["_corrupt_record"])


def test_a_corrupt_first_length_resyncs_instead_of_calling_the_file_foreign(tmp_path: Path) -> None:
    path = tmp_path / "first.tfrecord"
    spans = _write_ids(path, [5, 6, 7])
    _break_length(path, spans, 0)
    schema = StructType([*SCHEMA.fields, StructField("_corrupt_record", StringType())])
    rows = _ids(path, "PERMISSIVE", schema=schema)
    assert [r["id"] for r in rows] == [None, 1, 2]
    reason = str(rows[0]["_corrupt_record"])
    assert "byte offset 0: length CRC mismatch" in reason and "reading resumes at byte offset" in reason
    assert "not a TFRecord file" not in reason
    with pytest.raises(CorruptRecordError, match="does not start with a TFRecord header"):
        _ids(path, "FAILFAST")  # FAILFAST stops at the first byte and cannot tell


@settings(deadline=None, max_examples=120)
@given(
    st.lists(st.integers(0, 300), min_size=1, max_size=25),
    st.integers(1, 2000),
    st.one_of(st.none(), st.integers(0, 24)),
)
# Found by this test: a corrupt length at byte 0 was taken for a foreign file, and the
# good record that starts inside the first split was lost with the rest of that split.
@example(sizes=[0, 0], split_bytes=43, broken=0)
def test_byte_range_splits_read_every_record_once(sizes: list[int], split_bytes: int, broken: int | None) -> None:
    import tempfile

    from sparktf.tfrecord import files
    from sparktf.tfrecord.datasource import splits

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.tfrecord"
        spans = _write_ids(path, sizes)
        expected = list(range(len(sizes)))
        if broken is not None and broken < len(sizes):
            _break_length(path, spans, broken)
            expected.remove(broken)
        parts = splits([files.TFRecordFile(str(path), path.stat().st_size)], split_bytes)
        assert len(parts) == -(-path.stat().st_size // split_bytes)
        schema = StructType([*SCHEMA.fields, StructField("_corrupt_record", StringType())])
        rows = [r for p in parts for r in _ids(path, "PERMISSIVE", p.start, p.end, schema=schema)]
        assert [r["id"] for r in rows if r["id"] is not None] == expected
        # The damage is reported once, by one split.
        assert len([r for r in rows if r["_corrupt_record"]]) == (0 if len(expected) == len(sizes) else 1)
