"""A ``tf.data`` reader for the files the ``tfrecord`` data source writes.

:func:`tfrecord_dataset` builds the parse spec from the Spark schema, so nobody
writes a ``feature_description`` by hand: scalars become ``FixedLenFeature`` with
a default (a Spark null omits the feature, and a FixedLen without a default would
fail on it), arrays ``RaggedFeature`` (or ``VarLenFeature``), arrays of arrays
the ``sequence_features`` of a SequenceExample. Records are batched *before*
parsing (one vectorized ``parse_example`` per batch rather than one per record),
files are interleaved, gzip is detected per file by its magic bytes, partition
directories (``col=value``) come back as columns, and the distribution policy
(``FILE`` or ``DATA``) is set for multi-worker training.

Why our own code: TensorFlow reads the bytes, but turning a Spark schema into a
parse spec with the right defaults, dtypes and partition columns is exactly what
users get wrong (tensorflow/ecosystem#45, #84).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sparktf.errors import CorruptRecordError, SchemaError, TFRecordError
from sparktf.tfrecord import format as fmt
from sparktf.tfrecord.files import DEFAULT_PARTITION, GZIP_MAGIC, unescape_partition_value

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import DataType, StructType

__all__ = ["ParseSpec", "parse_spec", "tfrecord_dataset", "verify_file"]

ShardPolicy = Literal["AUTO", "FILE", "DATA", "OFF"]
_INT_TYPES = ("long", "integer", "short", "byte", "boolean")
_FLOAT_TYPES = ("float", "double", "decimal")
_BYTES_TYPES = ("string", "binary")


@dataclass(frozen=True)
class ParseSpec:
    """The arguments of ``tf.io.parse_example`` / ``parse_sequence_example``.

    Attributes:
        features: the Example features, or the SequenceExample context features.
        sequence_features: the SequenceExample feature lists (empty for Example).
        casts: columns to cast after parsing (TF parses only int64, float32 and
            string): ``name -> tf dtype name``, e.g. ``{"flag": "bool"}``.
    """

    features: Mapping[str, Any]
    sequence_features: Mapping[str, Any]
    casts: Mapping[str, str]


def _type_name(t: DataType) -> str:
    name = t.typeName()
    return "decimal" if name.startswith("decimal") else name


def _leaf(t: DataType) -> tuple[str, int]:
    """``(leaf type name, array depth)``; ML vectors are float arrays."""
    from pyspark.sql.types import ArrayType

    depth = 0
    while isinstance(t, ArrayType):
        depth += 1
        t = t.elementType
    name = _type_name(t)
    if name == "vector":
        return "float", depth + 1
    return name, depth


def _schema_of(schema: StructType | DataFrame | str | Mapping[str, Any]) -> StructType:
    from pyspark.sql.types import StructType

    if isinstance(schema, StructType):
        return schema
    if isinstance(schema, Mapping):
        return StructType.fromJson(dict(schema))
    if isinstance(schema, str):
        try:
            import tensorflow as tf

            with tf.io.gfile.GFile(schema, "r") as fh:
                return StructType.fromJson(json.loads(fh.read()))
        except Exception as exc:  # noqa: BLE001 - file and JSON errors alike mean "not a schema file"
            raise SchemaError(
                f"Cannot read a Spark schema from {schema!r}: {exc}.",
                hint="Pass a StructType, a DataFrame, or the path of a schema.json written by df.schema.json().",
            ) from None
    df_schema = getattr(schema, "schema", None)
    if isinstance(df_schema, StructType):
        return df_schema
    raise SchemaError(f"Expected a StructType, a DataFrame or a schema.json path, got {type(schema).__name__}.")


def parse_spec(
    schema: StructType | DataFrame | str | Mapping[str, Any],
    *,
    record_type: str = "Example",
    ragged: bool = True,
    defaults: Mapping[str, Any] | None = None,
    exclude: Sequence[str] = (),
) -> ParseSpec:
    """The parse spec for a Spark schema.

    Args:
        schema: a StructType, a DataFrame, a ``schema.json`` path or its parsed JSON.
        record_type: ``Example`` or ``SequenceExample``.
        ragged: arrays as ``tf.RaggedTensor`` (``RaggedFeature``); ``False`` gives
            ``tf.SparseTensor`` (``VarLenFeature``).
        defaults: values for missing scalars (Spark nulls); 0, 0.0 and ``b""`` otherwise.
        exclude: columns that are not features (partition columns, ``_corrupt_record``).

    Raises:
        SchemaError: a column has a type TFRecord cannot hold, or an array of
            arrays in an Example.
    """
    import sparktf.tfenv

    tf = sparktf.tfenv.import_tensorflow()
    defaults = dict(defaults or {})
    dtypes = {"int": tf.int64, "float": tf.float32, "bytes": tf.string}
    features: dict[str, Any] = {}
    sequence: dict[str, Any] = {}
    casts: dict[str, str] = {}
    for f in _schema_of(schema).fields:
        if f.name in exclude:
            continue
        name, depth = _leaf(f.dataType)
        group = (
            "int"
            if name in _INT_TYPES
            else "float"
            if name in _FLOAT_TYPES
            else "bytes"
            if name in _BYTES_TYPES
            else ""
        )
        if not group or depth > 2:
            raise SchemaError(
                f"Column {f.name!r} has type {f.dataType.simpleString()}, which has no TFRecord feature.",
                column=f.name,
            )
        dtype = dtypes[group]
        if name == "boolean":
            casts[f.name] = "bool"
        if depth == 0:
            default = defaults.get(f.name, {"int": 0, "float": 0.0, "bytes": b""}[group])
            features[f.name] = tf.io.FixedLenFeature([], dtype, default_value=default)
        elif depth == 1:
            features[f.name] = (
                tf.io.RaggedFeature(dtype, row_splits_dtype=tf.int64) if ragged else tf.io.VarLenFeature(dtype)
            )
        elif record_type != "SequenceExample":
            raise SchemaError(
                f"Column {f.name!r} is an array of arrays; only a SequenceExample holds those.",
                hint="Pass record_type='SequenceExample' (and write with it).",
                column=f.name,
            )
        else:
            sequence[f.name] = tf.io.RaggedFeature(dtype, row_splits_dtype=tf.int64)
    return ParseSpec(features, sequence, casts)


def _list_files(path: str) -> tuple[list[str], list[dict[str, str | None]]]:
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        raise TFRecordError(f"Path {path!r} does not exist.", path=path)
    if not tf.io.gfile.isdir(path):
        return [path], [{}]
    out: list[tuple[str, dict[str, str | None]]] = []
    root = path.rstrip("/")
    for dirpath, _dirs, names in tf.io.gfile.walk(root):
        rel_dir = dirpath[len(root) :].strip("/")
        parts = [p for p in rel_dir.split("/") if p]
        if any(p.startswith(("_", ".")) for p in parts):
            continue
        partition: dict[str, str | None] = {}
        for p in parts:
            key, sep, raw = p.partition("=")
            if not sep:
                raise TFRecordError(f"Directory {p!r} under {path!r} is not a partition directory (col=value).")
            value = unescape_partition_value(raw)
            partition[unescape_partition_value(key)] = None if value == DEFAULT_PARTITION else value
        for name in sorted(names):
            if not name.startswith(("_", ".")):
                out.append((f"{dirpath.rstrip('/')}/{name}", partition))
    out.sort(key=lambda x: x[0])
    return [f for f, _ in out], [p for _, p in out]


# Files this process has found intact (path, size, mtime): checked once, not every epoch.
_VERIFIED: set[tuple[str, int, int]] = set()
_VERIFIED_LOCK = threading.Lock()


def verify_file(path: str) -> None:
    """Check every record's framing and CRCs in one TFRecord file (gzip or not).

    TensorFlow's reader reports damage as ``DataLossError: corrupted record at 36``,
    naming neither the file nor what to do, and inside training that reads as a bug
    in ``train_fn``. This check reads the file once per process (a file already
    found intact, same size and modification time, is not read again).

    Raises:
        CorruptRecordError: naming the file, the byte offset and that the data is corrupt.
    """
    import tensorflow as tf

    stat = tf.io.gfile.stat(path)
    key = (path, int(stat.length), int(stat.mtime_nsec))
    with _VERIFIED_LOCK:
        if key in _VERIFIED:
            return
    with tf.io.gfile.GFile(path, "rb") as raw:
        head = raw.read(2)
        raw.seek(0)
        stream: Any = fmt.GunzipStream(raw) if head == GZIP_MAGIC else raw
        found = fmt.first_corruption(stream, path)  # a cut-short gzip stream: where it breaks
    if found is not None:
        raise fmt.corrupt(path, *found)
    with _VERIFIED_LOCK:
        _VERIFIED.add(key)


def _verify_op(tf: Any, file: Any) -> Any:
    """``file``, passed on only once :func:`verify_file` has accepted it (inside the tf.data graph)."""

    def check(name: Any) -> bool:
        path = name.numpy().decode("utf-8")
        try:
            verify_file(path)
        except CorruptRecordError as exc:
            # DataLossError is what TensorFlow raises for corrupt records; this one names the file.
            raise tf.errors.DataLossError(None, None, str(exc)) from None
        return True

    ok = tf.py_function(check, [file], Tout=tf.bool, name="sparktf_verify_tfrecord")
    with tf.control_dependencies([ok]):
        return tf.identity(file)


def _compression(path: str) -> str:
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "rb") as fh:
        head = fh.read(2)
    return "GZIP" if head == GZIP_MAGIC else ""


def tfrecord_dataset(
    path: str,
    schema: StructType | DataFrame | str | Mapping[str, Any],
    batch_size: int,
    *,
    record_type: str = "Example",
    columns: Sequence[str] | None = None,
    ragged: bool = True,
    defaults: Mapping[str, Any] | None = None,
    shuffle_files: bool = False,
    seed: int | None = None,
    cycle_length: int | None = None,
    drop_remainder: bool = False,
    auto_shard_policy: ShardPolicy = "FILE",
    prefetch: bool = True,
    verify: bool = True,
) -> Any:
    """A batched ``tf.data.Dataset`` of ``{column: tensor}`` over TFRecord files.

    Args:
        path: a file or a directory (partition directories are read as columns).
        schema: the Spark schema of the files (StructType, DataFrame, or the path
            of a ``schema.json``); partition columns in it are filled from the
            directory names.
        batch_size: records per batch; batching happens before parsing.
        record_type: ``Example`` or ``SequenceExample``.
        columns: the columns to keep (default: all in the schema).
        ragged: arrays as ragged tensors; ``False`` gives sparse tensors.
        defaults: values for missing scalars.
        shuffle_files: shuffle the file order (each epoch).
        seed: the file shuffle's seed.
        cycle_length: files read concurrently (default: AUTOTUNE).
        drop_remainder: drop a last, smaller batch (static batch dimension).
        auto_shard_policy: how ``tf.distribute`` splits the data across workers:
            ``FILE`` (each worker reads whole files; needs at least as many files as
            workers), ``DATA`` (every worker reads everything and keeps its share),
            ``AUTO`` or ``OFF``.
        prefetch: prefetch batches (AUTOTUNE).
        verify: check each file's framing and CRCs (:func:`verify_file`) before
            TensorFlow reads it, once per process, so that damaged data fails with
            an error naming the file and byte offset rather than TensorFlow's
            ``corrupted record at N``. Costs one extra read of each file in the
            first epoch.

    Raises:
        TFRecordError: the path does not exist or holds no files.
        SchemaError: the schema has a column TFRecord cannot hold.

    Example:
        >>> ds = tfrecord_dataset("work/tfrecords/train", "work/tfrecords/schema.json", 512)  # doctest: +SKIP
    """
    import sparktf.tfenv

    tf = sparktf.tfenv.import_tensorflow()
    if record_type not in ("Example", "SequenceExample"):
        raise TFRecordError(f"record_type {record_type!r} is not supported here; expected Example or SequenceExample.")
    policy = auto_shard_policy.upper()
    if policy not in ("AUTO", "FILE", "DATA", "OFF"):
        raise TFRecordError(f"auto_shard_policy = {auto_shard_policy!r}; expected one of AUTO, FILE, DATA, OFF.")
    struct = _schema_of(schema)
    files, partitions = _list_files(path)
    if not files:
        raise TFRecordError(f"No TFRecord files under {path!r}.", hint="Check the path.", path=path)
    part_cols = [c for c in partitions[0] if c in struct.fieldNames()]
    keep = list(columns) if columns is not None else struct.fieldNames()
    unknown = [c for c in keep if c not in struct.fieldNames()]
    if unknown:
        raise SchemaError(f"Column {unknown[0]!r} is not in the schema ({', '.join(struct.fieldNames())}).")
    spec = parse_spec(
        struct,
        record_type=record_type,
        ragged=ragged,
        defaults=defaults,
        exclude=[*part_cols, *[f.name for f in struct.fields if f.name not in keep], "_corrupt_record"],
    )
    compressions = [_compression(f) for f in files]
    part_values = {c: [p.get(c) or "" for p in partitions] for c in part_cols if c in keep}
    source = tf.data.Dataset.from_tensor_slices((files, compressions, part_values))
    if shuffle_files:
        source = source.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)

    def read(file: Any, compression: Any, parts: Any) -> Any:
        if verify:
            file = _verify_op(tf, file)
        records = tf.data.TFRecordDataset(file, compression_type=compression)
        return records.map(lambda r: (r, parts)) if part_values else records.map(lambda r: (r, {}))

    ds = source.interleave(
        read,
        cycle_length=cycle_length or tf.data.AUTOTUNE,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=not shuffle_files,
    )
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    types = {f.name: f.dataType for f in struct.fields}

    def parse(serialized: Any, parts: Any) -> Any:
        if record_type == "SequenceExample":
            context, sequence, _ = tf.io.parse_sequence_example(
                serialized, context_features=dict(spec.features), sequence_features=dict(spec.sequence_features)
            )
            out = {**context, **sequence}
        else:
            out = dict(tf.io.parse_example(serialized, dict(spec.features)))
        for name, dtype in spec.casts.items():
            out[name] = tf.cast(out[name], getattr(tf, dtype))
        for name, values in parts.items():
            out[name] = _partition_tensor(tf, values, types[name])
        return {c: out[c] for c in keep if c in out}

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = getattr(tf.data.experimental.AutoShardPolicy, policy)
    return ds.with_options(options)


def _partition_tensor(tf: Any, values: Any, t: DataType) -> Any:
    name = _type_name(t)
    if name in ("integer", "long", "short", "byte"):
        return tf.strings.to_number(values, out_type=tf.int64)
    if name in ("double", "float", "decimal"):
        return tf.strings.to_number(values, out_type=tf.float32)
    return values
