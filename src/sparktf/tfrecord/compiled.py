"""The compiled decoder: one pass over each record, straight to the arrays the columns are built from.

:func:`decode_examples` gives the same :class:`~sparktf.tfrecord.codec.DecodedBatch` as the
NumPy reference (:func:`sparktf.tfrecord.codec.decode_examples`), and a property test checks
it on random Examples and SequenceExamples, corrupt ones included. One Numba function walks
each record once: the ``Features`` (and ``FeatureLists``) map, the key compared with the
requested column names (other features are stepped over, not decoded), the last entry of
each key kept, and the value lists read into flat arrays (varints decoded, floats copied,
byte strings as spans). The columns are then built by the reference's own code, so the
types, casts, range checks and the reasons a record is malformed are defined once.

The fast walk takes the encoding every protobuf serializer writes (TensorFlow's, ours,
``example_pb2``): map entries as ``key, value``, one kind per Feature, packed numbers. A record
that is anything else protobuf allows (unknown fields, unpacked numbers, a map entry
without its key) or is malformed is handed to the reference decoder, alone; its row is
put back in place. So the reference stays the definition, and this is its fast path.

The CRC-32C of both checks uses the CPU's instruction where Numba may emit it (SSE 4.2 on
x86-64, reached through an LLVM intrinsic, so the cache keeps working) and slicing-by-8
tables elsewhere; a property test holds both to google-crc32c's.

Why Numba: the reference costs a NumPy call per field position over a batch, and its
decode ran at 160–220 k records/s per core (issue 21). Numba comes as a wheel from PyPI
(no compiler on the machine), and ``cache=True`` keeps the compiled code next to this
module, so a Spark Python worker loads it rather than compiling it again.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from sparktf.tfrecord import codec
from sparktf.tfrecord.schema import KIND_BYTES, KIND_FLOAT, KIND_INT64, FeatureSpec
from sparktf.tfrecord.wire import padded

__all__ = ["decode_examples", "frame_records", "next_record", "scan", "walk_records"]

_CONTEXT, _LISTS = 1, 2  # the top-level field of a column's map: Features, or FeatureLists


def _crc_tables() -> np.ndarray:
    """CRC-32C (Castagnoli) tables for slicing by 8."""
    t = np.zeros((8, 256), np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t[0, i] = c
    for k in range(1, 8):
        for i in range(256):
            t[k, i] = (int(t[k - 1, i]) >> 8) ^ int(t[0, int(t[k - 1, i]) & 0xFF])
    return t


_CRC = _crc_tables()


@njit(cache=True, nogil=True)
def _u32(buf, p):  # type: ignore[no-untyped-def]
    return (
        np.uint32(buf[p])
        | (np.uint32(buf[p + 1]) << np.uint32(8))
        | (np.uint32(buf[p + 2]) << np.uint32(16))
        | (np.uint32(buf[p + 3]) << np.uint32(24))
    )


@njit(cache=True, nogil=True)
def _masked_crc_sw(buf, start, end, t):  # type: ignore[no-untyped-def]
    """TFRecord's masked CRC-32C of ``buf[start:end]`` (tables ``t``, any CPU)."""
    crc = np.uint32(0xFFFFFFFF)
    p = start
    while p + 8 <= end:
        lo = crc ^ _u32(buf, p)
        hi = _u32(buf, p + 4)
        crc = (
            t[7, lo & np.uint32(0xFF)]
            ^ t[6, (lo >> np.uint32(8)) & np.uint32(0xFF)]
            ^ t[5, (lo >> np.uint32(16)) & np.uint32(0xFF)]
            ^ t[4, lo >> np.uint32(24)]
            ^ t[3, hi & np.uint32(0xFF)]
            ^ t[2, (hi >> np.uint32(8)) & np.uint32(0xFF)]
            ^ t[1, (hi >> np.uint32(16)) & np.uint32(0xFF)]
            ^ t[0, hi >> np.uint32(24)]
        )
        p += 8
    while p < end:
        crc = t[0, (crc ^ np.uint32(buf[p])) & np.uint32(0xFF)] ^ (crc >> np.uint32(8))
        p += 1
    wide = np.uint64(crc ^ np.uint32(0xFFFFFFFF)) & np.uint64(0xFFFFFFFF)
    rotated = ((wide >> np.uint64(15)) | (wide << np.uint64(17))) & np.uint64(0xFFFFFFFF)
    return np.uint32((rotated + np.uint64(0xA282EAD8)) & np.uint64(0xFFFFFFFF))


