"""Which Spark/Arrow column types become which TFRecord features, and back.

The mapping follows linkedin/spark-tfrecord so files move between the two:
integers -> ``Int64List``; float, double and decimal -> ``FloatList`` (float32, so a
double loses precision); string and binary -> ``BytesList``; arrays of those map
the same way; arrays of arrays become a ``FeatureList`` of a SequenceExample. On top
of it, boolean/short/byte go to ``Int64List`` and Spark ML vectors to ``FloatList``
(dense), the two most requested gaps of that connector.

Schema inference uses the same connector's rules: a feature whose lists hold one
value is a scalar, more than one an array, none ``NullType``; across records the
types widen along ``bigint < float < string < array<bigint> < array<float> <
array<string> < array<array<...>>``.

Why our own code: the mapping is the contract of the data source and the codec,
and it has to be checked on the driver before a single file is written, with the
column's name in the error. pyspark is imported inside the functions only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparktf.errors import SchemaError, TFRecordError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import DataType, StructType

__all__ = [
    "CORRUPT_RECORD_COLUMN",
    "KIND_BINARY",
    "KIND_BYTES",
    "KIND_FLOAT",
    "KIND_INT64",
    "KIND_NAMES",
    "RECORD_TYPES",
    "FeatureSpec",
    "feature_specs",
    "inferred_type",
    "merge_types",
    "normalize_record_type",
    "spark_feature_specs",
]

# The field numbers of Feature's oneof ``kind`` (bytes_list = 1, float_list = 2, int64_list = 3).
KIND_BYTES = 1
KIND_FLOAT = 2
KIND_INT64 = 3
#: Not a field number: what inference observes for a BytesList whose sampled values are
#: not all valid UTF-8 (it is inferred as ``binary``, not ``string``).
KIND_BINARY = 4
KIND_NAMES = {0: "a Feature with no kind", KIND_BYTES: "BytesList", KIND_FLOAT: "FloatList", KIND_INT64: "Int64List"}
RECORD_TYPES = ("Example", "SequenceExample", "ByteArray")
CORRUPT_RECORD_COLUMN = "_corrupt_record"


@dataclass(frozen=True)
class FeatureSpec:
    """How one column is stored.

    Attributes:
        name: the column and feature name.
        kind: ``KIND_BYTES``, ``KIND_FLOAT`` or ``KIND_INT64``.
        depth: 0 for a scalar, 1 for an array, 2 for an array of arrays (a
            SequenceExample ``FeatureList``).
        arrow_type: the column's Arrow type (what the codec reads or builds).
        vector: the column is a Spark ML vector (stored as a dense FloatList).
    """

    name: str
    kind: int
    depth: int
    arrow_type: Any
    vector: bool = False


def normalize_record_type(value: str) -> str:
    """``recordType`` as one of :data:`RECORD_TYPES` (case-insensitive)."""
    for name in RECORD_TYPES:
        if value.strip().lower() == name.lower():
            return name
    raise TFRecordError(
        f"Option recordType = {value!r} is not supported; expected one of {', '.join(RECORD_TYPES)}.",
        option="recordType",
        value=value,
    )


def _is_vector_struct(t: pa.DataType) -> bool:
    import pyarrow as pa

    if not pa.types.is_struct(t):
        return False
    names = [t.field(i).name for i in range(t.num_fields)]
    return names == ["type", "size", "indices", "values"]


def _leaf_kind(t: pa.DataType) -> int | None:
    import pyarrow as pa

    if pa.types.is_boolean(t) or pa.types.is_signed_integer(t) or t in (pa.uint8(), pa.uint16(), pa.uint32()):
        return KIND_INT64
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return KIND_FLOAT
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return KIND_BYTES
    if pa.types.is_null(t):
        return KIND_BYTES  # always null, so never written; any kind will do
    return None


def _is_list(t: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def feature_specs(schema: pa.Schema, record_type: str = "Example") -> tuple[FeatureSpec, ...]:
    """The storage plan of every column of an Arrow schema.

    Raises:
        SchemaError: a column's type cannot be stored in ``record_type``; the
            message names the column.
    """
    specs = []
    for field in schema:
        t = field.type
        if _is_vector_struct(t):
            specs.append(FeatureSpec(field.name, KIND_FLOAT, 1, t, vector=True))
            continue
        depth = 0
        while _is_list(t):
            depth += 1
            t = t.value_type
        kind = _leaf_kind(t)
        if kind is None or depth > 2:
            raise SchemaError(
                f"Column {field.name!r} has type {field.type}, which a TFRecord feature cannot hold "
                "(supported: integers, boolean, float, double, decimal, string, binary, ML vectors, "
                "arrays of these, and arrays of arrays in SequenceExample).",
                hint="Cast or drop the column before writing, e.g. timestamps to bigint or string.",
                column=field.name,
            )
        if depth == 2 and record_type != "SequenceExample":
            raise SchemaError(
                f"Column {field.name!r} is an array of arrays ({field.type}), which recordType {record_type} "
                "cannot hold.",
                hint="Write with .option('recordType', 'SequenceExample') (it becomes a FeatureList), "
                "or flatten the column.",
                column=field.name,
            )
        specs.append(FeatureSpec(field.name, kind, depth, field.type))
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SchemaError(f"Column {dupes[0]!r} appears more than once; feature names must be unique.")
    return tuple(specs)


_SPARK_UNSUPPORTED_HINTS = {
    "timestamp": "cast it to bigint (e.g. unix_micros(col)) or to string",
    "timestamp_ntz": "cast it to bigint or string",
    "date": "cast it to int (e.g. unix_date(col)) or to string",
    "map": "split it into columns, or into two arrays of keys and values",
    "struct": "flatten its fields into columns",
}


def spark_feature_specs(schema: StructType, record_type: str = "Example") -> tuple[FeatureSpec, ...]:
    """:func:`feature_specs` for a Spark schema, with errors in Spark's type names.

    Called on the driver before anything is written.
    """
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import ArrayType, UserDefinedType

    for field in schema.fields:
        t: DataType = field.dataType
        while isinstance(t, ArrayType):
            t = t.elementType
        # By name: importing pyspark.ml for the class costs a second (it loads scipy).
        if isinstance(t, UserDefinedType) and type(t).__name__ != "VectorUDT":
            raise SchemaError(
                f"Column {field.name!r} has the user-defined type {t.simpleString()}, which TFRecord cannot hold.",
                hint="Convert it to an array or a supported column type first.",
                column=field.name,
            )
        simple = t.typeName()
        if simple in _SPARK_UNSUPPORTED_HINTS or simple in ("calendarinterval", "variant", "interval"):
            hint = _SPARK_UNSUPPORTED_HINTS.get(simple, "cast it to a supported type first")
            raise SchemaError(
                f"Column {field.name!r} has type {field.dataType.simpleString()}, which a TFRecord feature cannot "
                f"hold; {hint}.",
                column=field.name,
            )
    try:
        arrow = to_arrow_schema(schema)
    except Exception as exc:  # noqa: BLE001 - pyspark raises several kinds for types it cannot map
        raise SchemaError(f"The schema {schema.simpleString()} has a type Arrow cannot carry: {exc}.") from None
    return feature_specs(arrow, record_type)


# --------------------------------------------------------------------------- inference


def _precedence() -> list[DataType]:
    from pyspark.sql.types import ArrayType, BinaryType, FloatType, LongType, StringType

    scalars: list[DataType] = [LongType(), FloatType(), StringType(), BinaryType()]
    return scalars + [ArrayType(t) for t in scalars] + [ArrayType(ArrayType(t)) for t in scalars]


def inferred_type(kind: int, depth: int, max_count: int) -> DataType:
    """The Spark type of one observation of a feature, by spark-tfrecord's rules.

    Args:
        kind: the feature's kind (0 when no kind is set; ``KIND_BINARY`` for a BytesList
            whose values are not all valid UTF-8).
        depth: 1 for a Feature, 2 for a FeatureList.
        max_count: the most values a list held (for a FeatureList: in any of its features).
    """
    from pyspark.sql.types import ArrayType, BinaryType, FloatType, LongType, NullType, StringType

    leaf = {KIND_INT64: LongType(), KIND_FLOAT: FloatType(), KIND_BYTES: StringType(), KIND_BINARY: BinaryType()}.get(
        kind
    )
    if leaf is None:
        return NullType()
    if depth == 2:
        return ArrayType(ArrayType(leaf))
    if max_count == 0:
        return NullType()
    return leaf if max_count == 1 else ArrayType(leaf)


def merge_types(a: DataType, b: DataType) -> DataType:
    """Widen two inferred types (``NullType`` yields to anything)."""
    from pyspark.sql.types import NullType

    if isinstance(a, NullType):
        return b
    if isinstance(b, NullType) or a == b:
        return a
    order = _precedence()
    return order[max(order.index(a), order.index(b))]


def schema_from_observations(
    observations: Iterable[tuple[str, int, int, int]], partition_types: Mapping[str, DataType] | None = None
) -> StructType:
    """A Spark schema from ``(name, kind, depth, max_count)`` observations, in first-seen order.

    A feature that held no value in any sampled record (an empty list, a feature with no
    kind set, an empty feature list) has no type to infer; it becomes a nullable list of
    its kind (``string`` when no record set one), which reads as empty lists or nulls.
    Spark's ``void`` type would fail the read (Arrow cannot cast the values to null), and
    sparktf's own writer writes such features for a column that is null in every row.
    """
    from pyspark.sql.types import ArrayType, NullType, StringType, StructField, StructType

    merged: dict[str, DataType] = {}
    empty: dict[str, DataType] = {}
    for name, kind, depth, count in observations:
        t = inferred_type(kind, depth, count)
        merged[name] = merge_types(merged[name], t) if name in merged else t
        leaf = inferred_type(kind, 1, 1)
        if not isinstance(leaf, NullType) or name not in empty:
            leaf = StringType() if isinstance(leaf, NullType) else leaf
            empty[name] = ArrayType(ArrayType(leaf)) if depth == 2 else ArrayType(leaf)
    merged = {name: empty[name] if isinstance(t, NullType) else t for name, t in merged.items()}
    fields = [StructField(name, t, True) for name, t in merged.items() if name not in (partition_types or {})]
    fields += [StructField(name, t, True) for name, t in (partition_types or {}).items()]
    return StructType(fields)
