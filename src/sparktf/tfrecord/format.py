"""TFRecord framing: length, masked CRC-32C, payload, masked CRC-32C.

A TFRecord file is a plain concatenation of records, each laid out as::

    uint64 length            little-endian
    uint32 masked_crc32c(length bytes)
    byte   data[length]
    uint32 masked_crc32c(data)

with no header, footer or index (gzip, when used, wraps the whole file).

Why our own code: TensorFlow's reader and writer would pull TensorFlow into every
Spark task, and the pure-Python packages on PyPI frame one record per call with
four ``struct.pack`` calls, which costs more than the encoding itself. Here the
headers of a whole batch are built with NumPy and the per-record work is one
``google_crc32c`` call. Everything in this module is a pure function over bytes
and NumPy arrays.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import google_crc32c
import numpy as np

from sparktf.errors import CorruptRecordError

__all__ = [
    "HEADER_BYTES",
    "RECORD_OVERHEAD",
    "GunzipStream",
    "RecordSpans",
    "corrupt",
    "crc32c",
    "first_corruption",
    "frame",
    "frame_one",
    "mask_crc",
    "masked_crc32c",
    "split_records",
    "unmask_crc",
    "with_gzip_error",
]

HEADER_BYTES = 12  # uint64 length + uint32 masked CRC of the length
RECORD_OVERHEAD = 16  # header + uint32 masked CRC of the data
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``; ``crc32c(b"123456789") == 0xE3069283``."""
    return int(google_crc32c.value(data))


def mask_crc(crc: Any) -> Any:
    """TFRecord's (LevelDB's) CRC mask; works on ints and uint32 NumPy arrays."""
    if isinstance(crc, np.ndarray):
        c = crc.astype(np.uint32)
        return (((c >> np.uint32(15)) | (c << np.uint32(17))) + np.uint32(_MASK_DELTA)).astype(np.uint32)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _U32


def unmask_crc(masked: int) -> int:
    """Inverse of :func:`mask_crc`."""
    rot = (masked - _MASK_DELTA) & _U32
    return ((rot >> 17) | (rot << 15)) & _U32


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C TFRecord stores for ``data``."""
    return int(mask_crc(crc32c(data)))


def frame_one(data: bytes) -> bytes:
    """One framed record (handy for tests and tiny writes)."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def _length_crcs(lengths: np.ndarray) -> np.ndarray:
    """Masked CRCs of the 8-byte length fields; lengths repeat a lot, so CRC each distinct one once."""
    uniq, inverse = np.unique(lengths, return_inverse=True)
    le = uniq.astype("<u8").tobytes()
    crcs = np.fromiter((google_crc32c.value(le[i : i + 8]) for i in range(0, len(le), 8)), np.uint32, len(uniq))
    out: np.ndarray = mask_crc(crcs)[inverse]
    return out


def frame(data: bytes | memoryview | np.ndarray | Any, offsets: np.ndarray, *, compiled: bool = True) -> Any:
    """Frame many records at once.

    Args:
        data: the payloads of all records, back to back (bytes, a NumPy array or a
            ``pyarrow.Buffer``).
        offsets: ``n + 1`` positions in ``data``; record ``i`` is ``data[offsets[i]:offsets[i + 1]]``.
        compiled: frame in one compiled pass (:func:`sparktf.tfrecord.compiled.frame_records`);
            False runs this function's NumPy and Arrow, the reference it is tested against.

    Returns:
        A ``pyarrow.Buffer`` with the framed records, ready to append to a file.
    """
    import pyarrow as pa

    if compiled:
        from sparktf.tfrecord.compiled import frame_records

        offs0 = np.asarray(offsets, dtype=np.int64)
        raw = np.frombuffer(memoryview(data), np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8)
        return pa.py_buffer(frame_records(raw, offs0))
    blob = data if isinstance(data, bytes) else bytes(memoryview(data))  # type: ignore[arg-type]
    offs = np.asarray(offsets, dtype=np.int64)
    n = len(offs) - 1
    if n <= 0:
        return pa.py_buffer(b"")
    lengths = np.diff(offs)
    header = np.empty((n, HEADER_BYTES), dtype=np.uint8)
    header[:, :8] = lengths.astype("<u8").view(np.uint8).reshape(n, 8)
    header[:, 8:] = _length_crcs(lengths).astype("<u4").view(np.uint8).reshape(n, 4)
    data_crcs = np.fromiter(
        (google_crc32c.value(blob[a:b]) for a, b in zip(offs[:-1].tolist(), offs[1:].tolist(), strict=True)),
        np.uint32,
        n,
    )
    tails = mask_crc(data_crcs).astype("<u4")
    # Interleave header, payload and tail with one Arrow take: it memcpy's whole
    # pieces, where a NumPy gather would pay an index per byte.
    pieces = pa.concat_arrays(
        [
            _fixed_width(header.tobytes(), n, HEADER_BYTES),
            pa.LargeBinaryArray.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offs), pa.py_buffer(blob)]),
            _fixed_width(tails.tobytes(), n, 4),
        ]
    )
    order = (np.arange(3, dtype=np.int64)[None, :] * n + np.arange(n, dtype=np.int64)[:, None]).ravel()
    framed = pieces.take(pa.array(order))
    out_offs = np.frombuffer(framed.buffers()[1], dtype=np.int64, count=len(framed) + 1, offset=8 * framed.offset)
    return framed.buffers()[2].slice(int(out_offs[0]), int(out_offs[-1] - out_offs[0]))