def _sse42() -> bool:
    """Whether the code Numba compiles here may use SSE 4.2's CRC-32C instruction: an x86-64
    host that has it, unless Numba is told to compile for another CPU (``NUMBA_CPU_NAME``,
    e.g. ``generic`` for a cache shared by several machines) without naming the feature."""
    import os
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if os.environ.get("NUMBA_CPU_NAME"):
        return "+sse4.2" in os.environ.get("NUMBA_CPU_FEATURES", "")
    try:
        import llvmlite.binding as llvm

        return bool(llvm.get_host_cpu_features().get("sse4.2", False))
    except (RuntimeError, OSError, AttributeError):  # an llvmlite that cannot say: the tables are always right
        return False


@intrinsic
def _crc32c_u64(typingctx, crc, word):  # type: ignore[no-untyped-def]
    """SSE 4.2's ``crc32`` on 8 bytes: the CRC-32C register after ``word`` (no pre/post inversion)."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        i64 = ir.IntType(64)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i64, [i64, i64]), "llvm.x86.sse42.crc32.64.64"
        )
        return builder.call(fn, args)

    return types.uint64(types.uint64, types.uint64), codegen


@intrinsic
def _crc32c_u8(typingctx, crc, byte):  # type: ignore[no-untyped-def]
    """SSE 4.2's ``crc32`` on one byte."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        i32, i8 = ir.IntType(32), ir.IntType(8)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(i32, [i32, i8]), "llvm.x86.sse42.crc32.32.8"
        )
        return builder.call(fn, args)

    return types.uint32(types.uint32, types.uint8), codegen


@intrinsic
def _u64(typingctx, buf, p):  # type: ignore[no-untyped-def]
    """The little-endian 8 bytes of ``buf`` (uint8, C-contiguous) at ``p``: one unaligned load
    (x86-64 only, as the CRC instruction is; no bounds check, the caller keeps ``p + 8`` inside)."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        at = builder.gep(data, [args[1]])
        ptr = builder.bitcast(at, ir.IntType(64).as_pointer())
        return builder.load(ptr, align=1)

    return types.uint64(buf, p), codegen


@njit(cache=True, nogil=True)
def _masked_crc_hw(buf, start, end, t):  # type: ignore[no-untyped-def]
    """:func:`_masked_crc_sw` with the CPU's CRC-32C instruction, 8 bytes at a time (``t`` unused)."""
    crc = np.uint64(0xFFFFFFFF)
    p = start
    while p + 8 <= end:
        crc = _crc32c_u64(crc, _u64(buf, p))  # type: ignore[call-arg]
        p += 8
    c = np.uint32(crc)
    while p < end:
        c = _crc32c_u8(c, np.uint8(buf[p]))  # type: ignore[call-arg]
        p += 1
    wide = np.uint64(c ^ np.uint32(0xFFFFFFFF)) & np.uint64(0xFFFFFFFF)
    rotated = ((wide >> np.uint64(15)) | (wide << np.uint64(17))) & np.uint64(0xFFFFFFFF)
    return np.uint32((rotated + np.uint64(0xA282EAD8)) & np.uint64(0xFFFFFFFF))


