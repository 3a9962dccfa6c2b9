"""Example and SequenceExample decoding into Arrow columns, and the codec's public face.

Decoding walks the protobuf wire format of all records of a batch in lock step
(:mod:`sparktf.tfrecord.wire`), so a batch costs (fields per message) NumPy calls
rather than (records x fields) Python calls. It accepts what protobuf accepts:
fields in any order, unknown fields, unpacked repeated scalars, map entries
without key or value, a Feature with no kind set, repeated occurrences (map keys:
last wins; lists: concatenated). Encoding lives in :mod:`sparktf.tfrecord.encode`
and is re-exported here.

Why our own code: parsing ``example_pb2`` objects back into columns runs at about
55 k rows/s per core, and TensorFlow or tfx-bsl would make every Spark task load
TensorFlow. This needs NumPy and PyArrow only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from sparktf.tfrecord.encode import encode_examples
from sparktf.tfrecord.schema import KIND_BINARY, KIND_BYTES, KIND_FLOAT, KIND_INT64, KIND_NAMES, FeatureSpec
from sparktf.tfrecord.wire import (
    LOW_BYTES,
    gather,
    gather_binary,
    last_per_owner,
    ld_at,
    padded,
    parse_fields,
    repeated_fields,
    u64_at,
    varint_decode,
    varint_encode,
)

__all__ = [
    "DecodedBatch",
    "decode_examples",
    "encode_examples",
    "observe_features",
    "padded",
    "varint_decode",
    "varint_encode",
]


@dataclass
class _FeatureValues:
    """The values of a set of Feature messages.

    ``kind`` and ``count`` are per feature; the flat values are in feature order,
    with ``owner`` saying which feature each belongs to.
    """

    kind: np.ndarray
    count: np.ndarray
    bad: np.ndarray
    owner: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ints: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    floats: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    bytes_start: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    bytes_end: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    kind_owner: dict[int, np.ndarray] = field(default_factory=dict)

    def by_column(self, column_of_feature: np.ndarray, ncols: int) -> list[dict[int, np.ndarray]]:
        """For each column, the indices of its values within each kind's value arrays.

        One stable radix sort per kind, instead of a pass over all values per column.
        """
        out: list[dict[int, np.ndarray]] = [{} for _ in range(ncols)]
        for kind, owner in self.kind_owner.items():
            col = column_of_feature[owner].astype(np.int16)
            order = np.argsort(col, kind="stable")
            bounds = np.searchsorted(col[order], np.arange(ncols + 1))
            for c in range(ncols):
                out[c][kind] = order[bounds[c] : bounds[c + 1]]
        return out


def _feature_lists(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each Feature's kind and the spans of its list message(s): ``(kind, owner, start, end, bad)``."""
    m = starts.size
    empty = starts >= ends
    tag = buf[np.where(empty, 0, starts)]
    ok = ~empty & ((tag == 0x0A) | (tag == 0x12) | (tag == 0x1A))
    ok_ld, ls, le = ld_at(buf, np.where(ok, starts, 0), None)
    ok &= ok_ld & (le == ends)
    kind = np.where(ok, tag >> 3, 0).astype(np.int64)
    owner = np.flatnonzero(ok)
    ls, le = ls[ok], le[ok]
    bad = np.zeros(m, dtype=bool)
    slow = np.flatnonzero(~ok & ~empty)
    if slow.size:
        f = parse_fields(buf, starts[slow], ends[slow])
        bad[slow[f.bad]] = True
        is_kind = (f.number >= 1) & (f.number <= 3)
        bad[slow[f.owner[is_kind & (f.wire != 2)]]] = True
        f = f.select(is_kind & (f.wire == 2))
        last = last_per_owner(f.owner)
        kind[slow[f.owner[last]]] = f.number[last]
        # oneof: the kind parsed last wins; repeated occurrences of it merge (lists concatenate).
        f = f.select(f.number == kind[slow[f.owner]])
        owner = np.concatenate([owner, slow[f.owner]])
        ls = np.concatenate([ls, f.start])
        le = np.concatenate([le, f.end])
        order = np.argsort(owner, kind="stable")
        owner, ls, le = owner[order], ls[order], le[order]
    return kind, owner, ls, le, bad


