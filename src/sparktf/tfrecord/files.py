"""Where TFRecord files live: listing, Hive-style partition directories, staged commits.

A write puts its part files under ``<path>/_temporary/<job>/`` and moves them into
place only when every task has succeeded, so a failed job leaves the target as it
was. Reads list ``part`` files recursively, skip names starting with ``_`` or
``.`` (``_SUCCESS``, ``_temporary``, hidden files) and turn ``col=value``
directories into partition columns, typed the way Spark types them.

Why our own code: a Python data source gets no help from Spark's file committer
or partition discovery, so both are rebuilt here on ``pyarrow.fs``, which also
reaches HDFS, S3 and GCS.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from sparktf.errors import TFRecordError

if TYPE_CHECKING:
    import pyarrow.fs as pafs

__all__ = [
    "DEFAULT_PARTITION",
    "TFRecordFile",
    "escape_partition_value",
    "filesystem",
    "is_gzip",
    "list_files",
    "partition_dir",
    "partition_value_type",
    "unescape_partition_value",
]

DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"
GZIP_MAGIC = b"\x1f\x8b"
# The characters Spark escapes in partition directory names (ExternalCatalogUtils).
_ESCAPE = set("\"%#'*/:=?\\\x7f{[]^") | {chr(c) for c in range(0x20)}


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path inside it for a local path or a URI."""
    import pyarrow.fs as pafs

    if "://" not in path or path.startswith("file://"):
        local = path.removeprefix("file://")
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(local))
    uri = re.sub(r"^s3[an]://", "s3://", path)  # Hadoop's s3a/s3n schemes name the same store
    try:
        fs, inner = pafs.FileSystem.from_uri(uri)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for unknown schemes
        raise TFRecordError(
            f"Cannot open the filesystem of {path!r}: {exc}.",
            hint="Use a local path, file://, hdfs://, s3:// (s3a://) or gs://.",
            path=path,
        ) from None
    return fs, inner.rstrip("/")


def escape_partition_value(value: str) -> str:
    return "".join(f"%{ord(c):02X}" if c in _ESCAPE else c for c in value)


def unescape_partition_value(value: str) -> str:
    return unquote(value)


def partition_dir(columns: Sequence[str], values: Sequence[Any]) -> str:
    """``col=value/...`` for one combination (``None`` is Hive's default partition)."""
    parts = []
    for col, value in zip(columns, values, strict=True):
        text = DEFAULT_PARTITION if value is None or value == "" else _partition_text(value)
        parts.append(f"{escape_partition_value(col)}={escape_partition_value(text)}")
    return "/".join(parts)


def _partition_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


@dataclass(frozen=True)
class TFRecordFile:
    """One file to read, with the partition values of its directories (as text)."""

    path: str
    size: int
    partition: tuple[tuple[str, str | None], ...] = ()


def list_files(path: str) -> tuple[list[TFRecordFile], list[str]]:
    """The data files under ``path`` and the partition column names, in directory order.

    Raises:
        TFRecordError: ``path`` does not exist, or partition directories disagree.
    """
    import pyarrow.fs as pafs

    fs, root = filesystem(path)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise TFRecordError(f"Path {path!r} does not exist.", hint="Check the path passed to load().", path=path)
    if info.type == pafs.FileType.File:
        return [TFRecordFile(root, info.size)], []
    files: list[TFRecordFile] = []
    columns: list[str] | None = None
    for entry in sorted(fs.get_file_info(pafs.FileSelector(root, recursive=True)), key=lambda e: e.path):
        if entry.type != pafs.FileType.File:
            continue
        rel = entry.path[len(root) :].lstrip("/")
        parts = rel.split("/")
        if any(p.startswith(("_", ".")) for p in parts):
            continue
        partition = []
        for d in parts[:-1]:
            if "=" not in d:
                raise TFRecordError(
                    f"Directory {d!r} under {path!r} is not a partition directory (col=value); "
                    f"found while listing {rel!r}.",
                    hint="Point load() at the directory that holds the part files or the col=value directories.",
                    path=path,
                )
            key, _, raw = d.partition("=")
            value = unescape_partition_value(raw)
            partition.append((unescape_partition_value(key), None if value == DEFAULT_PARTITION else value))
        cols = [k for k, _ in partition]
        if columns is None:
            columns = cols
        elif cols != columns:
            raise TFRecordError(
                f"Inconsistent partition directories under {path!r}: {'/'.join(columns) or '(none)'} "
                f"vs {'/'.join(cols) or '(none)'} (at {rel!r}).",
                hint="Every file must sit under the same col=value directory levels.",
                path=path,
            )
        files.append(TFRecordFile(entry.path, entry.size, tuple(partition)))
    return files, columns or []


def partition_value_type(values: Sequence[str | None]) -> str:
    """Spark's partition type inference over the text values: ``int``, ``bigint``, ``double`` or ``string``."""
    present = [v for v in values if v is not None]
    if not present:
        return "string"
    try:
        ints = [int(v) for v in present]
    except ValueError:
        ints = None
    if ints is not None:
        return "int" if all(-(2**31) <= i < 2**31 for i in ints) else "bigint"
    try:
        for v in present:
            float(v)
        return "double"
    except ValueError:
        return "string"


def is_gzip(head: bytes, path: str) -> bool:
    """Gzip by magic bytes; a ``.gz`` name without them is a mistake worth naming."""
    if head[:2] == GZIP_MAGIC:
        return True
    if path.endswith(".gz") and head:
        raise TFRecordError(
            f"{path} ends in .gz but does not start with the gzip magic bytes (it starts with {head[:2]!r}).",
            hint="Rename the file or re-create it.",
            path=path,
        )
    return False


def partition_values_by_column(files: Sequence[TFRecordFile]) -> Mapping[str, list[str | None]]:
    out: dict[str, list[str | None]] = {}
    for f in files:
        for k, v in f.partition:
            out.setdefault(k, []).append(v)
    return out