#: Whether :data:`_masked_crc` is the instruction or the tables. Bound once, before anything
#: that calls it compiles; Numba's cache is kept per CPU, so a cache never mixes the two.
#: Measured (AMD EPYC, one core): framing and both CRCs of a 79 MB file of 200,000 records
#: took 0.051 s with the tables (slicing by 8, 1.5 GB/s) and 0.011 s with the instruction
#: (7.4 GB/s), median of 5 alternated runs each; BENCHMARKS.md, issue #21.
HARDWARE_CRC = _sse42()
_masked_crc = _masked_crc_hw if HARDWARE_CRC else _masked_crc_sw


@njit(cache=True, nogil=True)
def _walk(buf, size, check, t):  # type: ignore[no-untyped-def]
    cap = size // 16 + 1
    heads = np.empty(cap, np.int64)
    lengths = np.empty(cap, np.int64)
    bad = np.empty(cap, np.int64)
    pos = np.int64(0)
    n = 0
    nbad = 0
    bad_length = False
    while pos + 12 <= size:
        length = np.uint64(0)
        for i in range(8):
            length |= np.uint64(buf[pos + i]) << np.uint64(8 * i)
        if check and _masked_crc(buf, pos, pos + 8, t) != _u32(buf, pos + 8):
            bad_length = True
            break
        if length > np.uint64(size):
            break
        end = pos + 16 + np.int64(length)
        if end > size:
            break
        if check and _masked_crc(buf, pos + 12, end - 4, t) != _u32(buf, end - 4):
            bad[nbad] = n
            nbad += 1
        heads[n] = pos
        lengths[n] = np.int64(length)
        n += 1
        pos = end
    return heads[:n].copy(), lengths[:n].copy(), pos, bad_length, bad[:nbad].copy()


@njit(cache=True, nogil=True)
def _put(out, q, value, nbytes):  # type: ignore[no-untyped-def]
    for k in range(nbytes):
        out[q + k] = np.uint8((value >> np.uint64(8 * k)) & np.uint64(0xFF))


@njit(cache=True, nogil=True)
def _frame(data, offs, out, t):  # type: ignore[no-untyped-def]
    q = np.int64(0)
    for i in range(offs.size - 1):
        a, b = offs[i], offs[i + 1]
        length = b - a
        _put(out, q, np.uint64(length), 8)
        _put(out, q + 8, np.uint64(_masked_crc(out, q, q + 8, t)), 4)
        out[q + 12 : q + 12 + length] = data[a:b]
        _put(out, q + 12 + length, np.uint64(_masked_crc(data, a, b, t)), 4)
        q += 16 + length
    return q