def _list_items(
    buf: np.ndarray, owner: np.ndarray, ls: np.ndarray, le: np.ndarray, kind: np.ndarray, bad: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The value spans of list messages: a bytes element, a packed run, or one unpacked scalar.

    Returns ``(feature, start, end)`` in feature order; marks ``bad`` features.
    """
    list_kind = kind[owner]
    is_bytes = list_kind == KIND_BYTES
    b_idx = np.flatnonzero(is_bytes)
    eo, es, ee, ebad = repeated_fields(buf, ls[b_idx], le[b_idx], 1)
    bad[owner[b_idx[ebad]]] = True
    feats = [owner[b_idx[eo]]]
    starts, ends = [es], [ee]
    n_idx = np.flatnonzero(~is_bytes & (ls < le))
    ok, ps, pe = ld_at(buf, ls[n_idx], 0x0A)
    ok &= pe == le[n_idx]
    feats.append(owner[n_idx[ok]])
    starts.append(ps[ok])
    ends.append(pe[ok])
    slow = n_idx[~ok]
    if slow.size:
        items = parse_fields(buf, ls[slow], le[slow])
        item_feature = owner[slow[items.owner]]
        bad[owner[slow[items.bad]]] = True
        item_kind = kind[item_feature]
        first = items.number == 1
        allowed = (items.wire == 2) | ((item_kind == KIND_FLOAT) & (items.wire == 5))
        allowed |= (item_kind == KIND_INT64) & (items.wire == 0)
        bad[item_feature[first & ~allowed]] = True
        take = first & allowed
        feats.append(item_feature[take])
        starts.append(items.start[take])
        ends.append(items.end[take])
    feature, start, end = np.concatenate(feats), np.concatenate(starts), np.concatenate(ends)
    if len(feats) > 1:
        order = np.argsort(feature, kind="stable")
        feature, start, end = feature[order], start[order], end[order]
    return feature, start, end


def _decode_features(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> _FeatureValues:
    m = starts.size
    kind, owner, ls, le, bad = _feature_lists(buf, starts, ends)
    item_feature, item_start, item_end = _list_items(buf, owner, ls, le, kind, bad)
    item_kind = kind[item_feature]
    out = _FeatureValues(kind, np.zeros(m, np.int64), bad)
    take = ~bad[item_feature]
    bytes_items = take & (item_kind == KIND_BYTES)
    float_items = take & (item_kind == KIND_FLOAT)
    int_items = take & (item_kind == KIND_INT64)
    owners = []
    if bytes_items.any():
        out.bytes_start = item_start[bytes_items]
        out.bytes_end = item_end[bytes_items]
        owners.append(item_feature[bytes_items])
        out.kind_owner[KIND_BYTES] = owners[-1]
    if float_items.any():
        s, e, fi = item_start[float_items], item_end[float_items], item_feature[float_items]
        ragged = (e - s) % 4 != 0
        bad[fi[ragged]] = True
        s, e, fi = s[~ragged], e[~ragged], fi[~ragged]
        data, _ = gather(buf, s, e)
        out.floats = data.view("<f4")
        owners.append(np.repeat(fi, (e - s) // 4))
        out.kind_owner[KIND_FLOAT] = owners[-1]
    if int_items.any():
        s, e, fi = item_start[int_items], item_end[int_items], item_feature[int_items]
        # A span cut inside a varint would run into the next span's first value.
        cut = (e > s) & (buf[np.maximum(e - 1, 0)] >= 0x80)
        bad[fi[cut]] = True
        s, e, fi = s[~cut], e[~cut], fi[~cut]
        data, offs = gather(buf, s, e)
        values, vends = varint_decode(data)
        out.ints = values
        owners.append(fi[np.searchsorted(offs, vends, side="left") - 1])
        out.kind_owner[KIND_INT64] = owners[-1]
    if owners:
        # Features are disjoint by kind, so merging the per-kind owners keeps feature order per kind.
        out.owner = np.concatenate(owners)
        out.count = np.bincount(out.owner, minlength=m).astype(np.int64)
    out.bad = bad
    return out


@dataclass
class DecodedBatch:
    """The result of :func:`decode_examples`.

    Attributes:
        columns: one Arrow array per requested spec, ``n`` rows each (rows that
            are bad are null there, or a type default where the field is not nullable).
        bad: per record, whether it could not be decoded.
        reasons: per bad record, why (other entries are ``""``).
    """

    columns: list[pa.Array]
    bad: np.ndarray
    reasons: list[str]


class _Problems:
    """Collects the first reason each record is malformed."""

    def __init__(self, n: int) -> None:
        self.bad = np.zeros(n, dtype=bool)
        self.reasons = [""] * n

    def flag(self, records: np.ndarray, reason: str | Callable[[int], str]) -> None:
        for r in np.unique(records).tolist():
            if not self.bad[r]:
                self.bad[r] = True
                self.reasons[r] = reason(r) if callable(reason) else reason


def _entries(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, owner: np.ndarray, problems: _Problems, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The entries of ``map<string, V>`` messages: ``(record, key_start, key_end, value_start, value_end, has_value)``."""
    eo, es, ee, ebad = repeated_fields(buf, starts, ends, 1)
    problems.flag(owner[np.flatnonzero(ebad)], f"malformed protobuf in {what}")
    rec = owner[eo]
    # Nearly every entry is exactly ``0x0A key 0x12 value``; the rest are parsed in full.
    ok, ks, ke = ld_at(buf, es, 0x0A)
    ok &= ke < ee
    ok_v, vs, ve = ld_at(buf, np.where(ok, ke, es), 0x12)
    ok &= ok_v & (ve == ee)
    has_value = ok.copy()
    slow = np.flatnonzero(~ok)
    if slow.size:
        inner = parse_fields(buf, es[slow], ee[slow])
        problems.flag(rec[slow[inner.bad]], f"malformed map entry in {what}")
        for number, s_out, e_out in ((1, ks, ke), (2, vs, ve)):
            s_out[slow] = 0
            e_out[slow] = 0
            sel = inner.select((inner.number == number) & (inner.wire == 2))
            last = last_per_owner(sel.owner)
            s_out[slow[sel.owner[last]]] = sel.start[last]
            e_out[slow[sel.owner[last]]] = sel.end[last]
            if number == 2:
                has_value[slow[sel.owner[last]]] = True
    return rec, ks, ke, vs, ve, has_value


def _match_keys(buf: np.ndarray, ks: np.ndarray, ke: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Column index of each key (-1: not a requested column).

    Keys of up to 16 bytes (nearly all) are compared as two uint64 words, all keys
    against one name per step; longer ones byte by byte.
    """
    col = np.full(ks.size, -1, np.int64)
    lengths = ke - ks
    w0 = u64_at(buf, ks) & LOW_BYTES[np.clip(lengths, 0, 8)]
    w1 = u64_at(buf, ks + 8) & LOW_BYTES[np.clip(lengths - 8, 0, 8)]
    for c, name in enumerate(names):
        key = np.frombuffer(name.encode("utf-8"), np.uint8)
        if key.size <= 16:
            padded_key = np.zeros(16, np.uint8)
            padded_key[: key.size] = key
            w = padded_key.view("<u8")
            hit = (lengths == key.size) & (w0 == w[0]) & (w1 == w[1]) & (col < 0)
            col[hit] = c
            continue
        cand = np.flatnonzero((lengths == key.size) & (col < 0))
        if cand.size:
            cand = cand[(buf[ks[cand][:, None] + np.arange(key.size)] == key).all(axis=1)]
        col[cand] = c
    return col


def _dedupe(rec: np.ndarray, col: np.ndarray, ncols: int) -> np.ndarray:
    """Indices of the entries to use: requested columns only, the last of each (record, column)."""
    idx = np.flatnonzero(col >= 0)
    key = rec[idx] * max(ncols, 1) + col[idx]
    order = np.argsort(key, kind="stable")
    idx, key = idx[order], key[order]
    out: np.ndarray = idx[last_per_owner(key)]
    return out


def default_scalar(t: pa.DataType) -> Any:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return ""
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return b""
    if pa.types.is_boolean(t):
        return False
    return 0


class _ColumnBuilder:
    """Turns decoded features into one Arrow column of a requested type."""

    def __init__(self, buf: np.ndarray, spec: FeatureSpec, problems: _Problems) -> None:
        self.buf = buf
        self.spec = spec
        self.problems = problems

    def _flag(self, records: np.ndarray, what: str) -> None:
        self.problems.flag(records, f"feature {self.spec.name!r} {what}")

    def _flag_each(self, records: np.ndarray, values: np.ndarray, what: Callable[[Any], str]) -> None:
        """Flag ``records``, each with the first of its own ``values`` in the reason (not the batch's)."""
        first: dict[int, Any] = {}
        for r, v in zip(records.tolist(), values.tolist(), strict=True):
            first.setdefault(r, v)
        name = self.spec.name
        self.problems.flag(records, lambda r: f"feature {name!r} {what(first[r])}")

    def leaf_values(
        self,
        vals: _FeatureValues,
        features: np.ndarray,
        owner_rec: np.ndarray,
        value_idx: dict[int, Any] | None = None,
    ) -> tuple[pa.Array, np.ndarray]:
        """Values of ``features`` (indices into ``vals``) as one flat Arrow array of the leaf type,
        and the per-feature counts. Kind mismatches are flagged on ``owner_rec``.

        ``value_idx`` selects this column's values per kind (default: all of them).
        """
        spec = self.spec
        kind = vals.kind[features]
        count = vals.count[features]
        mismatch = (kind != spec.kind) & (kind != 0) & (count > 0)
        if mismatch.any():
            self._flag_each(
                owner_rec[mismatch],
                kind[mismatch],
                lambda k: f"is {KIND_NAMES[k]} but the column needs {KIND_NAMES[spec.kind]}",
            )
            count = np.where(mismatch, 0, count)
        leaf = _leaf_type(spec)
        # A mismatched feature's values sit in another kind's arrays, so selecting by
        # kind leaves them out; features are numbered in record order, so is the result.
        idx: Any = slice(None) if value_idx is None else value_idx.get(spec.kind, np.zeros(0, np.int64))

        def value_rec() -> np.ndarray:  # each value's record: only an error needs it
            return np.repeat(owner_rec, count)

        if spec.kind == KIND_BYTES:
            arr = gather_binary(self.buf, vals.bytes_start[idx], vals.bytes_end[idx])
            if pa.types.is_string(leaf) or pa.types.is_large_string(leaf):
                arr = self._to_string(arr, value_rec)
            return arr.cast(leaf), count
        if spec.kind == KIND_FLOAT:
            return self._cast_floats(vals.floats[idx], leaf), count
        return self._cast_ints(vals.ints[idx], leaf, value_rec), count

    def _to_string(self, arr: pa.Array, value_rec: Callable[[], np.ndarray]) -> pa.Array:
        try:
            return arr.cast(pa.large_string())
        except pa.ArrowInvalid:
            pass
        ok = np.ones(len(arr), dtype=bool)
        for i, v in enumerate(arr.to_pylist()):
            try:
                v.decode("utf-8")
            except UnicodeDecodeError:
                ok[i] = False
        self._flag(value_rec()[~ok], "holds bytes that are not UTF-8 but the column is a string")
        fixed = pa.array([v if good else b"" for v, good in zip(arr.to_pylist(), ok, strict=True)], pa.large_binary())
        return fixed.cast(pa.large_string())

    def _cast_floats(self, floats: np.ndarray, leaf: pa.DataType) -> pa.Array:
        arr = pa.array(floats.astype(np.float32), pa.float32())
        if pa.types.is_decimal(leaf):
            return arr.cast(pa.float64()).cast(leaf, safe=False)
        return arr.cast(leaf)

    def _cast_ints(self, ints: np.ndarray, leaf: pa.DataType, value_rec: Callable[[], np.ndarray]) -> pa.Array:
        if pa.types.is_boolean(leaf):
            lo, hi = 0, 1
        elif pa.types.is_integer(leaf):
            info = np.iinfo(leaf.to_pandas_dtype())
            lo, hi = int(info.min), int(info.max)
        else:
            lo, hi = -(1 << 63), (1 << 63) - 1
        out_of_range = (ints < lo) | (ints > hi)
        if out_of_range.any():
            self._flag_each(
                value_rec()[out_of_range], ints[out_of_range], lambda v: f"holds {v}, outside the range of {leaf}"
            )
            ints = np.where(out_of_range, 0, ints)
        if pa.types.is_boolean(leaf):
            return pa.array(ints.astype(bool), pa.bool_())
        if pa.types.is_floating(leaf) or pa.types.is_decimal(leaf):
            return pa.array(ints, pa.int64()).cast(leaf)
        return pa.array(ints, pa.int64()).cast(leaf, safe=False)


def _leaf_type(spec: FeatureSpec) -> pa.DataType:
    if spec.vector:
        return pa.float64()
    t = spec.arrow_type
    while pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        t = t.value_type
    return t


def _list_array(offsets: np.ndarray, values: pa.Array, valid: np.ndarray, t: pa.DataType) -> pa.Array:
    n = offsets.size - 1
    mask = None if valid.all() else pa.array(~valid)
    if pa.types.is_large_list(t):
        return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values, type=t, mask=mask)
    if pa.types.is_fixed_size_list(t):
        return pa.FixedSizeListArray.from_arrays(values, type=t, mask=mask)
    arr = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32), pa.int32()), values, type=t, mask=mask)
    assert len(arr) == n
    return arr


