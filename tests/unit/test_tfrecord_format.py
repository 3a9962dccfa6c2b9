"""TFRecord framing and CRC-32C: golden bytes, batch framing, corruption reporting."""

from __future__ import annotations

import io
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sparktf.tfrecord import format as fmt
from sparktf.tfrecord import wire


def test_crc32c_golden_value() -> None:
    assert fmt.crc32c(b"123456789") == 0xE3069283
    assert fmt.crc32c(b"") == 0


def test_mask_matches_the_leveldb_formula_and_unmasks() -> None:
    crc = 0xE3069283
    expected = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    assert fmt.mask_crc(crc) == expected
    assert fmt.unmask_crc(expected) == crc
    arr = fmt.mask_crc(np.array([crc, 0, 0xFFFFFFFF], dtype=np.uint32))
    assert arr.tolist() == [expected, fmt.mask_crc(0), fmt.mask_crc(0xFFFFFFFF)]


def test_frame_one_golden_bytes() -> None:
    # The empty record: length 0, masked CRC of eight zero bytes, no data, masked CRC of nothing.
    framed = fmt.frame_one(b"")
    assert framed[:8] == b"\x00" * 8
    assert struct.unpack("<I", framed[8:12])[0] == fmt.mask_crc(fmt.crc32c(b"\x00" * 8))
    assert struct.unpack("<I", framed[12:16])[0] == fmt.mask_crc(0)
    # mask(0) is the mask delta itself, stored little-endian.
    assert framed[12:] == bytes.fromhex("d8ea82a2")
    assert fmt.frame_one(b"123456789")[12:21] == b"123456789"
    assert struct.unpack("<I", fmt.frame_one(b"123456789")[21:])[0] == fmt.mask_crc(0xE3069283)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.binary(max_size=300), max_size=30))
def test_batch_frame_equals_framing_one_by_one(records: list[bytes]) -> None:
    offsets = np.cumsum([0, *[len(r) for r in records]])
    framed = fmt.frame(b"".join(records), offsets)
    assert framed.to_pybytes() == b"".join(fmt.frame_one(r) for r in records)
    spans = fmt.split_records(framed.to_pybytes())
    blob = framed.to_pybytes()
    assert [blob[a:b] for a, b in zip(spans.starts, spans.ends, strict=True)] == records
    assert spans.error is None and spans.bad_data_crc.size == 0


def _three() -> bytes:
    return b"".join(fmt.frame_one(r) for r in (b"alpha", b"", b"gamma" * 10))


def test_truncated_file_names_the_offset_of_the_cut_record() -> None:
    data = _three()
    cut = data[:-5]
    spans = fmt.split_records(cut)
    second_end = len(fmt.frame_one(b"alpha")) + len(fmt.frame_one(b""))
    assert spans.starts.size == 2
    assert spans.error is not None and spans.error[0] == second_end
    assert "truncated" in spans.error[1]


def test_bad_data_crc_flags_only_that_record() -> None:
    data = bytearray(_three())
    data[12] ^= 0xFF  # first payload byte of record 0
    spans = fmt.split_records(bytes(data))
    assert spans.bad_data_crc.tolist() == [0]
    assert spans.error is None and spans.starts.size == 3


def test_corrupt_length_stops_with_an_error_at_that_record() -> None:
    data = bytearray(_three())
    second = len(fmt.frame_one(b"alpha"))
    data[second] ^= 0x01
    spans = fmt.split_records(bytes(data))
    assert spans.starts.size == 1
    assert spans.error is not None and spans.error[0] == second and "length CRC" in spans.error[1]


def test_chunks_carry_records_across_boundaries() -> None:
    records = [bytes([i]) * (i * 7) for i in range(40)]
    data = b"".join(fmt.frame_one(r) for r in records)
    got = []
    for buf, spans in fmt.iter_chunks(io.BytesIO(data), "mem", chunk_bytes=37):
        got += [bytes(buf[a:b]) for a, b in zip(spans.starts.tolist(), spans.ends.tolist(), strict=True)]
        offsets = spans.record_offsets.tolist()
        assert all(
            data[o + 12 : o + 12 + 1] == bytes(buf[s : s + 1])
            for o, s in zip(offsets, spans.starts.tolist(), strict=True)
        )
        # The decoder's padding is already there: padded() hands back the same memory, zeros after.
        pad = wire.padded(buf)
        assert pad.size == buf.size + wire.PAD and not pad[buf.size :].any()
        assert np.shares_memory(pad, buf)
    assert got == records


def test_padded_copies_what_has_no_zeros_after_it() -> None:
    base = np.arange(64, dtype=np.uint8)
    view = base[:10]  # followed by 10, 11, ...: not padding
    pad = wire.padded(view)
    assert not np.shares_memory(pad, base) and pad[:10].tolist() == list(range(10)) and not pad[10:].any()
    assert not np.shares_memory(wire.padded(base[3:20]), base)  # not the front of its buffer


def test_corrupt_error_names_file_offset_and_next_step() -> None:
    err = fmt.corrupt("/data/part-0.tfrecord", 4096, "data CRC mismatch")
    assert "/data/part-0.tfrecord" in err.message and "4096" in err.message
    assert "DROPMALFORMED" in str(err)
    assert err.context == {"file": "/data/part-0.tfrecord", "offset": 4096}
