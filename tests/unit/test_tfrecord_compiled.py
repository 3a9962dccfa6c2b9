"""The compiled decoder gives what the NumPy reference gives: rows, nulls, bad records and reasons.

Random tables are encoded, some records are damaged (cut, a byte changed, bytes put in,
an unknown field, a key repeated with another kind), and both decoders read them with
the table's schema, a narrower one, and one whose types do not match.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparktf.tfrecord import codec, compiled
from sparktf.tfrecord.schema import feature_specs
from tests.unit.test_tfrecord_codec import _FLAT, _entry, _example, _int64_list, _ld, _tables, _varint

_SEQ = [*_FLAT, "list<list<int64>>", "list<list<string>>"]


def _plain(v: Any) -> Any:
    """A value comparable with ``==`` (NaN, which a changed byte can make, equals itself here)."""
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _same(a: codec.DecodedBatch, b: codec.DecodedBatch) -> None:
    assert a.bad.tolist() == b.bad.tolist()
    assert a.reasons == b.reasons
    assert len(a.columns) == len(b.columns)
    for x, y in zip(a.columns, b.columns, strict=True):
        assert x.type == y.type
        assert _plain(x.to_pylist()) == _plain(y.to_pylist())


@st.composite
def _damage(draw: Any, record: bytes, names: list[str]) -> tuple[bytes, bool]:
    """A record, maybe damaged or re-encoded; True when it is left as the encoder wrote it."""
    how = draw(st.sampled_from(["none", "none", "cut", "byte", "insert", "unknown", "repeat", "empty-features"]))
    if how == "none" or (not record and how in ("cut", "byte")):
        return record, True
    if how == "cut":
        return record[: draw(st.integers(0, len(record) - 1))], False
    if how == "byte":
        i = draw(st.integers(0, len(record) - 1))
        return record[:i] + bytes([draw(st.integers(0, 255))]) + record[i + 1 :], False
    if how == "insert":
        i = draw(st.integers(0, len(record)))
        return record[:i] + draw(st.binary(min_size=1, max_size=4)) + record[i:], False
    if how == "unknown":  # a field Example does not have: protobuf skips it
        return record + _ld(7, b"x") + _varint(5 << 3) + _varint(3), False
    if how == "repeat":  # the same key again, last one wins (maybe with another kind)
        name = draw(st.sampled_from(names))
        return record + _example(_entry(name, _int64_list(*draw(st.lists(st.integers(-5, 5), max_size=3))))), False
    return _ld(1, b"") + record, True  # an empty Features message first: merged, still the fast path


@st.composite
def _cases(draw: Any, kinds: list[str], record_type: str) -> tuple[list[bytes], list[bool], pa.Schema, pa.Schema]:
    table = draw(_tables(kinds))
    specs = feature_specs(table.schema, record_type)
    buf, offsets = codec.encode_examples(table, specs, record_type)
    data = buf.to_pybytes()
    records, canonical = [], []
    for i in range(table.num_rows):
        rec, kept = draw(_damage(data[offsets[i] : offsets[i + 1]], table.schema.names))
        records.append(rec)
        canonical.append(kept)
    # What is read: the written schema, some of its columns, or types that do not match the data.
    read = table.schema
    pick = draw(st.sampled_from(["all", "some", "retyped"]))
    if pick == "some":
        keep = draw(st.lists(st.sampled_from(table.schema.names), min_size=1, unique=True))
        read = pa.schema([table.schema.field(n) for n in keep] + [pa.field("absent", pa.int64())])
    elif pick == "retyped":
        i = draw(st.integers(0, len(table.schema) - 1))
        new = draw(st.sampled_from([pa.int32(), pa.string(), pa.float32(), pa.list_(pa.int64()), pa.bool_()]))
        read = table.schema.set(i, pa.field(table.schema.field(i).name, new))
    return records, canonical, table.schema, read


def _check(records: list[bytes], canonical: list[bool], read: pa.Schema, record_type: str) -> None:
    offsets = np.cumsum([0, *[len(r) for r in records]]).astype(np.int64)
    data = codec.padded(b"".join(records))
    starts, ends = offsets[:-1], offsets[1:]
    specs = feature_specs(read, record_type)
    reference = codec.decode_examples(data, starts, ends, specs, record_type, is_padded=True)
    fast = compiled.decode_examples(data, starts, ends, specs, record_type, is_padded=True)
    _same(reference, fast)
    # The records as the encoder wrote them take the compiled walk, not the reference.
    fallback = compiled.scan(data, starts, ends, specs, record_type)[0]
    assert not fallback[np.asarray(canonical, dtype=bool)].any()


@settings(deadline=None, max_examples=100)
@given(_cases(_FLAT, "Example"))
def test_examples_decode_the_same_as_the_reference(case: tuple[list[bytes], list[bool], pa.Schema, pa.Schema]) -> None:
    records, canonical, _, read = case
    _check(records, canonical, read, "Example")


@settings(deadline=None, max_examples=100)
@given(_cases(_SEQ, "SequenceExample"))
def test_sequence_examples_decode_the_same_as_the_reference(
    case: tuple[list[bytes], list[bool], pa.Schema, pa.Schema],
) -> None:
    records, canonical, _, read = case
    _check(records, canonical, read, "SequenceExample")


def test_a_batch_with_a_damaged_record_keeps_every_row_in_place() -> None:
    good = [_example(_entry("x", _int64_list(i))) for i in range(5)]
    records = [*good[:2], good[2][:-1], *good[3:]]
    offsets = np.cumsum([0, *[len(r) for r in records]]).astype(np.int64)
    specs = feature_specs(pa.schema([("x", pa.int64())]), "Example")
    out = compiled.decode_examples(b"".join(records), offsets[:-1], offsets[1:], specs)
    assert out.columns[0].to_pylist() == [0, 1, None, 3, 4]
    assert out.bad.tolist() == [False, False, True, False, False]
    assert "malformed" in out.reasons[2]


# --------------------------------------------------------------------------- framing


@st.composite
def _framed(draw: Any) -> bytes:
    """Framed records, maybe with a byte changed (a length, a CRC, the data) and maybe cut short."""
    from sparktf.tfrecord import format as fmt

    data = b"".join(fmt.frame_one(r) for r in draw(st.lists(st.binary(max_size=40), max_size=8)))
    if data and draw(st.booleans()):
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([(data[i] + draw(st.integers(1, 255))) % 256]) + data[i + 1 :]
    if data and draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data


@settings(deadline=None, max_examples=300)
@given(_framed(), st.booleans(), st.booleans(), st.integers(0, 1000))
def test_the_compiled_walk_frames_like_the_reference(data: bytes, final: bool, check: bool, offset: int) -> None:
    from sparktf.tfrecord import format as fmt

    ref = fmt.split_records(data, file_offset=offset, final=final, check_crc=check, compiled=False)
    got = fmt.split_records(data, file_offset=offset, final=final, check_crc=check, compiled=True)
    for name in ("starts", "ends", "record_offsets", "bad_data_crc"):
        assert getattr(got, name).tolist() == getattr(ref, name).tolist(), name
    assert (got.consumed, got.error) == (ref.consumed, ref.error)


def test_the_compiled_crc_is_crc32c() -> None:
    from sparktf.tfrecord import format as fmt

    for n in range(0, 40):
        payload = bytes(range(7, 7 + n))
        buf = np.frombuffer(payload + b"\0" * 8, np.uint8)
        assert int(compiled._masked_crc(buf, 0, n, compiled._CRC)) == fmt.masked_crc32c(payload)


@settings(deadline=None, max_examples=200)
@given(st.binary(min_size=0, max_size=300), st.integers(0, 16))
def test_both_compiled_crcs_are_tfrecords_masked_crc32c(data: bytes, start: int) -> None:
    """The CPU's CRC-32C instruction (where Numba may use it) and the tables agree with
    google-crc32c's, on every length and alignment (the words are unaligned loads)."""
    from sparktf.tfrecord.format import masked_crc32c

    start = min(start, len(data))
    buf = np.frombuffer(data + bytes(8), np.uint8)  # room past the end, as a padded buffer has
    want = masked_crc32c(data[start:])
    assert int(compiled._masked_crc_sw(buf, start, len(data), compiled._CRC)) == want
    if compiled.HARDWARE_CRC:
        assert int(compiled._masked_crc_hw(buf, start, len(data), compiled._CRC)) == want