def decode_examples(
    buf: bytes | np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    specs: Sequence[FeatureSpec],
    record_type: str = "Example",
    *,
    is_padded: bool = False,
) -> DecodedBatch:
    """Decode serialized Examples (or SequenceExamples) into Arrow columns.

    Args:
        buf: a buffer holding the records.
        starts, ends: where each record's bytes are in ``buf``.
        specs: the columns to produce; features not named here are skipped.
        record_type: ``Example`` or ``SequenceExample`` (``depth == 2`` specs are read
            from ``feature_lists``, the others from ``context``).
        is_padded: ``buf`` comes from :func:`padded` (saves a copy per call).

    Returns:
        The columns, plus which records were malformed and why. A record is
        malformed when its protobuf is broken, a feature's kind does not match its
        column, a scalar column gets more than one value, or a value does not fit
        the column's type (e.g. 2**40 in an int column, bytes that are not UTF-8
        in a string column).
    """
    data = buf if is_padded and isinstance(buf, np.ndarray) else padded(buf)
    n = starts.size
    rec_ids = np.arange(n, dtype=np.int64)
    problems = _Problems(n)
    top = parse_fields(data, starts.astype(np.int64), ends.astype(np.int64))
    problems.flag(rec_ids[top.bad], "malformed protobuf (not an Example)")
    ctx_specs = [s for s in specs if s.depth < 2 or record_type != "SequenceExample"]
    seq_specs = [s for s in specs if s.depth == 2 and record_type == "SequenceExample"]
    columns: dict[str, pa.Array] = {}
    for number, group in ((1, ctx_specs), (2, seq_specs)):
        if not group:
            continue
        sel = top.select((top.number == number) & (top.wire == 2))
        problems.flag(top.owner[(top.number == number) & (top.wire != 2)], "malformed protobuf (not an Example)")
        what = "Features" if number == 1 else "FeatureLists"
        rec, ks, ke, vs, ve, _ = _entries(data, sel.start, sel.end, sel.owner, problems, what)
        names = [s.name for s in group]
        col = _match_keys(data, ks, ke, names)
        use = _dedupe(rec, col, len(names))
        rec, col, vs, ve = rec[use], col[use], vs[use], ve[use]
        if number == 1:
            vals = _decode_features(data, vs, ve)
            problems.flag(rec[np.flatnonzero(vals.bad)], "malformed protobuf in a Feature")
            per_column = vals.by_column(col, len(group))
            for c, spec in enumerate(group):
                features = np.flatnonzero(col == c)
                columns[spec.name] = _feature_column(data, spec, n, rec, features, vals, problems, per_column[c])
        else:
            for c, spec in enumerate(group):
                columns[spec.name] = _feature_list_column(
                    data, spec, n, rec[col == c], vs[col == c], ve[col == c], problems
                )
    return DecodedBatch([columns[s.name] for s in specs], problems.bad, problems.reasons)


