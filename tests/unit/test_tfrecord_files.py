"""File layout: partition directories, listing, gzip detection."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparktf.errors import TFRecordError
from sparktf.tfrecord import files


@given(st.text(max_size=20))
def test_partition_values_escape_and_unescape(value: str) -> None:
    escaped = files.escape_partition_value(value)
    assert "/" not in escaped and "=" not in escaped
    assert files.unescape_partition_value(escaped) == value


def test_partition_dir_uses_hive_default_for_null() -> None:
    assert files.partition_dir(["a", "b"], ["x/y", None]) == "a=x%2Fy/b=__HIVE_DEFAULT_PARTITION__"
    assert files.partition_dir(["flag"], [True]) == "flag=true"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1", "-2"], "int"),
        (["1", str(2**40)], "bigint"),
        (["1", "2.5"], "double"),
        (["1", "x"], "string"),
        ([None], "string"),
    ],
)
def test_partition_type_inference(values: list[str | None], expected: str) -> None:
    assert files.partition_value_type(values) == expected


def test_list_files_discovers_partitions_and_skips_markers(tmp_path: Path) -> None:
    for rel in (
        "split=train/part-0.tfrecord",
        "split=test/part-1.tfrecord",
        "_SUCCESS",
        "_temporary/x/part-9.tfrecord",
        "split=test/.part-1.crc",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    found, cols = files.list_files(str(tmp_path))
    assert cols == ["split"]
    assert [(Path(f.path).name, f.partition) for f in found] == [
        ("part-1.tfrecord", (("split", "test"),)),
        ("part-0.tfrecord", (("split", "train"),)),
    ]


def test_list_files_rejects_inconsistent_partitions_and_missing_paths(tmp_path: Path) -> None:
    (tmp_path / "a=1").mkdir()
    (tmp_path / "a=1" / "p.tfrecord").write_bytes(b"")
    (tmp_path / "p.tfrecord").write_bytes(b"")
    with pytest.raises(TFRecordError, match="Inconsistent partition directories"):
        files.list_files(str(tmp_path))
    with pytest.raises(TFRecordError, match="does not exist"):
        files.list_files(str(tmp_path / "nope"))


def test_gzip_is_detected_by_magic_bytes_not_the_name() -> None:
    assert files.is_gzip(b"\x1f\x8b", "part-0.tfrecord")
    assert not files.is_gzip(b"\x00\x00", "part-0.tfrecord")
    with pytest.raises(TFRecordError, match="gzip magic"):
        files.is_gzip(b"\x00\x00", "part-0.tfrecord.gz")