def _fixed_width(blob: bytes, n: int, width: int) -> Any:
    import pyarrow as pa

    offs = np.arange(n + 1, dtype=np.int64) * width
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offs), pa.py_buffer(blob)])


@dataclass(frozen=True)
class RecordSpans:
    """Where the records of one buffer are.

    Attributes:
        starts: payload start offsets in the buffer (int64).
        ends: payload end offsets (int64).
        record_offsets: byte offset of each record's header in the file (int64).
        consumed: bytes of the buffer taken by complete records; the rest is an
            incomplete record to carry over to the next chunk.
        error: ``None``, or ``(file_offset, reason)`` of the first framing error.
            Records from there on cannot be located, so they are not in the spans.
        bad_data_crc: indices into ``starts`` of records whose data CRC is wrong.
    """

    starts: np.ndarray
    ends: np.ndarray
    record_offsets: np.ndarray
    consumed: int
    error: tuple[int, str] | None
    bad_data_crc: np.ndarray


_BAD_LENGTH = "length CRC mismatch: the length field is corrupt, so where the next record starts is unknown"
_NOT_TFRECORD = (
    "the file does not start with a TFRecord header (length CRC mismatch at its first byte), so it is "
    "probably not a TFRecord file at all; if it is not (a README, notes, a marker file), move it out of "
    "the input directory or start its name with '_' or '.', which the readers skip as Spark's file "
    "sources do"
)


def _length_error(offset: int) -> tuple[int, str]:
    return offset, _NOT_TFRECORD if offset == 0 else _BAD_LENGTH


def _length_ok(buf: bytes | np.ndarray, pos: int) -> bool:
    head = bytes(buf[pos : pos + 12])
    (stored,) = struct.unpack_from("<I", head, 8)
    return bool(stored == masked_crc32c(head[:8]))


def _stop_error(
    buf: bytes | np.ndarray, pos: int, file_offset: int, final: bool, *, bad_length: bool
) -> tuple[int, str] | None:
    """Why the walk of ``buf`` stopped at ``pos``: a corrupt length, a record cut short, or nothing."""
    size = len(buf)
    if bad_length or (pos + HEADER_BYTES <= size and not _length_ok(buf, pos)):
        return _length_error(file_offset + pos)
    if final and pos < size:
        remaining = size - pos
        return (
            file_offset + pos,
            f"truncated record: {remaining} byte(s) left at the end of the file, "
            f"fewer than the {'header' if remaining < HEADER_BYTES else 'record length'} needs",
        )
    return None