def frame_records(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """:func:`sparktf.tfrecord.format.frame` in one compiled pass: each record's length, its
    masked CRC, the payload and the payload's masked CRC, written straight into one array.

    Why: the reference computes the payload CRCs with one Python call (and one slice copy)
    per record and interleaves the pieces with an Arrow take; a bench of 2M rows showed the
    uncompressed write at 0.89x Parquet's on a host where the read side's CRCs had just
    moved to the CPU's instruction (BENCHMARKS.md, issue #21).
    """
    offs = np.ascontiguousarray(offsets, dtype=np.int64)
    n = offs.size - 1
    if n <= 0:
        return np.empty(0, np.uint8)
    out = np.empty(int(offs[-1] - offs[0]) + 16 * n, np.uint8)
    _frame(np.ascontiguousarray(data, dtype=np.uint8), offs, out, _CRC)
    return out


def walk_records(buf: np.ndarray, check_crc: bool) -> tuple[np.ndarray, np.ndarray, int, bool, np.ndarray]:
    """The records framed in ``buf``, in one compiled pass with both CRCs checked.

    Returns:
        ``(heads, lengths, consumed, bad_length, bad_data)``: each whole record's header offset
        and payload length, up to the first record that is cut short or whose length CRC is
        wrong (``bad_length``: the walk stopped at ``consumed`` because of it), and the indices
        of records whose data CRC is wrong.
    """
    return _walk(buf, int(buf.size), check_crc, _CRC)  # type: ignore[no-any-return]


@njit(cache=True, nogil=True)
def _resync(buf, start, t):  # type: ignore[no-untyped-def]
    size = buf.size
    p = start
    while p + 12 <= size:
        if _masked_crc(buf, p, p + 8, t) == _u32(buf, p + 8):
            length = np.uint64(0)
            for i in range(8):
                length |= np.uint64(buf[p + i]) << np.uint64(8 * i)
            if length > np.uint64(size - p - 16):
                return p, 1
            end = p + 16 + np.int64(length)
            if _masked_crc(buf, p + 12, end - 4, t) == _u32(buf, end - 4):
                return p, 0
        p += 1
    return p, 2


FOUND, NEED_MORE, NONE = 0, 1, 2


def next_record(buf: np.ndarray, start: int) -> tuple[int, int]:
    """Where whole records start again at or after ``start``: a header whose length CRC and
    data CRC both check out. The chance that bytes which are not a record pass both is 2**-64.

    Returns:
        ``(position, status)``: ``FOUND`` there; ``NEED_MORE``: a header there passes its
        length CRC but its record runs past the buffer (read on, or search on from
        ``position + 1`` when there is no more); ``NONE`` up to ``position``, where a search
        resumes once more bytes are appended.
    """
    pos, status = _resync(buf, int(start), _CRC)
    return int(pos), int(status)


@njit(cache=True, nogil=True)
def _varint(buf, pos, end):  # type: ignore[no-untyped-def]
    """``(value, position after it)``; the position is -1 when the varint runs past ``end`` or 10 bytes."""
    result = np.uint64(0)
    shift = np.uint64(0)
    for _ in range(10):
        if pos >= end:
            return result, -1
        b = buf[pos]
        pos += 1
        result |= np.uint64(b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += np.uint64(7)
    return result, -1


@njit(cache=True, nogil=True)
def _length(buf, pos, end):  # type: ignore[no-untyped-def]
    """A length-delimited field's payload at ``pos`` (just past its tag): ``(start, end)``, start -1 if broken."""
    n, p = _varint(buf, pos, end)
    if p < 0 or n > np.uint64(end - p):
        return -1, -1
    return p, p + np.int64(n)


@njit(cache=True, nogil=True)
def _column(buf, ks, ke, keys, key_off, group, field):  # type: ignore[no-untyped-def]
    """The requested column of this key in this map (``field``), or -1."""
    klen = ke - ks
    for c in range(key_off.size - 1):
        if group[c] != field or key_off[c + 1] - key_off[c] != klen:
            continue
        k0 = key_off[c]
        same = True
        for i in range(klen):
            if buf[ks + i] != keys[k0 + i]:
                same = False
                break
        if same:
            return c
    return -1


@njit(cache=True, nogil=True)
def _scan(buf, starts, ends, keys, key_off, group, sequence, work, fwork):  # type: ignore[no-untyped-def]
    n = starts.size
    ncols = key_off.size - 1
    total = 0
    for r in range(n):
        total += ends[r] - starts[r]
    # Upper bounds, carved out of the caller's scratch arrays (see _scratch).
    m = n * ncols
    f_rec = work[0:m]
    f_col = work[m : 2 * m]
    f_kind = work[2 * m : 3 * m]
    f_count = work[3 * m : 4 * m]
    s_rec = work[4 * m : 5 * m]
    s_col = work[5 * m : 6 * m]
    s_start = work[6 * m : 7 * m]
    s_end = work[7 * m : 8 * m]
    o = 8 * m
    ints = work[o : o + total]
    i_own = work[o + total : o + 2 * total]
    o += 2 * total
    fl_own = work[o : o + total // 4 + 1]
    o += total // 4 + 1
    half = total // 2 + 1
    b_start = work[o : o + half]
    b_end = work[o + half : o + 2 * half]
    b_own = work[o + 2 * half : o + 3 * half]
    flts = fwork[: total // 4 + 1]
    fallback = np.zeros(n, np.bool_)
    last_s = np.empty(ncols, np.int64)
    last_e = np.empty(ncols, np.int64)
    nf = ns = ni = nfl = nb = 0
    fast = 0
    for r in range(n):
        for c in range(ncols):
            last_s[c] = -1
        ok = True
        pos, end = starts[r], ends[r]
        # The top level: Example {Features features = 1}, SequenceExample {context = 1, feature_lists = 2}.
        while ok and pos < end:
            tag = buf[pos]
            if tag == 0x0A:
                field = _CONTEXT
            elif tag == 0x12 and sequence:
                field = _LISTS
            else:
                ok = False
                break
            ms, me = _length(buf, pos + 1, end)
            if ms < 0:
                ok = False
                break
            q = ms
            while q < me:  # map entries: 0x0A len {0x0A key 0x12 value}
                if buf[q] != 0x0A:
                    ok = False
                    break
                es, ee = _length(buf, q + 1, me)
                if es < 0 or es >= ee or buf[es] != 0x0A:
                    ok = False
                    break
                ks, ke = _length(buf, es + 1, ee)
                if ks < 0 or ke >= ee or buf[ke] != 0x12:
                    ok = False
                    break
                vs, ve = _length(buf, ke + 1, ee)
                if vs < 0 or ve != ee:
                    ok = False
                    break
                c = _column(buf, ks, ke, keys, key_off, group, field)
                if c >= 0:
                    last_s[c] = vs
                    last_e[c] = ve
                q = ee
            pos = me
        # The requested features, in column order (the reference's (record, column) order).
        nf0, ns0, ni0, nfl0, nb0 = nf, ns, ni, nfl, nb
        c = 0
        while ok and c < ncols:
            vs, ve = last_s[c], last_e[c]
            if vs < 0:
                c += 1
                continue
            if group[c] == _LISTS:
                s_rec[ns] = fast
                s_col[ns] = c
                s_start[ns] = vs
                s_end[ns] = ve
                ns += 1
                c += 1
                continue
            kind = np.int64(0)
            count = 0
            if vs < ve:  # Feature {oneof {BytesList = 1, FloatList = 2, Int64List = 3}}
                tag = buf[vs]
                if tag != 0x0A and tag != 0x12 and tag != 0x1A:
                    ok = False
                    break
                ls, le = _length(buf, vs + 1, ve)
                if ls < 0 or le != ve:
                    ok = False
                    break
                kind = np.int64(tag) >> 3
                if kind == KIND_BYTES:  # repeated bytes value = 1
                    q = ls
                    while q < le:
                        if buf[q] != 0x0A:
                            ok = False
                            break
                        a, b = _length(buf, q + 1, le)
                        if a < 0:
                            ok = False
                            break
                        b_start[nb] = a
                        b_end[nb] = b
                        b_own[nb] = nf
                        nb += 1
                        count += 1
                        q = b
                elif ls < le:  # packed: 0x0A len payload
                    if buf[ls] != 0x0A:
                        ok = False
                        break
                    ps, pe = _length(buf, ls + 1, le)
                    if ps < 0 or pe != le:
                        ok = False
                        break
                    if kind == KIND_FLOAT:
                        if (pe - ps) % 4 != 0:
                            ok = False
                            break
                        for p in range(ps, pe, 4):
                            flts[nfl] = (
                                np.uint32(buf[p])
                                | (np.uint32(buf[p + 1]) << np.uint32(8))
                                | (np.uint32(buf[p + 2]) << np.uint32(16))
                                | (np.uint32(buf[p + 3]) << np.uint32(24))
                            )
                            fl_own[nfl] = nf
                            nfl += 1
                            count += 1
                    else:
                        p = ps
                        while p < pe:
                            v, p2 = _varint(buf, p, pe)
                            if p2 < 0:
                                ok = False
                                break
                            ints[ni] = np.int64(v)
                            i_own[ni] = nf
                            ni += 1
                            count += 1
                            p = p2
                if not ok:
                    break
            f_rec[nf] = fast
            f_col[nf] = c
            f_kind[nf] = kind
            f_count[nf] = count
            nf += 1
            c += 1
        if ok:
            fast += 1
        else:
            nf, ns, ni, nfl, nb = nf0, ns0, ni0, nfl0, nb0
            fallback[r] = True
    # Views into the scratch arrays: the caller copies what it keeps before the next call.
    return (
        fallback,
        f_rec[:nf],
        f_col[:nf],
        f_kind[:nf],
        f_count[:nf],
        s_rec[:ns],
        s_col[:ns],
        s_start[:ns],
        s_end[:ns],
        ints[:ni],
        i_own[:ni],
        flts[:nfl],
        fl_own[:nfl],
        b_start[:nb],
        b_end[:nb],
        b_own[:nb],
    )


@njit(cache=True, nogil=True)
def _by_column(f_col, owner, ncols):  # type: ignore[no-untyped-def]
    """A stable counting sort of values (``owner``: each value's feature) by their feature's column:
    ``(order, bounds)``, column ``c``'s values being ``order[bounds[c]:bounds[c + 1]]``."""
    bounds = np.zeros(ncols + 1, np.int64)
    for v in range(owner.size):
        bounds[f_col[owner[v]] + 1] += 1
    for c in range(ncols):
        bounds[c + 1] += bounds[c]
    at = bounds[:-1].copy()
    order = np.empty(owner.size, np.int64)
    for v in range(owner.size):
        c = f_col[owner[v]]
        order[at[c]] = v
        at[c] += 1
    return order, bounds


def _groups(specs: Sequence[FeatureSpec], record_type: str) -> np.ndarray:
    sequence = record_type == "SequenceExample"
    return np.array([_LISTS if sequence and s.depth == 2 else _CONTEXT for s in specs], np.int64)


_local = threading.local()


def _scratch(n: int, ncols: int, total: int) -> tuple[np.ndarray, np.ndarray]:
    """This thread's scratch arrays, grown to fit a batch (``_scan`` carves its outputs from them).

    Why reuse: arrays allocated per batch are fresh pages the kernel must zero on first touch,
    which took a third of the walk's time (perf: ``clear_page_erms``).
    """
    need = 8 * n * ncols + 2 * total + (total // 4 + 1) + 3 * (total // 2 + 1)
    work = getattr(_local, "work", None)
    if work is None or work.size < need:
        work = _local.work = np.empty(max(need, 2 * (0 if work is None else work.size)), np.int64)
    fwork = getattr(_local, "fwork", None)
    if fwork is None or fwork.size < total // 4 + 1:
        fwork = _local.fwork = np.empty(max(total // 4 + 1, 2 * (0 if fwork is None else fwork.size)), np.uint32)
    return work, fwork


def scan(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, specs: Sequence[FeatureSpec], record_type: str):  # type: ignore[no-untyped-def]
    """The compiled walk alone: its per-record fallback mask first, then the features and values.

    All but the mask are views into this thread's scratch arrays, valid until its next call.
    """
    names = [s.name.encode("utf-8") for s in specs]
    key_off = np.zeros(len(names) + 1, np.int64)
    np.cumsum([len(k) for k in names], out=key_off[1:])
    keys = np.frombuffer(b"".join(names), np.uint8) if names else np.zeros(0, np.uint8)
    starts = np.ascontiguousarray(starts, np.int64)
    ends = np.ascontiguousarray(ends, np.int64)
    total = int((ends - starts).sum()) if starts.size else 0
    work, fwork = _scratch(int(starts.size), len(specs), total)
    return _scan(
        data,
        starts,
        ends,
        keys if keys.size else np.zeros(1, np.uint8),
        key_off,
        _groups(specs, record_type),
        record_type == "SequenceExample",
        work,
        fwork,
    )


def decode_examples(
    buf: bytes | np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    specs: Sequence[FeatureSpec],
    record_type: str = "Example",
    *,
    is_padded: bool = False,
) -> codec.DecodedBatch:
    """:func:`sparktf.tfrecord.codec.decode_examples`, compiled; same arguments, same result."""
    data = buf if is_padded and isinstance(buf, np.ndarray) else padded(buf)
    n = int(starts.size)
    (
        fallback,
        f_rec,
        f_col,
        f_kind,
        f_count,
        s_rec,
        s_col,
        s_start,
        s_end,
        ints,
        i_own,
        flts,
        fl_own,
        b_start,
        b_end,
        b_own,
    ) = scan(data, starts, ends, specs, record_type)
    slow = np.flatnonzero(fallback)
    if slow.size == n:
        return codec.decode_examples(data, starts, ends, specs, record_type, is_padded=True)
    n_fast = n - int(slow.size)
    problems = codec._Problems(n_fast)
    ncols = len(specs)
    # Each column's features and values made contiguous (one counting sort per kind), so a
    # column takes slices of the value arrays rather than gathering them.
    f_order, f_bounds = _by_column(f_col, np.arange(f_col.size), ncols)
    per_column: list[dict[int, slice]] = [{} for _ in range(ncols)]
    vals = codec._FeatureValues(f_kind, f_count, np.zeros(f_kind.size, dtype=bool))
    for kind, own in ((KIND_BYTES, b_own), (KIND_FLOAT, fl_own), (KIND_INT64, i_own)):
        order, bounds = _by_column(f_col, own, ncols)
        if kind == KIND_BYTES:
            vals.bytes_start, vals.bytes_end = b_start[order], b_end[order]
        elif kind == KIND_FLOAT:
            vals.floats = flts[order].view(np.float32)
        else:
            vals.ints = ints[order]
        for c in range(ncols):
            per_column[c][kind] = slice(int(bounds[c]), int(bounds[c + 1]))
    groups = _groups(specs, record_type)
    columns: dict[str, pa.Array] = {}
    # Context columns first, then feature lists: the order the reference flags problems in.
    for c in [*np.flatnonzero(groups == _CONTEXT).tolist(), *np.flatnonzero(groups == _LISTS).tolist()]:
        spec = specs[c]
        if groups[c] == _CONTEXT:
            features = f_order[f_bounds[c] : f_bounds[c + 1]]
            columns[spec.name] = codec._feature_column(
                data, spec, n_fast, f_rec, features, vals, problems, per_column[c]
            )
        else:
            mine = s_col == c
            columns[spec.name] = codec._feature_list_column(
                data, spec, n_fast, s_rec[mine], s_start[mine], s_end[mine], problems
            )
    out = [columns[s.name] for s in specs]
    if not slow.size:
        return codec.DecodedBatch(out, problems.bad, problems.reasons)
    # The records the walk did not take: the reference decodes them, and each row goes back in place.
    ref = codec.decode_examples(data, starts[slow], ends[slow], specs, record_type, is_padded=True)
    fast_ids = np.flatnonzero(~fallback)
    where = np.empty(n, np.int64)
    where[fast_ids] = np.arange(n_fast)
    where[slow] = n_fast + np.arange(slow.size)
    take = pa.array(where)
    merged = [pa.concat_arrays([a, b]).take(take) for a, b in zip(out, ref.columns, strict=True)]
    bad = np.zeros(n, dtype=bool)
    bad[fast_ids] = problems.bad
    bad[slow] = ref.bad
    reasons = [""] * n
    for i, r in zip(fast_ids.tolist(), problems.reasons, strict=True):
        reasons[i] = r
    for i, r in zip(slow.tolist(), ref.reasons, strict=True):
        reasons[i] = r
    return codec.DecodedBatch(merged, bad, reasons)
