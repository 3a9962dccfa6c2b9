"""The protobuf wire format, over NumPy arrays of many messages at once.

Varints are encoded and decoded for whole arrays; messages are split into their
fields in lock step, one NumPy step per field position rather than one Python
call per field; and the two shapes every Example serializer writes (a message of
nothing but one repeated length-delimited field, a length-delimited field that
fills its message) have fast paths, with :func:`parse_fields` behind them for
everything else protobuf allows.

Why our own code: protobuf's Python objects cost a Python call per field, and
there is no columnar protobuf parser on PyPI that does not bring TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

__all__ = [
    "PAD",
    "Fields",
    "gather",
    "gather_binary",
    "last_per_owner",
    "ld_at",
    "padded",
    "parse_fields",
    "read_varints",
    "repeated_fields",
    "u64_at",
    "varint_bytes",
    "varint_decode",
    "varint_encode",
]

_U64 = np.uint64
PAD = 16  # bytes after a decode buffer, so a varint read never leaves it


def varint_encode(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protobuf varints of ``values`` (int64 are two's complement, 10 bytes when negative).

    Returns:
        ``(data, offsets)``: the bytes back to back and ``n + 1`` int64 offsets.
    """
    v = np.ascontiguousarray(values).astype(np.int64, copy=False).view(_U64)
    nbytes = np.ones(v.size, dtype=np.int64)
    for k in range(1, 10):
        more = v >= _U64(1 << (7 * k))
        if not more.any():
            break
        nbytes += more
    offsets = np.zeros(v.size + 1, dtype=np.int64)
    np.cumsum(nbytes, out=offsets[1:])
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    starts = offsets[:-1]
    idx = np.arange(v.size)
    for k in range(int(nbytes.max()) if v.size else 0):
        if k:
            idx = idx[nbytes[idx] > k]
        byte = ((v[idx] >> _U64(7 * k)) & _U64(0x7F)).astype(np.uint8)
        byte |= np.where(nbytes[idx] > k + 1, np.uint8(0x80), np.uint8(0))
        data[starts[idx] + k] = byte
    return data, offsets


