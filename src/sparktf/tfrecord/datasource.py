"""The ``tfrecord`` Spark data source (PySpark's Python Data Source API).

Usage, on any session: ``sparktf.get_spark`` registers the source; on a session you
built yourself Spark finds it on its own (the ``pyspark_sparktf_tfrecord`` module
that sparktf installs, see Spark's static registration of Python data sources),
provided Spark's Python workers run the Python sparktf is installed in; if they do
not, call ``sparktf.tfrecord.register(spark)``::

    df.write.format("tfrecord").option("recordType", "Example").mode("overwrite").save(path)
    spark.read.format("tfrecord").option("recordType", "Example").load(path)

Options (case-insensitive):

- ``recordType``: ``Example`` (default), ``SequenceExample`` or ``ByteArray``.
- ``codec`` or ``compression`` (writes): ``none`` (default), ``gzip``, or
  ``org.apache.hadoop.io.compress.GzipCodec``. Reads detect gzip by its magic bytes.
- ``compressionLevel`` (gzip writes): zlib's level, 0 (stored) to 9 (smallest, slowest);
  default 6, zlib's own default and what TensorFlow's ``TFRecordWriter`` uses. Python's
  ``gzip`` module defaults to 9, which wrote at 0.61x Parquet's speed for a few percent
  smaller files.
- ``partitionBy`` (writes): comma-separated columns, written as Hive-style
  ``col=value/`` directories. PySpark's ``.partitionBy()`` cannot reach a Python data
  source, hence the option (or :func:`sparktf.tfrecord.write_tfrecord`).
- ``mode`` (reads): ``FAILFAST`` (default: the error names the file and byte
  offset), ``DROPMALFORMED`` (skip bad records; each file logs a warning with the
  count and their byte offsets, since the API has no accumulators), or
  ``PERMISSIVE`` (bad records become rows of nulls with a ``_corrupt_record``
  string saying where and why; rename it with ``columnNameOfCorruptRecord``).
- ``batchSize`` (reads): records per Arrow batch, default 10,000.
- ``splitBytes`` (reads): an uncompressed file larger than this is read by several tasks,
  one per this many bytes (default 128 MiB, Spark's ``maxPartitionBytes``; 0: one task per
  file). Each split starts at the first record whose length and data CRCs both check out.
  A file whose records hold whole framed TFRecords as payload could fool that; read such
  files with ``splitBytes`` 0.
- ``decoder`` (reads): ``compiled`` (default; :mod:`sparktf.tfrecord.compiled`, Numba) or
  ``numpy``, the reference it is tested against (:func:`sparktf.tfrecord.codec.decode_examples`).
  Both give the same rows, errors included.
- ``samplingFiles``, ``samplingRecords``: how much schema inference reads
  (default: up to 8 files and 10,000 records in all).

Files and directories whose names start with ``_`` or ``.`` are skipped (``_SUCCESS``,
``_temporary``, checksums), as Spark's file sources skip them; any other file is read
as TFRecords, and one that does not start with a TFRecord header (a README) fails with
an error that says so. A gzip file cut short reads up to the cut and then follows
``mode`` like any other damage, with the decompressed byte offset where it breaks.

Only ``.mode("overwrite")`` and ``.mode("append")`` work with a Python data source
(Spark rejects the others before calling us). Overwrite replaces the whole target
when the job commits; a failed job leaves it untouched.

Why our own code: linkedin/spark-tfrecord and the TensorFlow connector are JVM jars
tied to Spark and Scala versions; this one installs with pip and runs on PyPI
packages only.
"""

from __future__ import annotations

import gzip
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    InputPartition,
    WriterCommitMessage,
)