def test_the_hardware_crc_is_used_where_the_cpu_has_it() -> None:
    """Checked against the kernel's view of the CPU (``/proc/cpuinfo``), not llvmlite's,
    so the property test above exercises the instruction wherever the CPU has it."""
    import os
    import platform
    from pathlib import Path

    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists() or os.environ.get("NUMBA_CPU_NAME"):
        pytest.skip("needs Linux's /proc/cpuinfo and Numba compiling for this host")
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    has = x86 and " sse4_2" in cpuinfo.read_text()
    assert compiled.HARDWARE_CRC == has
    assert compiled._masked_crc is (compiled._masked_crc_hw if has else compiled._masked_crc_sw)


@settings(deadline=None, max_examples=100)
@given(st.lists(st.binary(max_size=70), max_size=12), st.integers(0, 3))
def test_compiled_framing_writes_what_the_reference_writes(records: list[bytes], skip: int) -> None:
    """The writer's framing (:func:`sparktf.tfrecord.compiled.frame_records`) against the
    NumPy/Arrow reference, byte for byte, also when the offsets start inside the data."""
    from sparktf.tfrecord import format as fmt

    data = b"".join(records)
    offsets = np.cumsum([0, *[len(r) for r in records]])[min(skip, len(records)) :]
    want = fmt.frame(data, offsets, compiled=False).to_pybytes()
    assert fmt.frame(data, offsets).to_pybytes() == want
    assert fmt.frame(np.frombuffer(data, np.uint8), offsets).to_pybytes() == want
    spans = fmt.split_records(want)
    assert spans.error is None and spans.bad_data_crc.size == 0 and spans.starts.size == max(len(offsets) - 1, 0)