def varint_bytes(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_decode(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode back-to-back varints.

    Returns:
        ``(values, ends)``: int64 values and, for each, the offset just past its last byte.
        A trailing incomplete varint is not decoded (``ends[-1] < len(data)`` tells).
    """
    last = np.flatnonzero(data < 0x80)
    if last.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.empty(last.size, dtype=np.int64)
    starts[0] = 0
    starts[1:] = last[:-1] + 1
    used = int(last[-1]) + 1
    owner = np.repeat(np.arange(last.size), last - starts + 1)
    shift = (np.arange(used) - starts[owner]).astype(_U64) * _U64(7)
    shift = np.minimum(shift, _U64(63))  # bytes past the 10th carry no bits
    parts = (data[:used] & 0x7F).astype(_U64) << shift
    values = np.bitwise_or.reduceat(parts, starts)
    return values.view(np.int64), last + 1


def read_varints(buf: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Varints at many positions at once: ``(values, byte counts, ok)``."""
    b = buf[pos]
    val = (b & 0x7F).astype(_U64)
    nb = np.ones(pos.size, np.int64)
    idx = np.flatnonzero(b & 0x80)
    k = 1
    while idx.size and k < 10:
        bk = buf[pos[idx] + k]
        val[idx] |= (bk & 0x7F).astype(_U64) << _U64(7 * k)
        nb[idx] += 1
        idx = idx[(bk & 0x80) != 0]
        k += 1
    ok = np.ones(pos.size, dtype=bool)
    ok[idx] = False
    return val, nb, ok


@dataclass
class Fields:
    """Every field of a set of messages, ordered by message then position."""

    owner: np.ndarray
    number: np.ndarray
    wire: np.ndarray
    start: np.ndarray
    end: np.ndarray
    bad: np.ndarray  # per message

    def select(self, mask: np.ndarray) -> Fields:
        return Fields(self.owner[mask], self.number[mask], self.wire[mask], self.start[mask], self.end[mask], self.bad)


def parse_fields(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> Fields:
    """Split messages into fields, all messages in lock step.

    For wire type 2 ``start:end`` is the payload, for 0 the varint's bytes, for
    1 and 5 the fixed bytes. A message with a wire error is flagged in ``bad``.
    """
    m = starts.size
    bad = np.zeros(m, dtype=bool)
    pos = starts.astype(np.int64, copy=True)
    ends = ends.astype(np.int64, copy=False)
    active = np.flatnonzero(pos < ends)
    parts: list[tuple[np.ndarray, ...]] = []
    while active.size:
        p = pos[active]
        lim = ends[active]
        tag, nb, ok = read_varints(buf, p)
        vs = p + nb
        wire = (tag & _U64(7)).astype(np.int64)
        number = (tag >> _U64(3)).astype(np.int64)
        ok &= (number > 0) & (tag < _U64(1 << 32)) & (vs <= lim)
        ve = vs.copy()
        for w in np.unique(wire).tolist():
            i = np.flatnonzero(wire == w)
            if w == 2:
                ln, nb2, ok2 = read_varints(buf, vs[i])
                s = vs[i] + nb2
                room = np.maximum(lim[i] - s, 0).astype(_U64)
                good = ok2 & (s <= lim[i]) & (ln <= room)
                ok[i] &= good
                vs[i] = s
                ve[i] = s + np.where(good, ln, _U64(0)).astype(np.int64)
            elif w == 0:
                _, nb0, ok0 = read_varints(buf, vs[i])
                ve[i] = vs[i] + nb0
                ok[i] &= ok0
            elif w == 5:
                ve[i] = vs[i] + 4
            elif w == 1:
                ve[i] = vs[i] + 8
            else:  # groups (3, 4) are not used by these protos; 6 and 7 do not exist
                ok[i] = False
        ok &= ve <= lim
        bad[active[~ok]] = True
        good_rows = active[ok]
        parts.append((good_rows, number[ok], wire[ok], vs[ok], ve[ok]))
        pos[good_rows] = ve[ok]
        active = good_rows[ve[ok] < lim[ok]]
    if not parts:
        z = np.zeros(0, np.int64)
        return Fields(z, z, z, z, z, bad)
    # Every message takes part in iterations 0..k-1 without gaps, so its t-th field
    # goes to first[owner] + t: a counting sort instead of an argsort.
    counts = np.zeros(m, np.int64)
    for part in parts:
        counts[part[0]] += 1
    first = np.zeros(m + 1, np.int64)
    np.cumsum(counts, out=first[1:])
    total = int(first[-1])
    cols = [np.empty(total, np.int64) for _ in range(5)]
    for t, part in enumerate(parts):
        at = first[part[0]] + t
        for col, values in zip(cols, part, strict=True):
            col[at] = values
    f = Fields(cols[0], cols[1], cols[2], cols[3], cols[4], bad)
    # Drop the fields of broken messages, so callers see only well-formed ones.
    keep = ~bad[f.owner]
    return f.select(keep) if not keep.all() else f


def last_per_owner(owner: np.ndarray) -> np.ndarray:
    """Positions of the last element of each run of equal (sorted) owners."""
    if owner.size == 0:
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.r_[owner[1:] != owner[:-1], True])


def gather(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ``buf[starts[i]:ends[i]]``; returns ``(data, offsets)``."""
    lengths = ends - starts
    offsets = np.zeros(starts.size + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    if total == 0:
        return np.zeros(0, np.uint8), offsets
    idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(total, dtype=np.int64)
    return buf[idx], offsets


def gather_binary(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """``buf[starts[i]:ends[i]]`` as a LargeBinaryArray.

    When the spans run forward through the buffer (one column's values do), the
    buffer itself, cut at every start and end, is a binary array whose even
    elements are the spans; one ``take`` copies them with memcpy.
    """
    k = starts.size
    if k and bool((starts[1:] >= ends[:-1]).all()):
        cuts = np.empty(2 * k, np.int64)
        cuts[0::2] = starts
        cuts[1::2] = ends
        whole = pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), 2 * k - 1, [None, pa.py_buffer(cuts), pa.py_buffer(buf)]
        )
        return whole.take(pa.array(np.arange(0, 2 * k, 2, dtype=np.int64)))
    data, offs = gather(buf, starts, ends)
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), k, [None, pa.py_buffer(offs), pa.py_buffer(data)])


_BIG = np.uint64(1 << 40)  # no record is this long; larger lengths are corrupt


def ld_at(buf: np.ndarray, pos: np.ndarray, tag: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A length-delimited field with a one-byte tag at every ``pos``: ``(ok, start, end)`` of its payload.

    ``tag=None`` accepts any tag byte (the caller checks it).
    """
    ok = buf[pos] == tag if tag is not None else np.ones(pos.size, dtype=bool)
    b = buf[pos + 1]
    length = b.astype(np.int64)
    nb = np.ones(pos.size, np.int64)
    multi = np.flatnonzero(b >= 0x80)
    if multi.size:
        v, n2, ok2 = read_varints(buf, pos[multi] + 1)
        sane = ok2 & (v < _BIG)
        ok[multi] &= sane
        length[multi] = np.where(sane, v, _U64(0)).astype(np.int64)
        nb[multi] = n2
    start = pos + 1 + nb
    return ok, start, start + length


def repeated_fields(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, number: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Occurrences of length-delimited field ``number`` in messages made of nothing else.

    This is the shape of Features, BytesList and FeatureList as every serializer
    writes them, so it gets a loop with a third of :func:`parse_fields`'s work per step;
    messages that turn out to hold anything else go through :func:`parse_fields`.

    Returns:
        ``(owner, start, end, bad)``: the occurrences in message order, and per
        message whether it is malformed.
    """
    m = starts.size
    tag = (number << 3) | 2
    pos = starts.astype(np.int64, copy=True)
    ends = ends.astype(np.int64, copy=False)
    slow = np.zeros(m, dtype=bool)
    active = np.flatnonzero(pos < ends)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    while active.size:
        lim = ends[active]
        ok, s, e = ld_at(buf, pos[active], tag)
        ok &= e <= lim
        if not ok.all():
            slow[active[~ok]] = True
            active, s, e, lim = active[ok], s[ok], e[ok], lim[ok]
        parts.append((active, s, e))
        pos[active] = e
        active = active[e < lim]
    counts = np.zeros(m, np.int64)
    for owners, _, _ in parts:
        counts[owners] += 1
    counts[slow] = 0
    first = np.zeros(m + 1, np.int64)
    np.cumsum(counts, out=first[1:])
    total = int(first[-1])
    owner: np.ndarray = np.empty(total, np.int64)
    start: np.ndarray = np.empty(total, np.int64)
    end: np.ndarray = np.empty(total, np.int64)
    for t, (owners, s, e) in enumerate(parts):
        keep = ~slow[owners]
        at = first[owners[keep]] + t
        owner[at], start[at], end[at] = owners[keep], s[keep], e[keep]
    bad = np.zeros(m, dtype=bool)
    if slow.any():
        idx = np.flatnonzero(slow)
        g = parse_fields(buf, starts[idx], ends[idx])
        bad[idx[g.bad]] = True
        mine = g.number == number
        bad[idx[g.owner[mine & (g.wire != 2)]]] = True
        sel = mine & (g.wire == 2)
        owner = np.concatenate([owner, idx[g.owner[sel]]])
        start = np.concatenate([start, g.start[sel]])
        end = np.concatenate([end, g.end[sel]])
        order = np.argsort(owner, kind="stable")
        owner, start, end = owner[order], start[order], end[order]
    return owner, start, end, bad


LOW_BYTES = np.array([(1 << (8 * i)) - 1 for i in range(8)] + [(1 << 64) - 1], dtype=np.uint64)


def u64_at(buf: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The little-endian uint64 at every (unaligned) ``pos``, through eight shifted views of ``buf``."""
    out = np.empty(pos.size, np.uint64)
    shift = pos & 7
    for k in range(8):
        sel = np.flatnonzero(shift == k)
        if sel.size:
            view = np.frombuffer(buf, dtype="<u8", count=(buf.size - k) // 8, offset=k)
            out[sel] = view[(pos[sel] - k) >> 3]
    return out


def padded(buf: bytes | np.ndarray) -> np.ndarray:
    """``buf`` as uint8 with the zero padding the decoder reads past record ends.

    Decoding several batches of one buffer? Pad it once and pass ``is_padded=True``.
    """
    raw = np.frombuffer(buf, np.uint8) if not isinstance(buf, np.ndarray) else buf
    base = raw.base
    if (
        isinstance(base, np.ndarray)
        and base.dtype == np.uint8
        and base.ndim == raw.ndim == 1
        and raw.strides == (1,)
        and base.strides == (1,)
        and raw.__array_interface__["data"][0] == base.__array_interface__["data"][0]
        and base.size >= raw.size + PAD
        and not base[raw.size : raw.size + PAD].any()
    ):
        # The front of a buffer with zeros after it (what the record reader makes): no copy.
        return base[: raw.size + PAD]
    return np.concatenate([raw, np.zeros(PAD, np.uint8)])