from sparktf.errors import SchemaError, TFRecordError
from sparktf.tfrecord import codec, encode, files, wire
from sparktf.tfrecord import format as fmt
from sparktf.tfrecord.schema import (
    CORRUPT_RECORD_COLUMN,
    FeatureSpec,
    feature_specs,
    normalize_record_type,
    schema_from_observations,
    spark_feature_specs,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType

__all__ = ["ReadOptions", "TFRecordDataSource", "WriteOptions", "register"]

log = logging.getLogger("sparktf.tfrecord")

_CODECS = {
    "none": "none",
    "uncompressed": "none",
    "": "none",
    "gzip": "gzip",
    "gz": "gzip",
    "org.apache.hadoop.io.compress.gzipcodec": "gzip",
}
_MODES = ("FAILFAST", "DROPMALFORMED", "PERMISSIVE")
DECODERS = ("compiled", "numpy")  # reads: the Numba decoder, or the NumPy reference it is tested against
#: Spark's spark.sql.files.maxPartitionBytes default: larger uncompressed files are read in splits.
DEFAULT_SPLIT_BYTES = 128 << 20
#: zlib's Z_DEFAULT_COMPRESSION level (TensorFlow's ZlibCompressionOptions default).
ZLIB_DEFAULT_LEVEL = 6
BYTE_ARRAY_COLUMN = "byteArray"


def _opt(options: Mapping[str, str], *names: str, default: str = "") -> str:
    # Spark hands Python data sources a case-insensitive dict; plain dicts (tests,
    # helpers) get the same treatment here.
    lowered = {k.lower(): v for k, v in options.items()}
    for name in names:
        if name.lower() in lowered:
            return str(lowered[name.lower()])
    return default


def _int_opt(options: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = _opt(options, name, default=str(default))
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise TFRecordError(f"Option {name} = {raw!r} is not allowed; expected an integer >= {minimum}.", option=name)
    return value


def _path(options: Mapping[str, str]) -> str:
    path = _opt(options, "path")
    if not path:
        raise TFRecordError("No path given.", hint="Pass one to load(path) or save(path).")
    return path


@dataclass(frozen=True)
class WriteOptions:
    """The write options, parsed and checked."""

    path: str
    record_type: str = "Example"
    codec: str = "none"
    partition_by: tuple[str, ...] = ()
    compression_level: int = ZLIB_DEFAULT_LEVEL

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> WriteOptions:
        raw_codec = _opt(options, "codec", "compression", default="none")
        codec_name = _CODECS.get(raw_codec.strip().lower())
        if codec_name is None:
            raise TFRecordError(
                f"Option codec = {raw_codec!r} is not supported; expected none, gzip or "
                "org.apache.hadoop.io.compress.GzipCodec (TensorFlow reads only uncompressed, GZIP and ZLIB files).",
                option="codec",
            )
        parts = tuple(c.strip() for c in _opt(options, "partitionBy").split(",") if c.strip())
        level = _int_opt(options, "compressionLevel", ZLIB_DEFAULT_LEVEL, minimum=0)
        if level > 9:
            raise TFRecordError(
                f"Option compressionLevel = {level} is not allowed; expected 0 (stored) to 9 (smallest).",
                option="compressionLevel",
            )
        return cls(
            _path(options),
            normalize_record_type(_opt(options, "recordType", default="Example")),
            codec_name,
            parts,
            level,
        )

    @property
    def extension(self) -> str:
        return ".tfrecord.gz" if self.codec == "gzip" else ".tfrecord"


@dataclass(frozen=True)
class ReadOptions:
    """The read options, parsed and checked."""

    path: str
    record_type: str = "Example"
    mode: str = "FAILFAST"
    corrupt_column: str = CORRUPT_RECORD_COLUMN
    batch_size: int = 10_000
    sampling_files: int = 8
    sampling_records: int = 10_000
    decoder: str = "compiled"
    split_bytes: int = DEFAULT_SPLIT_BYTES

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> ReadOptions:
        mode = _opt(options, "mode", default="FAILFAST").strip().upper()
        if mode not in _MODES:
            raise TFRecordError(
                f"Option mode = {mode!r} is not supported; expected one of {', '.join(_MODES)}.", option="mode"
            )
        decoder = _opt(options, "decoder", default="compiled").strip().lower()
        if decoder not in DECODERS:
            raise TFRecordError(
                f"Option decoder = {decoder!r} is not supported; expected one of {', '.join(DECODERS)}.",
                option="decoder",
            )
        return cls(
            path=_path(options),
            record_type=normalize_record_type(_opt(options, "recordType", default="Example")),
            mode=mode,
            corrupt_column=_opt(options, "columnNameOfCorruptRecord", default=CORRUPT_RECORD_COLUMN),
            batch_size=_int_opt(options, "batchSize", 10_000),
            sampling_files=_int_opt(options, "samplingFiles", 8),
            sampling_records=_int_opt(options, "samplingRecords", 10_000),
            decoder=decoder,
            split_bytes=_int_opt(options, "splitBytes", DEFAULT_SPLIT_BYTES, minimum=0),
        )


# --------------------------------------------------------------------------- reading


def _open_records(path: str, start: int = 0) -> Any:
    """A readable stream of the file's framed records (gunzipped when it is gzip), or of an
    uncompressed file from byte ``start`` (a split)."""
    fs, inner = files.filesystem(path)
    if start:
        f = fs.open_input_file(inner)
        f.seek(start)
        return f
    raw = fs.open_input_stream(inner, compression=None)
    head = raw.read(2)
    raw.close()
    stream = fs.open_input_stream(inner, compression=None)
    if files.is_gzip(head, path):
        return fmt.GunzipStream(stream)
    return stream


def infer_schema(opts: ReadOptions) -> StructType:
    """Sample files and records and build a schema by spark-tfrecord's rules."""
    from pyspark.sql.types import BinaryType, StringType, StructField, StructType

    found, part_cols = files.list_files(opts.path)
    part_types = _partition_types(found, part_cols)
    if opts.record_type == "ByteArray":
        fields = [StructField(BYTE_ARRAY_COLUMN, BinaryType(), True)]
        fields += [StructField(k, t, True) for k, t in part_types.items()]
        return StructType(fields)
    if not found:
        raise TFRecordError(
            f"No TFRecord files under {opts.path!r} to infer a schema from.",
            hint="Check the path, or pass a schema with .schema(...).",
            path=opts.path,
        )
    observations: list[tuple[str, int, int, int]] = []
    budget = opts.sampling_records
    for f in found[: opts.sampling_files]:
        if budget <= 0:
            break
        with _open_records(f.path) as stream:
            for buf, spans in fmt.iter_chunks(stream, f.path, chunk_bytes=4 << 20, compiled=opts.decoder == "compiled"):
                starts, ends = spans.starts[:budget], spans.ends[:budget]
                good = np.ones(starts.size, dtype=bool)
                good[spans.bad_data_crc[spans.bad_data_crc < starts.size]] = False
                observations += codec.observe_features(buf, starts[good], ends[good], opts.record_type)
                budget -= starts.size
                if budget <= 0:
                    break
    schema = schema_from_observations(observations, part_types)
    if not schema.fields:
        raise TFRecordError(
            f"Found no features in the sampled records under {opts.path!r}.",
            hint="Pass a schema with .schema(...), or raise samplingRecords/samplingFiles.",
            path=opts.path,
        )
    if opts.mode == "PERMISSIVE":
        schema = schema.add(StructField(opts.corrupt_column, StringType(), True))
    return schema


def _partition_types(found: list[files.TFRecordFile], columns: list[str]) -> dict[str, Any]:
    from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType

    names = {"int": IntegerType(), "bigint": LongType(), "double": DoubleType(), "string": StringType()}
    by_col = files.partition_values_by_column(found)
    return {c: names[files.partition_value_type(by_col.get(c, []))] for c in columns}


class _FilePartition(InputPartition):
    """A file, or the records whose headers start in ``[start, end)`` of an uncompressed one."""

    def __init__(
        self, path: str, partition: tuple[tuple[str, str | None], ...], start: int = 0, end: int | None = None
    ) -> None:
        super().__init__((path, start))
        self.path = path
        self.partition = partition
        self.start = start
        self.end = end


def splits(found: Sequence[files.TFRecordFile], split_bytes: int) -> list[_FilePartition]:
    """One partition per file, and one per ``split_bytes`` of an uncompressed file larger than that.

    A split starts reading at the first whole record at or after its start (a header whose
    length CRC and data CRC check out) and reads every record whose header starts before its
    end, the last one whole, so each record is read by exactly one split.
    """
    out: list[_FilePartition] = []
    for f in found:
        if split_bytes <= 0 or f.size <= split_bytes or _is_gzip_file(f.path):
            out.append(_FilePartition(f.path, f.partition))
            continue
        bounds = list(range(0, f.size, split_bytes))
        for a, b in zip(bounds, [*bounds[1:], None], strict=True):
            out.append(_FilePartition(f.path, f.partition, a, b))
    return out


def _is_gzip_file(path: str) -> bool:
    fs, inner = files.filesystem(path)
    with fs.open_input_stream(inner, compression=None) as raw:
        return files.is_gzip(raw.read(2), path)


@dataclass
class _Plan:
    """What one read produces: feature columns, partition columns, the corrupt-record column."""

    arrow_schema: pa.Schema
    specs: tuple[FeatureSpec, ...]
    partition_fields: dict[str, pa.Field] = field(default_factory=dict)
    corrupt_index: int | None = None


def _plan(schema: StructType, opts: ReadOptions, partition_columns: list[str]) -> _Plan:
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow = to_arrow_schema(schema)
    feature_fields = [
        f
        for f in arrow
        if f.name not in partition_columns and not (f.name == opts.corrupt_column and pa.types.is_string(f.type))
    ]
    if opts.record_type == "ByteArray":
        if len(feature_fields) != 1 or not pa.types.is_binary(feature_fields[0].type):
            raise SchemaError(
                f"recordType ByteArray reads one binary column, but the schema has {[f.name for f in feature_fields]}.",
                hint=f"Use the schema '{BYTE_ARRAY_COLUMN} binary' or let it be inferred.",
            )
        specs: tuple[FeatureSpec, ...] = ()
    else:
        specs = feature_specs(pa.schema(feature_fields), opts.record_type)
    corrupt = arrow.get_field_index(opts.corrupt_column)
    return _Plan(
        arrow,
        specs,
        {f.name: f for f in arrow if f.name in partition_columns},
        corrupt if corrupt >= 0 and pa.types.is_string(arrow.field(corrupt).type) else None,
    )


class _Reader(DataSourceReader):
    def __init__(self, opts: ReadOptions, schema: StructType) -> None:
        self.opts = opts
        self.schema = schema
        self.partition_columns: list[str] = []

    def partitions(self) -> list[InputPartition]:
        found, cols = files.list_files(self.opts.path)
        self.partition_columns = cols
        return list(splits(found, self.opts.split_bytes))

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, _FilePartition)
        cols = [k for k, _ in partition.partition]
        plan = _plan(self.schema, self.opts, cols)
        yield from read_file(
            partition.path, plan, self.opts, dict(partition.partition), start=partition.start, end=partition.end
        )


def read_file(
    path: str,
    plan: _Plan,
    opts: ReadOptions,
    partition: Mapping[str, str | None],
    *,
    start: int = 0,
    end: int | None = None,
) -> Iterator[pa.RecordBatch]:
    """Decode one file (or the records of its byte range ``[start, end)``) into record batches
    of ``plan.arrow_schema``, applying ``opts.mode``. After a corrupt length, reading resumes
    at the next whole record (except in FAILFAST, which stops there)."""
    dropped: list[int] = []
    with _open_records(path, start) as stream:
        failed = False
        chunks = fmt.iter_chunks(
            stream,
            path,
            compiled=opts.decoder == "compiled",
            resync=opts.mode != "FAILFAST",
            offset=start,
            align=start > 0,
            stop=end,
        )
        for raw, spans in chunks:
            buf = codec.padded(raw)  # once per chunk, not per batch
            for lo in range(0, spans.starts.size, opts.batch_size):
                hi = min(lo + opts.batch_size, spans.starts.size)
                yield from _decode_batch(buf, spans, lo, hi, path, plan, opts, partition, dropped)
            if spans.error is not None:
                failed = True
                yield from _unreadable_rest(
                    path, *fmt.with_gzip_error(stream, spans.error), plan, opts, partition, dropped
                )
        broken = getattr(stream, "error", None)
        if broken is not None and not failed:
            # A gzip stream cut short between two records: every record before the cut is read.
            yield from _unreadable_rest(path, int(stream.delivered), broken, plan, opts, partition, dropped)
    if dropped:
        shown = ", ".join(str(o) for o in dropped[:20]) + (" ..." if len(dropped) > 20 else "")
        log.warning("DROPMALFORMED: skipped %d corrupt record(s) in %s at byte offset(s) %s", len(dropped), path, shown)


def _unreadable_rest(
    path: str,
    offset: int,
    reason: str,
    plan: _Plan,
    opts: ReadOptions,
    partition: Mapping[str, str | None],
    dropped: list[int],
) -> Iterator[pa.RecordBatch]:
    """The bytes from ``offset`` cannot be read (bad framing, a broken gzip stream), up to where the
    reason says reading resumes or to the end of the file: ``opts.mode``."""
    if opts.mode == "FAILFAST":
        raise fmt.corrupt(path, offset, reason)
    if opts.mode == "DROPMALFORMED":
        dropped.append(offset)
    else:
        yield _corrupt_only_batch(plan, partition, f"{path} at byte offset {offset}: {reason}")


def _decode_batch(
    buf: np.ndarray,
    spans: fmt.RecordSpans,
    lo: int,
    hi: int,
    path: str,
    plan: _Plan,
    opts: ReadOptions,
    partition: Mapping[str, str | None],
    dropped: list[int],
) -> Iterator[pa.RecordBatch]:
    starts, ends, offsets = spans.starts[lo:hi], spans.ends[lo:hi], spans.record_offsets[lo:hi]
    n = starts.size
    if opts.record_type == "ByteArray":
        data, offs = wire.gather(buf, starts, ends)
        columns = [
            pa.BinaryArray.from_buffers(pa.binary(), n, [None, pa.py_buffer(offs.astype(np.int32)), pa.py_buffer(data)])
        ]
        bad = np.zeros(n, dtype=bool)
        reasons = [""] * n
    else:
        decode = codec.decode_examples
        if opts.decoder == "compiled":
            from sparktf.tfrecord import compiled

            decode = compiled.decode_examples
        decoded = decode(buf, starts, ends, plan.specs, opts.record_type, is_padded=True)
        columns, bad, reasons = decoded.columns, decoded.bad, decoded.reasons
    crc = spans.bad_data_crc[(spans.bad_data_crc >= lo) & (spans.bad_data_crc < hi)] - lo
    for i in crc.tolist():
        bad[i] = True
        reasons[i] = "data CRC mismatch (the record's bytes are corrupt)"
    # Non-nullable columns cannot take a missing feature.
    for spec, col in zip(plan.specs, columns if plan.specs else [], strict=True):
        if not plan.arrow_schema.field(spec.name).nullable and col.null_count:
            for i in np.flatnonzero(~np.asarray(col.is_valid())).tolist():
                if not bad[i]:
                    bad[i] = True
                    reasons[i] = f"feature {spec.name!r} is missing but the column is not nullable"
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        if opts.mode == "FAILFAST":
            raise fmt.corrupt(path, int(offsets[first]), reasons[first])
        if opts.mode == "DROPMALFORMED":
            dropped.extend(offsets[bad].tolist())
            keep = pa.array(~bad)
            columns = [c.filter(keep) for c in columns]
            n = int((~bad).sum())
            bad = np.zeros(n, dtype=bool)
            reasons = [""] * n
        elif plan.corrupt_index is None:
            log.warning(
                "PERMISSIVE: %d corrupt record(s) in %s read as nulls (first at byte offset %d: %s); add a string "
                "column %r to the schema to see which",
                int(bad.sum()),
                path,
                int(offsets[first]),
                reasons[first],
                opts.corrupt_column,
            )
    yield _assemble(plan, columns, n, partition, bad, reasons, offsets, path)


def _assemble(
    plan: _Plan,
    columns: list[pa.Array],
    n: int,
    partition: Mapping[str, str | None],
    bad: np.ndarray,
    reasons: list[str],
    offsets: np.ndarray,
    path: str,
) -> pa.RecordBatch:
    by_name = {s.name: c for s, c in zip(plan.specs, columns if plan.specs else [], strict=True)}
    if not plan.specs and columns:
        by_name[plan.arrow_schema.field(0).name] = columns[0]  # ByteArray
    out = []
    bad_mask = pa.array(bad) if bad.any() else None
    for f in plan.arrow_schema:
        if f.name in by_name:
            col = by_name[f.name]
            if bad_mask is not None:
                fill = pa.nulls(n, f.type) if f.nullable else pa.array([_default(f.type)] * n, f.type)
                col = pc.if_else(bad_mask, fill, col)
            out.append(col.cast(f.type) if col.type != f.type else col)
        elif f.name in plan.partition_fields:
            out.append(_partition_column(f, partition.get(f.name), n))
        elif plan.corrupt_index is not None and f.name == plan.arrow_schema.field(plan.corrupt_index).name:
            text = [
                f"{path} at byte offset {int(o)}: {r}" if b else None
                for o, r, b in zip(offsets.tolist(), reasons, bad.tolist(), strict=False)
            ]
            out.append(pa.array(text if len(text) == n else [None] * n, pa.string()))
        else:
            out.append(pa.nulls(n, f.type))
    return pa.RecordBatch.from_arrays(out, schema=plan.arrow_schema)


def _default(t: pa.DataType) -> Any:
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return []
    return codec.default_scalar(t)


def _partition_column(f: pa.Field, value: str | None, n: int) -> pa.Array:
    if value is None:
        return pa.nulls(n, f.type)
    try:
        return pa.array([value] * n, pa.string()).cast(f.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise SchemaError(
            f"Partition value {f.name}={value!r} cannot be read as {f.type}.", hint="Fix the schema's type for it."
        ) from None


def _corrupt_only_batch(plan: _Plan, partition: Mapping[str, str | None], reason: str) -> pa.RecordBatch:
    out = []
    for f in plan.arrow_schema:
        if plan.corrupt_index is not None and f.name == plan.arrow_schema.field(plan.corrupt_index).name:
            out.append(pa.array([reason], pa.string()))
        elif f.name in plan.partition_fields:
            out.append(_partition_column(f, partition.get(f.name), 1))
        else:
            out.append(pa.nulls(1, f.type) if f.nullable else pa.array([_default(f.type)], f.type))
    return pa.RecordBatch.from_arrays(out, schema=plan.arrow_schema)


# --------------------------------------------------------------------------- writing


@dataclass
class _Commit(WriterCommitMessage):
    files: list[str]
    rows: int


def check_writable(schema: StructType, opts: WriteOptions) -> tuple[FeatureSpec, ...]:
    """Check a DataFrame schema against the write options on the driver, before any file exists.

    Raises:
        SchemaError: a column cannot be stored, or a partition column is missing.
    """
    from pyspark.sql.types import StructType as _StructType

    names = schema.fieldNames()
    for col in opts.partition_by:
        if col not in names:
            raise SchemaError(
                f"partitionBy column {col!r} is not in the DataFrame (columns: {', '.join(names)}).", column=col
            )
    data = _StructType([f for f in schema.fields if f.name not in opts.partition_by])
    if not data.fields:
        raise SchemaError("Nothing to write: every column is a partition column.")
    if opts.record_type == "ByteArray":
        t = data.fields[0].dataType.typeName()
        if len(data.fields) != 1 or t not in ("binary", "string"):
            raise SchemaError(
                f"recordType ByteArray writes one binary column as the raw records, but got {data.simpleString()}.",
                hint="Select a single binary (or string) column, e.g. df.select('payload').",
            )
        return ()
    return spark_feature_specs(data, opts.record_type)


class _Writer(DataSourceArrowWriter):
    def __init__(self, opts: WriteOptions, schema: StructType, overwrite: bool) -> None:
        self.opts = opts
        self.overwrite = overwrite
        self.specs = check_writable(schema, opts)
        self.job = uuid.uuid4().hex[:16]
        self.root = files.filesystem(opts.path)[1]
        self.stage = f"{self.root}/_temporary/{self.job}"

    def write(self, iterator: Iterator[pa.RecordBatch]) -> _Commit:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        task = ctx.partitionId() if ctx else 0
        attempt = ctx.attemptNumber() if ctx else 0
        fs, _ = files.filesystem(self.opts.path)
        name = f"part-{task:05d}-{self.job}-a{attempt}{self.opts.extension}"
        sinks: dict[str, Any] = {}
        rows = 0
        try:
            for batch in iterator:
                rows += batch.num_rows
                for pdir, part in _split_partitions(batch, self.opts.partition_by):
                    sink = sinks.get(pdir)
                    if sink is None:
                        rel = f"{pdir}/{name}" if pdir else name
                        fs.create_dir(f"{self.stage}/{pdir}".rstrip("/"), recursive=True)
                        sink = sinks[pdir] = _Sink(
                            fs, f"{self.stage}/{rel}", rel, self.opts.codec, self.opts.compression_level
                        )
                    sink.write(_encode(part, self.specs, self.opts.record_type))
        finally:
            for sink in sinks.values():
                sink.close()
        return _Commit([s.rel for s in sinks.values()], rows)

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        import pyarrow.fs as pafs

        fs, root = files.filesystem(self.opts.path)
        if self.overwrite:
            for entry in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
                if entry.base_name == "_temporary":
                    continue
                if entry.type == pafs.FileType.Directory:
                    fs.delete_dir(entry.path)
                else:
                    fs.delete_file(entry.path)
        fs.create_dir(root, recursive=True)
        for msg in messages:
            if not isinstance(msg, _Commit):
                continue
            for rel in msg.files:
                target = f"{root}/{rel}"
                parent = target.rsplit("/", 1)[0]
                fs.create_dir(parent, recursive=True)
                fs.move(f"{self.stage}/{rel}", target)
        with fs.open_output_stream(f"{root}/_SUCCESS") as out:
            out.write(b"")
        if self.overwrite:
            # The whole target is replaced, so staging left by earlier writes that were
            # killed before they could clean up goes too. (An append leaves other
            # jobs' staging alone: it may belong to a write still running.)
            _remove_stale_staging(fs, f"{self.root}/_temporary", keep=self.stage)
        self._clean(fs)

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        fs, _ = files.filesystem(self.opts.path)
        self._clean(fs)

    def _clean(self, fs: Any) -> None:
        import pyarrow.fs as pafs

        if fs.get_file_info(self.stage).type != pafs.FileType.NotFound:
            fs.delete_dir(self.stage)
        temp = f"{self.root}/_temporary"
        info = fs.get_file_info(temp)
        if info.type == pafs.FileType.Directory and not fs.get_file_info(pafs.FileSelector(temp)):
            fs.delete_dir(temp)


def _remove_stale_staging(fs: Any, temp: str, *, keep: str) -> None:
    import pyarrow.fs as pafs

    if fs.get_file_info(temp).type != pafs.FileType.Directory:
        return
    for entry in fs.get_file_info(pafs.FileSelector(temp)):
        if entry.path.rstrip("/") == keep.rstrip("/"):
            continue
        log.info("Removing %s, the staging directory of an earlier write that did not finish", entry.path)
        if entry.type == pafs.FileType.Directory:
            fs.delete_dir(entry.path)
        else:
            fs.delete_file(entry.path)


class _Sink:
    """One output file, gzipped or not."""

    def __init__(self, fs: Any, path: str, rel: str, codec_name: str, level: int) -> None:
        self.rel = rel
        self.raw = fs.open_output_stream(path, compression=None)  # no guessing from ".gz"
        self.out: Any = (
            gzip.GzipFile(fileobj=self.raw, mode="wb", mtime=0, compresslevel=level)
            if codec_name == "gzip"
            else self.raw
        )

    def write(self, data: Any) -> None:
        self.out.write(memoryview(data))

    def close(self) -> None:
        if self.out is not self.raw:
            self.out.close()
        self.raw.close()


def _encode(batch: pa.RecordBatch, specs: tuple[FeatureSpec, ...], record_type: str) -> Any:
    """Framed records of a batch (without partition columns)."""
    if record_type == "ByteArray":
        col = batch.column(0)
        if col.null_count:
            row = int(np.flatnonzero(~np.asarray(col.is_valid()))[0])
            raise SchemaError(
                f"recordType ByteArray: column {batch.schema.field(0).name!r} is null at row {row} of the batch; "
                "a record cannot be null.",
                hint="Filter the nulls out first.",
            )
        offs, data = encode.binary_parts(col)
        return fmt.frame(data, offs)
    buf, offs = codec.encode_examples(batch, specs, record_type)
    return fmt.frame(buf, offs)


def _split_partitions(batch: pa.RecordBatch, columns: tuple[str, ...]) -> Iterator[tuple[str, pa.RecordBatch]]:
    """``(partition dir, rows without the partition columns)`` per distinct combination."""
    if not columns:
        yield "", batch
        return
    import pyarrow.compute as pc

    table = pa.Table.from_batches([batch])
    keys = table.select(list(columns))
    data = table.drop_columns(list(columns))
    groups = keys.group_by(list(columns), use_threads=False).aggregate([])
    for combo in groups.to_pylist():
        mask = None
        for col in columns:
            value = combo[col]
            cond = pc.is_null(keys[col]) if value is None else pc.equal(keys[col], pa.scalar(value, keys[col].type))
            cond = pc.fill_null(cond, False)
            mask = cond if mask is None else pc.and_(mask, cond)
        part = data.filter(mask).combine_chunks()
        for b in part.to_batches():
            yield files.partition_dir(columns, [combo[c] for c in columns]), b


# --------------------------------------------------------------------------- registration


class TFRecordDataSource(DataSource):
    """``format("tfrecord")``: read and write TFRecord files of Examples, SequenceExamples or raw bytes."""

    @classmethod
    def name(cls) -> str:
        return "tfrecord"

    def schema(self) -> StructType:
        return infer_schema(ReadOptions.parse(self.options))

    def reader(self, schema: StructType) -> DataSourceReader:
        return _Reader(ReadOptions.parse(self.options), schema)

    def writer(self, schema: StructType, overwrite: bool) -> DataSourceArrowWriter:
        return _Writer(WriteOptions.parse(self.options), schema, overwrite)


class TFRecordsDataSource(TFRecordDataSource):
    """The same source as ``format("tfrecords")``, the TensorFlow connector's name."""

    @classmethod
    def name(cls) -> str:
        return "tfrecords"


def register(spark: SparkSession) -> None:
    """Register ``format("tfrecord")`` (and ``"tfrecords"``) on a session; idempotent."""
    spark.dataSource.register(TFRecordDataSource)
    spark.dataSource.register(TFRecordsDataSource)