def _feature_column(
    buf: np.ndarray,
    spec: FeatureSpec,
    n: int,
    rec: np.ndarray,
    features: np.ndarray,
    vals: _FeatureValues,
    problems: _Problems,
    value_idx: dict[int, Any],
) -> pa.Array:
    """One column from its ``features`` (indices into ``vals``, in record order) and, per kind, the
    indices or slice of its values in ``vals``' value arrays."""
    owner_rec = rec[features]
    builder = _ColumnBuilder(buf, spec, problems)
    values, count = builder.leaf_values(vals, features, owner_rec, value_idx)
    if spec.depth == 0 and not spec.vector:
        multi = count > 1
        if multi.any():
            builder._flag_each(
                owner_rec[multi],
                count[multi],
                lambda k: f"has {k} values but the column is a scalar ({spec.arrow_type})",
            )
        if count.size == n and len(values) == n and bool((count == 1).all()):
            return values  # one value in every record (features are in record order): nothing to move
        present = np.zeros(n, dtype=bool)
        present[owner_rec[count == 1]] = True
        # The value of each row that has exactly one; everything else is null.
        first = np.zeros(features.size + 1, np.int64)
        np.cumsum(count, out=first[1:])
        pick = first[:-1][count == 1]
        out_idx = np.full(n, -1, np.int64)
        out_idx[owner_rec[count == 1]] = pick
        if len(values) == 0:
            return pa.nulls(n, values.type)
        return _with_nulls(values.take(pa.array(np.maximum(out_idx, 0))), present)
    counts = np.zeros(n, np.int64)
    counts[owner_rec] = count
    valid = np.zeros(n, dtype=bool)
    valid[owner_rec] = True
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    # values are in feature order, which is record order
    if spec.vector:
        return _vectors(offsets, values, valid, spec.arrow_type)
    return _list_array(offsets, values, valid, spec.arrow_type)