def split_records(
    buf: bytes | np.ndarray, *, file_offset: int = 0, final: bool = True, check_crc: bool = True, compiled: bool = True
) -> RecordSpans:
    """Find the records in ``buf`` and check their CRCs.

    Args:
        buf: bytes starting at a record boundary.
        file_offset: where ``buf`` starts in its file, for error offsets.
        final: ``buf`` reaches the end of the file, so a record cut short is an
            error (a truncated file) rather than something to carry over.
        check_crc: verify both CRCs of every record.
        compiled: walk and check in one compiled pass (:func:`sparktf.tfrecord.compiled.walk_records`);
            False runs this module's Python and NumPy, the reference it is tested against.
    """
    if compiled:
        return _split_compiled(buf, file_offset, final, check_crc)
    unpack = struct.unpack_from
    size = len(buf)
    pos = 0
    heads: list[int] = []
    lens: list[int] = []
    # The walk is sequential by nature (each length says where the next record is),
    # so it does the least per record; the CRCs are checked in bulk afterwards.
    while pos + HEADER_BYTES <= size:
        (length,) = unpack("<Q", buf, pos)  # type: ignore[arg-type]  # an array is a buffer too
        end = pos + RECORD_OVERHEAD + length
        if end > size:
            break
        heads.append(pos)
        lens.append(length)
        pos = end
    consumed = pos
    # Checked here, not only in bulk below: a corrupt length usually points past
    # the end, and waiting for more data would read the whole file into memory.
    error = _stop_error(buf, pos, file_offset, final, bad_length=False)
    starts = np.asarray(heads, dtype=np.int64) + HEADER_BYTES
    lengths = np.asarray(lens, dtype=np.int64)
    bad_data: np.ndarray = np.zeros(0, dtype=np.int64)
    if check_crc and len(heads):
        raw = np.frombuffer(buf, dtype=np.uint8, count=consumed)
        head_idx = starts - 4
        stored = raw[head_idx[:, None] + np.arange(4)].copy().view("<u4").ravel()
        bad_len = np.flatnonzero(stored != _length_crcs(lengths))
        if bad_len.size:
            first = int(bad_len[0])
            error = _length_error(file_offset + heads[first])
            starts, lengths = starts[:first], lengths[:first]
            heads = heads[:first]
            consumed = heads[first - 1] + RECORD_OVERHEAD + int(lengths[first - 1]) if first else 0
        ends = starts + lengths
        if starts.size:
            data_crcs = mask_crc(
                np.fromiter(
                    (google_crc32c.value(buf[a:b]) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)),
                    np.uint32,
                    starts.size,
                )
            )
            tail = raw[ends[:, None] + np.arange(4)].copy().view("<u4").ravel()
            bad_data = np.flatnonzero(tail != data_crcs).astype(np.int64)
    ends = starts + lengths
    offsets = np.asarray(heads, dtype=np.int64) + file_offset
    return RecordSpans(starts, ends, offsets, consumed, error, bad_data)


def _split_compiled(buf: bytes | np.ndarray, file_offset: int, final: bool, check_crc: bool) -> RecordSpans:
    from sparktf.tfrecord.compiled import walk_records

    heads, lengths, pos, bad_length, bad_data = walk_records(np.frombuffer(buf, np.uint8), check_crc)
    error = _stop_error(buf, pos, file_offset, final, bad_length=bad_length)
    starts = heads + HEADER_BYTES
    return RecordSpans(starts, starts + lengths, heads + file_offset, int(pos), error, bad_data)


