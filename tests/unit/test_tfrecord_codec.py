"""The Example/SequenceExample codec: round trips, wire-format tolerance, malformed records."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparktf.errors import SchemaError
from sparktf.tfrecord import codec
from sparktf.tfrecord.schema import feature_specs

# --------------------------------------------------------------------------- helpers: a tiny protobuf writer


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _ld(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _entry(key: str, feature: bytes) -> bytes:
    return _ld(1, _ld(1, key.encode()) + _ld(2, feature))


def _example(*entries: bytes) -> bytes:
    return _ld(1, b"".join(entries))


def _int64_list(*values: int) -> bytes:
    return _ld(3, _ld(1, b"".join(_varint(v) for v in values)) if values else b"")


def _decode(records: list[bytes], schema: pa.Schema, record_type: str = "Example") -> codec.DecodedBatch:
    offsets = np.cumsum([0, *[len(r) for r in records]])
    return codec.decode_examples(
        b"".join(records), offsets[:-1], offsets[1:], feature_specs(schema, record_type), record_type
    )


def _roundtrip(table: pa.Table, record_type: str = "Example") -> pa.Table:
    specs = feature_specs(table.schema, record_type)
    buf, offsets = codec.encode_examples(table, specs, record_type)
    decoded = codec.decode_examples(buf.to_pybytes(), offsets[:-1], offsets[1:], specs, record_type)
    assert not decoded.bad.any(), decoded.reasons
    return pa.Table.from_arrays(decoded.columns, schema=table.schema)


# --------------------------------------------------------------------------- varints


@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=50))
def test_varints_match_protobuf_encoding_and_decode_back(values: list[int]) -> None:
    data, offsets = codec.varint_encode(np.array(values, dtype=np.int64))
    assert data.tobytes() == b"".join(_varint(v) for v in values)
    assert np.diff(offsets).tolist() == [len(_varint(v)) for v in values]
    decoded, ends = codec.varint_decode(data)
    assert decoded.tolist() == values
    assert ends.tolist() == offsets[1:].tolist()


# --------------------------------------------------------------------------- round trips

_text = st.text(max_size=12)
_i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_f32 = st.floats(width=32, allow_nan=False)
_f64 = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e30, max_value=1e30)


def _column(draw: Any, kind: str, n: int) -> tuple[pa.DataType, list[Any]]:
    maybe = lambda s: st.none() | s  # noqa: E731
    if kind == "string":
        return pa.string(), draw(st.lists(maybe(_text), min_size=n, max_size=n))
    if kind == "binary":
        return pa.binary(), draw(st.lists(maybe(st.binary(max_size=10)), min_size=n, max_size=n))
    if kind == "int64":
        return pa.int64(), draw(st.lists(maybe(_i64), min_size=n, max_size=n))
    if kind == "int32":
        return pa.int32(), draw(st.lists(maybe(st.integers(-(2**31), 2**31 - 1)), min_size=n, max_size=n))
    if kind == "bool":
        return pa.bool_(), draw(st.lists(maybe(st.booleans()), min_size=n, max_size=n))
    if kind == "float":
        return pa.float32(), draw(st.lists(maybe(_f32), min_size=n, max_size=n))
    if kind == "double":
        return pa.float64(), draw(st.lists(maybe(_f64), min_size=n, max_size=n))
    if kind == "list<int64>":
        return pa.list_(pa.int64()), draw(st.lists(maybe(st.lists(_i64, max_size=5)), min_size=n, max_size=n))
    if kind == "list<float>":
        return pa.list_(pa.float32()), draw(st.lists(maybe(st.lists(_f32, max_size=5)), min_size=n, max_size=n))
    if kind == "list<string>":
        return pa.list_(pa.string()), draw(st.lists(maybe(st.lists(_text, max_size=5)), min_size=n, max_size=n))
    if kind == "list<list<int64>>":
        inner = st.lists(st.lists(_i64, max_size=3), max_size=3)
        return pa.list_(pa.list_(pa.int64())), draw(st.lists(maybe(inner), min_size=n, max_size=n))
    assert kind == "list<list<string>>"
    inner_s = st.lists(st.lists(_text, max_size=3), max_size=3)
    return pa.list_(pa.list_(pa.string())), draw(st.lists(maybe(inner_s), min_size=n, max_size=n))


_FLAT = ["string", "binary", "int64", "int32", "bool", "float", "double", "list<int64>", "list<float>", "list<string>"]


@st.composite
def _tables(draw: Any, kinds: list[str]) -> pa.Table:
    n = draw(st.integers(0, 12))
    chosen = draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=6))
    fields, arrays = [], []
    for i, kind in enumerate(chosen):
        t, values = _column(draw, kind, n)
        name = draw(st.sampled_from(["", "é", "a b", "x"])) + f"c{i}"
        fields.append(pa.field(name, t))
        arrays.append(pa.array(values, t))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _expected(table: pa.Table) -> dict[str, list[Any]]:
    out = {}
    for field, col in zip(table.schema, table.columns, strict=True):
        values = col.to_pylist()
        if pa.types.is_float64(field.type):
            values = [None if v is None else float(np.float32(v)) for v in values]
        out[field.name] = values
    return out


@settings(deadline=None, max_examples=80)
@given(_tables(_FLAT))
def test_example_roundtrip_keeps_values_nulls_and_empty_lists(table: pa.Table) -> None:
    assert _roundtrip(table).to_pydict() == _expected(table)


@settings(deadline=None, max_examples=40)
@given(_tables([*_FLAT, "list<list<int64>>", "list<list<string>>"]))
def test_sequence_example_roundtrip(table: pa.Table) -> None:
    assert _roundtrip(table, "SequenceExample").to_pydict() == _expected(table)


def test_batches_with_sliced_arrays_and_large_types_roundtrip() -> None:
    table = pa.table(
        {
            "s": pa.array(["a", "bb", None, "dddd"], pa.large_string()),
            "l": pa.array([[1], [2, 3], [], None], pa.large_list(pa.int64())),
            "d": pa.array([1.25, 2.5, None, 3.0]).cast(pa.decimal128(6, 2)),
        }
    ).slice(1, 3)
    back = _roundtrip(table)
    assert back.column("s").to_pylist() == ["bb", None, "dddd"]
    assert back.column("l").to_pylist() == [[2, 3], [], None]
    assert [None if v is None else float(v) for v in back.column("d").to_pylist()] == [2.5, None, 3.0]


def test_vectors_are_written_dense_and_read_back() -> None:
    vt = pa.struct(
        [
            pa.field("type", pa.int8(), False),
            pa.field("size", pa.int32()),
            pa.field("indices", pa.list_(pa.field("element", pa.int32(), False))),
            pa.field("values", pa.list_(pa.field("element", pa.float64(), False))),
        ]
    )
    vectors = pa.array(
        [
            {"type": 1, "size": None, "indices": None, "values": [1.0, 2.0]},
            {"type": 0, "size": 4, "indices": [1, 3], "values": [5.0, 7.0]},
            None,
        ],
        vt,
    )
    table = pa.table({"v": vectors})
    back = _roundtrip(table)
    assert [None if v is None else v["values"] for v in back.column("v").to_pylist()] == [
        [1.0, 2.0],
        [0.0, 5.0, 0.0, 7.0],
        None,
    ]


def test_null_inside_an_array_is_an_error_naming_the_column() -> None:
    table = pa.table({"hist": pa.array([["a"], ["b", None]], pa.list_(pa.string()))})
    with pytest.raises(SchemaError, match=r"'hist'.*null element.*row 1"):
        codec.encode_examples(table, feature_specs(table.schema))


# --------------------------------------------------------------------------- what protobuf allows


def test_decoder_accepts_unpacked_unknown_fields_any_order_and_no_kind() -> None:
    unpacked_ints = _ld(3, _varint(8) + _varint(7) + _varint(8) + _varint(2**64 - 3))  # field 1 wire 0, twice
    float_mixed = _ld(2, _ld(1, struct.pack("<f", 1.5)) + _varint(13) + struct.pack("<f", 2.5))  # packed + unpacked
    value_then_key = _ld(1, _ld(2, _int64_list(42)) + _ld(1, b"late") + _varint(40) + _varint(1))  # + unknown varint
    no_kind = _entry("nokind", b"")
    no_value = _ld(1, _ld(1, b"novalue"))
    unknown_top = _ld(7, b"ignored") + _varint(5 << 3) + _varint(99)
    record = unknown_top + _example(
        _entry("ints", unpacked_ints), _entry("floats", float_mixed), value_then_key, no_kind, no_value
    )
    schema = pa.schema(
        [
            ("ints", pa.list_(pa.int64())),
            ("floats", pa.list_(pa.float32())),
            ("late", pa.int64()),
            ("nokind", pa.list_(pa.string())),
            ("novalue", pa.list_(pa.int64())),
            ("absent", pa.string()),
        ]
    )
    out = _decode([record], schema)
    assert not out.bad.any(), out.reasons
    assert [c.to_pylist()[0] for c in out.columns] == [[7, -3], [1.5, 2.5], 42, [], [], None]


def test_repeated_keys_last_wins_and_repeated_features_messages_merge() -> None:
    record = _example(_entry("k", _int64_list(1))) + _example(_entry("k", _int64_list(2)), _entry("j", _int64_list(3)))
    out = _decode([record], pa.schema([("k", pa.int64()), ("j", pa.int64())]))
    assert [c.to_pylist() for c in out.columns] == [[2], [3]]


@pytest.mark.parametrize(
    ("record", "schema", "reason"),
    [
        (_example(_entry("x", _int64_list(1)))[:-1], pa.schema([("x", pa.int64())]), "malformed"),
        (_example(_entry("x", _ld(2, _ld(1, struct.pack("<f", 1.0))))), pa.schema([("x", pa.int64())]), "FloatList"),
        (_example(_entry("x", _int64_list(1, 2))), pa.schema([("x", pa.int64())]), "2 values"),
        (_example(_entry("x", _int64_list(2**40))), pa.schema([("x", pa.int32())]), "outside the range"),
        (_example(_entry("x", _ld(1, _ld(1, b"\xff\xfe")))), pa.schema([("x", pa.string())]), "not UTF-8"),
        (_example(_entry("x", _ld(2, _ld(1, b"abc")))), pa.schema([("x", pa.list_(pa.float32()))]), "malformed"),
        (b"\x0f", pa.schema([("x", pa.int64())]), "malformed"),
    ],
)
def test_malformed_records_are_flagged_with_a_reason_and_neighbours_survive(
    record: bytes, schema: pa.Schema, reason: str
) -> None:
    good = _example(
        _entry("x", _int64_list(1) if not pa.types.is_string(schema.field(0).type) else _ld(1, _ld(1, b"ok")))
    )
    if pa.types.is_list(schema.field(0).type):
        good = _example(_entry("x", _ld(2, _ld(1, struct.pack("<f", 1.0)))))
    out = _decode([good, record, good], schema)
    assert out.bad.tolist() == [False, True, False]
    assert reason in out.reasons[1]
    assert out.columns[0].to_pylist()[0] is not None and out.columns[0].to_pylist()[2] is not None


def test_observe_features_reports_kinds_and_list_lengths() -> None:
    records = [
        _example(_entry("a", _int64_list(1)), _entry("b", _ld(1, _ld(1, b"x") + _ld(1, b"y")))),
        _example(_entry("a", _int64_list(1, 2)), _entry("c", b"")),
    ]
    offsets = np.cumsum([0, *[len(r) for r in records]])
    seen = codec.observe_features(b"".join(records), offsets[:-1], offsets[1:])
    assert sorted(seen) == [("a", 3, 1, 2), ("b", 1, 1, 2), ("c", 0, 1, 0)]


def test_float_rounding_is_float32() -> None:
    table = pa.table({"d": pa.array([0.1, 1e-50, 3.4e38], pa.float64())})
    back = _roundtrip(table).column("d").to_pylist()
    assert back[0] == float(np.float32(0.1)) and back[0] != 0.1
    assert back[1] == 0.0 and math.isclose(back[2], float(np.float32(3.4e38)))


def test_keys_of_every_length_match_their_columns() -> None:
    names = [
        "",
        "k",
        "exactly8",
        "exactly_16_bytes",
        "exactly_16_byteZ",
        "a_feature_name_longer_than_16_bytes",
        "é" * 9,
    ]
    table = pa.table({name: pa.array([i, i + 100], pa.int64()) for i, name in enumerate(names)})
    back = _roundtrip(table)
    assert back.to_pydict() == table.to_pydict()


def test_sliced_batches_encode_like_fresh_ones() -> None:
    table = pa.table(
        {
            "l": pa.array([[1, 2], [3], [], [4, 5, 6]], pa.list_(pa.int64())),
            "f": pa.array([[1.0], [2.0, 2.5], None, []], pa.list_(pa.float64())),
            "fx": pa.array([[1, 2], [3, 4], [5, 6], [7, 8]], pa.list_(pa.int32(), 2)),
            "s": pa.array([["a"], ["b", "c"], [], ["d"]], pa.list_(pa.string())),
        }
    )
    specs = feature_specs(table.schema)
    sliced = table.slice(1, 2)
    fresh = pa.Table.from_pylist(sliced.to_pylist(), schema=table.schema)
    a, ao = codec.encode_examples(sliced, specs)
    b, bo = codec.encode_examples(fresh, specs)
    assert a.to_pybytes() == b.to_pybytes() and ao.tolist() == bo.tolist()