def _with_nulls(arr: pa.Array, valid: np.ndarray) -> pa.Array:
    if valid.all():
        return arr
    import pyarrow.compute as pc

    return pc.if_else(pa.array(valid), arr, pa.nulls(len(arr), arr.type))


def _vectors(offsets: np.ndarray, values: pa.Array, valid: np.ndarray, t: pa.DataType) -> pa.Array:
    n = offsets.size - 1
    vt = t.field("values").type
    vals = _list_array(offsets, values.cast(vt.value_type), np.ones(n, dtype=bool), vt)
    it = t.field("indices").type
    return pa.StructArray.from_arrays(
        [pa.array(np.ones(n, np.int8), pa.int8()), pa.nulls(n, pa.int32()), pa.nulls(n, it), vals],
        fields=[t.field(i) for i in range(t.num_fields)],
        mask=None if valid.all() else pa.array(~valid),
    )


def _feature_list_column(
    buf: np.ndarray, spec: FeatureSpec, n: int, rec: np.ndarray, vs: np.ndarray, ve: np.ndarray, problems: _Problems
) -> pa.Array:
    fo, fs, fe, fbad = repeated_fields(buf, vs, ve, 1)
    problems.flag(rec[np.flatnonzero(fbad)], f"malformed FeatureList {spec.name!r}")
    frec = rec[fo]
    vals = _decode_features(buf, fs, fe)
    problems.flag(frec[np.flatnonzero(vals.bad)], f"malformed Feature in FeatureList {spec.name!r}")
    inner_t = spec.arrow_type.value_type
    inner_spec = FeatureSpec(spec.name, spec.kind, 1, inner_t)
    builder = _ColumnBuilder(buf, inner_spec, problems)
    features = np.arange(fs.size)
    values, count = builder.leaf_values(vals, features, frec)
    inner_offsets = np.zeros(features.size + 1, np.int64)
    np.cumsum(count, out=inner_offsets[1:])
    inner = _list_array(inner_offsets, values, np.ones(features.size, dtype=bool), inner_t)
    per_rec = np.bincount(frec, minlength=n) if frec.size else np.zeros(n, np.int64)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(per_rec, out=offsets[1:])
    valid = np.zeros(n, dtype=bool)
    valid[rec] = True
    return _list_array(offsets, inner, valid, spec.arrow_type)