def iter_chunks(
    stream: Any,
    path: str,
    chunk_bytes: int = 16 << 20,
    *,
    compiled: bool = True,
    resync: bool = False,
    offset: int = 0,
    align: bool = False,
    stop: int | None = None,
) -> Iterator[tuple[np.ndarray, RecordSpans]]:
    """Yield ``(buffer, spans)`` for successive chunks of a (decompressed) record stream.

    ``buffer`` is a uint8 array with the decoder's zero padding after it (see :func:`_join`).

    Raises nothing for corrupt data: framing errors come back in ``spans.error`` so the
    caller can apply its read mode. After a corrupt length the stream stops, unless
    ``resync``: then the reason says where whole records start again (the next header
    whose length CRC and data CRC both check out) and reading goes on from there. A
    corrupt length at byte 0 names the file as "not a TFRecord file" only when no whole
    record follows anywhere in it; otherwise it is a damaged first record.

    Args:
        offset: the file offset the stream is at (for a byte range of a file).
        align: the stream starts anywhere, not at a record: skip to the first whole record.
        stop: yield only records whose header starts before this file offset (a byte
            range); the record that straddles it is read whole, and a corrupt length right
            after this range's last record is still reported here.
    """
    carry: Any = b""
    final = False
    if align:
        buf, offset, at, final = _find_record(stream, b"", 0, offset, chunk_bytes, False, stop)
        if at < 0:
            return
        carry = buf[at:]
        offset += at
    while True:
        buf, got = _join(carry, None if final else stream, chunk_bytes)
        final = final or got == 0
        if not buf.size:
            return
        spans = split_records(buf, file_offset=offset, final=final, compiled=compiled)
        # A record longer than the chunk: read on until it is complete.
        if not final and spans.starts.size == 0 and spans.error is None:
            carry = buf
            continue
        if stop is not None:
            keep = int(np.searchsorted(spans.record_offsets, stop))
            if keep < spans.starts.size:  # the rest belongs to the next range, errors included
                yield buf, _first(spans, keep)
                return
            if spans.error is None and offset + spans.consumed >= stop:
                yield buf, spans
                return
        resume = -1
        if resync and spans.error is not None and spans.error[1] in (_BAD_LENGTH, _NOT_TFRECORD):
            bad = offset + spans.consumed
            more, base, at, final = _find_record(stream, buf, spans.consumed + 1, offset, chunk_bytes, final, None)
            if at >= 0:
                # A whole record further on: the file is a TFRecord file whose first length
                # is corrupt, not a README, and the records after the damage are read.
                resume = base + at
                why = f"{_BAD_LENGTH}; reading resumes at byte offset {resume}, the next whole record ({resume - bad} bytes skipped)"
            elif spans.error[1] == _NOT_TFRECORD:
                why = _NOT_TFRECORD  # no whole record anywhere in it
            else:
                why = f"{_BAD_LENGTH}; no whole record follows it (the rest of the file is skipped)"
            spans = replace(spans, error=(bad, why))
        yield buf, spans
        if resume >= 0 and (stop is None or resume < stop):
            carry, offset = more[at:], resume
            continue
        if spans.error is not None or final:
            return
        carry = buf[spans.consumed :]
        offset += spans.consumed


def _join(head: Any, stream: Any, size: int) -> tuple[np.ndarray, int]:
    """``head`` (bytes or a uint8 array) followed by up to ``size`` bytes read from ``stream``
    (None: nothing read), in one new array with :data:`~sparktf.tfrecord.wire.PAD` zero bytes
    after its end, which :func:`sparktf.tfrecord.wire.padded` then uses as they are.

    Why: joining the carried-over bytes to each chunk and padding the result for the decoder
    were two more copies of every byte read; in-process they cost about as much as framing
    and both CRC checks of the same bytes (BENCHMARKS.md, issue #21).

    Returns:
        ``(buffer, bytes read)``: the buffer is a view of exactly ``head`` plus what was read.
    """
    from sparktf.tfrecord.wire import PAD

    k = len(head)
    room = size if stream is not None else 0
    arr = np.empty(k + room + PAD, np.uint8)
    if k:
        arr[:k] = np.frombuffer(head, np.uint8) if not isinstance(head, np.ndarray) else head
    got = 0
    if stream is not None:
        readinto = getattr(stream, "readinto", None)
        if readinto is not None:
            got = int(readinto(arr[k : k + room].data) or 0)
        else:
            chunk = stream.read(room)
            got = len(chunk)
            arr[k : k + got] = np.frombuffer(chunk, np.uint8)
    arr[k + got : k + got + PAD] = 0
    return arr[: k + got], got


def _first(spans: RecordSpans, k: int) -> RecordSpans:
    return RecordSpans(
        spans.starts[:k],
        spans.ends[:k],
        spans.record_offsets[:k],
        int(spans.ends[k - 1]) + 4 if k else 0,
        None,
        spans.bad_data_crc[spans.bad_data_crc < k],
    )


