"""Type mapping, write-time schema checks and inference widening (pyspark types only, no JVM)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    ByteType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    MapType,
    NullType,
    ShortType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from sparktf.errors import SchemaError, TFRecordError
from sparktf.tfrecord.schema import (
    KIND_BYTES,
    KIND_FLOAT,
    KIND_INT64,
    feature_specs,
    inferred_type,
    merge_types,
    normalize_record_type,
    schema_from_observations,
    spark_feature_specs,
)


def _schema(*types: object) -> StructType:
    return StructType([StructField(f"c{i}", t, True) for i, t in enumerate(types)])  # type: ignore[arg-type]


def test_spark_types_map_like_spark_tfrecord_plus_bool_short_byte() -> None:
    specs = spark_feature_specs(
        _schema(
            LongType(),
            IntegerType(),
            ShortType(),
            ByteType(),
            BooleanType(),
            FloatType(),
            DoubleType(),
            DecimalType(10, 2),
            StringType(),
            BinaryType(),
            ArrayType(LongType()),
            ArrayType(StringType()),
        )
    )
    kinds = [s.kind for s in specs]
    assert kinds == [KIND_INT64] * 5 + [KIND_FLOAT] * 3 + [KIND_BYTES] * 2 + [KIND_INT64, KIND_BYTES]
    assert [s.depth for s in specs] == [0] * 10 + [1, 1]


def test_vectors_are_float_lists() -> None:
    from pyspark.ml.linalg import VectorUDT

    (spec,) = spark_feature_specs(_schema(VectorUDT()))
    assert spec.kind == KIND_FLOAT and spec.depth == 1 and spec.vector


@pytest.mark.parametrize(
    ("dtype", "words"),
    [(TimestampType(), "timestamp"), (DateType(), "date"), (MapType(StringType(), LongType()), "map")],
)
def test_unsupported_types_name_the_column_and_a_fix(dtype: object, words: str) -> None:
    schema = StructType([StructField("ok", LongType()), StructField("bad_col", dtype)])  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match=rf"'bad_col'.*{words}.*cast|'bad_col'.*{words}.*split") as info:
        spark_feature_specs(schema)
    assert info.value.context["column"] == "bad_col"


def test_nested_arrays_need_sequence_example() -> None:
    schema = _schema(ArrayType(ArrayType(LongType())))
    with pytest.raises(SchemaError, match=r"(?s)'c0'.*SequenceExample"):
        spark_feature_specs(schema, "Example")
    (spec,) = spark_feature_specs(schema, "SequenceExample")
    assert spec.depth == 2
    with pytest.raises(SchemaError, match="'c0'"):
        feature_specs(pa.schema([("c0", pa.list_(pa.list_(pa.list_(pa.int64()))))]), "SequenceExample")


def test_record_type_is_case_insensitive_and_lists_the_choices() -> None:
    assert normalize_record_type("sequenceexample") == "SequenceExample"
    with pytest.raises(TFRecordError, match="Example, SequenceExample, ByteArray"):
        normalize_record_type("Proto")


def test_inference_rules_and_widening() -> None:
    assert inferred_type(KIND_INT64, 1, 1) == LongType()
    assert inferred_type(KIND_INT64, 1, 3) == ArrayType(LongType())
    assert inferred_type(KIND_BYTES, 1, 0) == NullType()
    assert inferred_type(0, 1, 0) == NullType()
    assert inferred_type(KIND_FLOAT, 2, 1) == ArrayType(ArrayType(FloatType()))
    assert merge_types(LongType(), FloatType()) == FloatType()
    assert merge_types(FloatType(), StringType()) == StringType()
    assert merge_types(StringType(), ArrayType(LongType())) == ArrayType(LongType())
    assert merge_types(NullType(), ArrayType(StringType())) == ArrayType(StringType())
    assert merge_types(ArrayType(FloatType()), NullType()) == ArrayType(FloatType())


def test_a_feature_never_seen_with_a_value_is_a_list_of_its_kind_never_void() -> None:
    observations = [
        ("empty_f", KIND_FLOAT, 1, 0),  # an empty FloatList in every record
        ("nokind", 0, 1, 0),  # a Feature with no kind set
        ("mixed", 0, 1, 0),
        ("mixed", KIND_INT64, 1, 0),  # no kind in one record, an empty Int64List in another
        ("empty_list", 0, 2, 0),  # a SequenceExample feature list with no steps
        ("sometimes", KIND_BYTES, 1, 0),
        ("sometimes", KIND_BYTES, 1, 1),  # a value in some record: inferred as usual
    ]
    types = {f.name: f.dataType for f in schema_from_observations(observations).fields}
    assert types == {
        "empty_f": ArrayType(FloatType()),
        "nokind": ArrayType(StringType()),
        "mixed": ArrayType(LongType()),
        "empty_list": ArrayType(ArrayType(StringType())),
        "sometimes": StringType(),
    }
    assert all(f.nullable for f in schema_from_observations(observations).fields)


def test_schema_from_observations_merges_and_appends_partitions() -> None:
    schema = schema_from_observations(
        [("a", KIND_INT64, 1, 1), ("b", KIND_BYTES, 1, 0), ("a", KIND_INT64, 1, 2), ("b", KIND_BYTES, 1, 1)],
        {"split": StringType()},
    )
    assert schema == StructType(
        [
            StructField("a", ArrayType(LongType()), True),
            StructField("b", StringType(), True),
            StructField("split", StringType(), True),
        ]
    )