# --------------------------------------------------------------------------- inference


def _utf8_valid(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per value, whether its bytes are valid UTF-8 (inference only: a sample of records)."""
    raw = data.tobytes()
    try:  # the common case, all text: one pass over the concatenation, each value whole
        joined = b"".join(raw[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True))
        joined.decode("utf-8")
        lead = np.frombuffer(raw, np.uint8)[starts[ends > starts]] if starts.size else np.zeros(0, np.uint8)
        if not np.any((lead & 0xC0) == 0x80):  # no value starts inside another's character
            return np.ones(starts.size, dtype=bool)
    except UnicodeDecodeError:
        pass
    ok = np.ones(starts.size, dtype=bool)
    for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        try:
            raw[a:b].decode("utf-8")
        except UnicodeDecodeError:
            ok[i] = False
    return ok


def observe_features(
    buf: bytes | np.ndarray, starts: np.ndarray, ends: np.ndarray, record_type: str = "Example"
) -> list[tuple[str, int, int, int]]:
    """What each feature looks like, for schema inference.

    Returns:
        ``(name, kind, depth, max_count)`` per distinct ``(name, kind, depth)``,
        in first-seen order; ``depth`` is 2 for SequenceExample feature lists. A
        BytesList with a value that is not valid UTF-8 is observed as ``KIND_BINARY``.
        Malformed records are skipped (reading reports them).
    """
    data = padded(buf)
    n = starts.size
    problems = _Problems(n)
    top = parse_fields(data, starts.astype(np.int64), ends.astype(np.int64))
    seen: dict[tuple[str, int, int], int] = {}
    numbers = (1, 2) if record_type == "SequenceExample" else (1,)
    for number in numbers:
        sel = top.select((top.number == number) & (top.wire == 2))
        rec, ks, ke, vs, ve, _ = _entries(data, sel.start, sel.end, sel.owner, problems, "map")
        if number == 1:
            vals = _decode_features(data, vs, ve)
            kinds, counts = vals.kind.copy(), vals.count
            entry_of_feature = np.arange(vs.size)
            depth = 1
        else:
            fo, fs, fe, _ = repeated_fields(data, vs, ve, 1)
            vals = _decode_features(data, fs, fe)
            kinds = np.zeros(vs.size, np.int64)
            counts = np.zeros(vs.size, np.int64)
            if fo.size:
                np.maximum.at(kinds, fo, vals.kind)
                np.maximum.at(counts, fo, vals.count)
            entry_of_feature = fo
            depth = 2
        owner = vals.kind_owner.get(KIND_BYTES)
        if owner is not None and owner.size:
            entries = entry_of_feature[owner]
            for e in np.unique(entries[~_utf8_valid(data, vals.bytes_start, vals.bytes_end)]).tolist():
                if kinds[e] == KIND_BYTES:
                    kinds[e] = KIND_BINARY
        keys = [data[a:b].tobytes() for a, b in zip(ks.tolist(), ke.tolist(), strict=True)]
        for key, k, c, r in zip(keys, kinds.tolist(), counts.tolist(), rec.tolist(), strict=True):
            if problems.bad[r]:
                continue
            name = key.decode("utf-8", errors="replace")
            slot = (name, int(k), depth)
            seen[slot] = max(seen.get(slot, 0), int(c))
    return [(name, kind, depth, count) for (name, kind, depth), count in seen.items()]