def _find_record(
    stream: Any, buf: Any, at: int, base: int, chunk_bytes: int, final: bool, limit: int | None
) -> tuple[np.ndarray, int, int, bool]:
    """Search ``buf`` (``buf[0]`` is at file offset ``base``) from ``at`` for the next whole
    record, reading on from ``stream`` as needed, but not for one that would start at or
    after ``limit``.

    Returns:
        ``(buf, base, index, final)``: the buffer and its offset now (bytes already searched
        are dropped), the record's index in it or -1, and whether the stream has ended.
    """
    from sparktf.tfrecord.compiled import FOUND, NEED_MORE, next_record

    while True:
        pos, status = next_record(np.frombuffer(buf, np.uint8), at)
        if status == FOUND:
            return buf, base, pos, final
        if limit is not None and base + pos >= limit:
            return buf, base, -1, final
        if final:
            if status == NEED_MORE:  # cut short at the end of the file: not a record
                at = pos + 1
                continue
            return buf, base, -1, final
        buf, got = _join(buf[pos:], stream, chunk_bytes)
        final = got == 0
        base, at = base + pos, 0


class GunzipStream:
    """A gzip file's decompressed bytes that end, rather than raise, where the gzip stream breaks.

    A gzip file cut short (a killed writer, a partial copy) raises ``EOFError`` from
    Python's ``gzip`` somewhere inside a ``read``, and the bytes decompressed in that call
    are lost with it. Reading one decompressor step at a time (``read1``) keeps every
    byte that could be decompressed; the error is kept in :attr:`error` and the stream
    then ends, so the caller sees the last whole records, learns where the damage
    starts (:attr:`delivered`, a decompressed byte offset) and applies its read mode.
    """

    def __init__(self, raw: Any) -> None:
        import gzip

        self._gz = gzip.GzipFile(fileobj=raw, mode="rb")
        self.delivered = 0
        self.error: str | None = None

    def read(self, size: int = -1) -> bytes:
        import gzip
        import zlib

        parts: list[bytes] = []
        want = size if size is not None and size >= 0 else 1 << 62
        got = 0
        while got < want and self.error is None:
            try:
                piece = self._gz.read1(min(want - got, 1 << 20))
            except (gzip.BadGzipFile, EOFError, zlib.error) as exc:  # not OSError: an I/O failure is no damage
                self.error = f"the gzip stream cannot be decompressed past here ({exc})"
                break
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        self.delivered += got
        return b"".join(parts)

    def close(self) -> None:
        self._gz.close()

    def __enter__(self) -> GunzipStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def corrupt(path: str, offset: int | None, reason: str) -> CorruptRecordError:
    """The error for a record that cannot be read: the data is corrupt, not the code reading it.

    ``offset`` is the byte offset in the (decompressed) records, ``None`` when unknown.
    """
    where = f"{path} at byte offset {offset}" if offset is not None else path
    return CorruptRecordError(
        f"Corrupt TFRecord data in {where}: {reason}. The file was damaged after it "
        "was written (cut short, overwritten, a bad copy) or its writer was killed or faulty; the code "
        "reading it is not at fault.",
        hint="Rewrite the file (rerun the stage that wrote it, e.g. `sparktf run --from tfrecords`) and check "
        "its writer and storage; to read past the damage, read with .option('mode', 'DROPMALFORMED') to skip "
        "such records or 'PERMISSIVE' to keep them as a _corrupt_record column.",
        file=path,
        offset=offset,
    )


def first_corruption(stream: Any, path: str) -> tuple[int, str] | None:
    """``(byte offset, reason)`` of the first corrupt record of a (decompressed) record stream, or ``None``.

    Reads the whole stream: both CRCs of every record are checked.
    """
    for _buf, spans in iter_chunks(stream, path):
        if spans.bad_data_crc.size:
            first = int(spans.bad_data_crc[0])
            return int(spans.record_offsets[first]), "data CRC mismatch (the record's bytes are corrupt)"
        if spans.error is not None:
            return with_gzip_error(stream, spans.error)
    broken = getattr(stream, "error", None)
    if broken is not None:
        return int(stream.delivered), str(broken)
    return None


def with_gzip_error(stream: Any, error: tuple[int, str]) -> tuple[int, str]:
    """A framing error, saying so when it is the end of a broken gzip stream (:class:`GunzipStream`)."""
    broken = getattr(stream, "error", None)
    return (error[0], f"{error[1]}; {broken}") if broken is not None else error
