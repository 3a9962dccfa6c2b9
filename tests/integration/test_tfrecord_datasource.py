"""The ``tfrecord`` data source on a real SparkSession: round trips, layout, modes, corruption."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sparktf.errors import SchemaError, TFRecordError
from sparktf.tfrecord import format as fmt
from sparktf.tfrecord import read_tfrecord, write_tfrecord

pytestmark = pytest.mark.spark

ALL_TYPES = (
    "s string, b binary, l bigint, i int, sh short, by byte, flag boolean, f float, d double, "
    "dec decimal(10,2), ls array<string>, ll array<bigint>, lf array<float>, ld array<double>"
)


def _rows() -> list[tuple[Any, ...]]:
    from decimal import Decimal

    return [
        (
            "é☃",
            b"\x00\xff",
            -(2**63),
            -7,
            3,
            -1,
            True,
            1.5,
            0.25,
            Decimal("12.50"),
            ["a", ""],
            [1, -2],
            [0.5],
            [1.0, 2.0],
        ),
        (None, None, None, None, None, None, None, None, None, None, None, None, None, None),
        ("", b"", 2**63 - 1, 2**31 - 1, -(2**15), 127, False, -0.0, -3.5, Decimal("-1.00"), [], [], [], []),
    ]


def _files(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def test_example_roundtrip_with_user_schema(spark: Any, tmp_path: Path) -> None:
    df = spark.createDataFrame(_rows(), ALL_TYPES)
    out = tmp_path / "ex"
    df.write.format("tfrecord").option("recordType", "Example").mode("overwrite").save(str(out))
    names = _files(out)
    assert "_SUCCESS" in names and all(
        n == "_SUCCESS" or (n.startswith("part-") and n.endswith(".tfrecord")) for n in names
    )
    back = spark.read.format("tfrecord").option("recordType", "Example").schema(df.schema).load(str(out))
    assert sorted(back.collect(), key=str) == sorted(df.collect(), key=str)


def test_ml_vectors_are_written_dense_and_read_back(spark: Any, tmp_path: Path) -> None:
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql.types import LongType, StructField, StructType

    schema = StructType([StructField("id", LongType()), StructField("v", VectorUDT())])
    df = spark.createDataFrame(
        [(1, Vectors.dense([1.0, 2.0])), (2, Vectors.sparse(4, [1, 3], [5.0, 7.0])), (3, None)], schema
    )
    out = str(tmp_path / "vec")
    write_tfrecord(df, out)
    back = {r.id: r.v for r in spark.read.format("tfrecord").schema(schema).load(out).collect()}
    assert back == {1: Vectors.dense([1.0, 2.0]), 2: Vectors.dense([0.0, 5.0, 0.0, 7.0]), 3: None}
    assert spark.read.format("tfrecord").load(out).schema["v"].dataType.simpleString() == "array<float>"


def test_inferred_schema_follows_spark_tfrecord_rules(spark: Any, tmp_path: Path) -> None:
    df = spark.createDataFrame(_rows(), ALL_TYPES)
    out = str(tmp_path / "inf")
    df.write.format("tfrecord").mode("overwrite").save(out)
    read = spark.read.format("tfrecord").load(out)
    inferred = {f.name: f.dataType.simpleString() for f in read.schema.fields}
    assert inferred == {
        "s": "string",
        "b": "binary",  # its bytes are not UTF-8 (spark-tfrecord would say string, and the read would fail)
        "l": "bigint",
        "i": "bigint",
        "sh": "bigint",
        "by": "bigint",
        "flag": "bigint",
        "f": "float",
        "d": "float",
        "dec": "float",
        "ls": "array<string>",
        "ll": "array<bigint>",
        "lf": "float",  # one value per list in every sampled record
        "ld": "array<float>",
    }
    assert sorted(bytes(r.b) for r in read.select("b").collect() if r.b is not None) == sorted(
        bytes(r.b) for r in df.select("b").collect() if r.b is not None
    )


def test_sequence_example_and_byte_array_roundtrip(spark: Any, tmp_path: Path) -> None:
    schema = "id bigint, steps array<array<bigint>>, words array<array<string>>"
    df = spark.createDataFrame([(1, [[1, 2], [], [3]], [["a"], ["b", "c"]]), (2, None, []), (3, [], None)], schema)
    out = str(tmp_path / "seq")
    df.write.format("tfrecord").option("recordType", "SequenceExample").mode("overwrite").save(out)
    back = spark.read.format("tfrecord").option("recordType", "SequenceExample").schema(df.schema).load(out)
    assert sorted(back.collect()) == sorted(df.collect())
    with pytest.raises(Exception, match="SequenceExample"):
        df.write.format("tfrecord").mode("overwrite").save(str(tmp_path / "not-seq"))
    assert not (tmp_path / "not-seq").exists()

    raw = spark.createDataFrame([(b"\x01\x02",), (b"",), (b"xyz" * 100,)], "payload binary")
    write_tfrecord(raw, str(tmp_path / "raw"), record_type="ByteArray")
    got = spark.read.format("tfrecord").option("recordType", "ByteArray").load(str(tmp_path / "raw"))
    assert got.columns == ["byteArray"]
    assert sorted(r.byteArray for r in got.collect()) == sorted(r.payload for r in raw.collect())


def test_gzip_partition_by_append_and_partition_discovery(spark: Any, tmp_path: Path) -> None:
    df = spark.createDataFrame(
        [("u1", 1, "train"), ("u2", 2, "test"), ("u3", 3, "a/b"), ("u4", 4, None)], "user string, n int, split string"
    )
    out = tmp_path / "parts"
    df.write.format("tfrecord").option("partitionBy", "split").option("compression", "gzip").mode("overwrite").save(
        str(out)
    )
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert dirs == ["split=__HIVE_DEFAULT_PARTITION__", "split=a%2Fb", "split=test", "split=train"]
    assert all(f.endswith(".tfrecord.gz") for f in _files(out) if "part-" in f)
    assert all((out / f).read_bytes()[:2] == b"\x1f\x8b" for f in _files(out) if "part-" in f)
    back = read_tfrecord(spark, str(out))
    assert back.schema.simpleString() == "struct<n:bigint,user:string,split:string>"
    assert sorted(back.collect(), key=str) == sorted([(r.n, r.user, r.split) for r in df.collect()], key=str)

    more = spark.createDataFrame([("u5", 5, "train")], "user string, n int, split string")
    write_tfrecord(
        more, str(out), partition_by=["split"], codec="org.apache.hadoop.io.compress.GzipCodec", mode="append"
    )
    assert read_tfrecord(spark, str(out)).where("split = 'train'").count() == 2
    with pytest.raises(TFRecordError, match="already holds data"):
        write_tfrecord(more, str(out), partition_by=["split"], mode="error")
    write_tfrecord(more, str(out), mode="ignore")
    assert read_tfrecord(spark, str(out)).count() == 5

    ints = spark.createDataFrame([(1, 7), (2, 8)], "day int, v bigint")
    write_tfrecord(ints, str(tmp_path / "days"), partition_by=["day"])
    assert read_tfrecord(spark, str(tmp_path / "days")).schema["day"].dataType.simpleString() == "int"


def test_gzip_writes_at_zlibs_default_level_unless_told(spark: Any, tmp_path: Path) -> None:
    """Level 6 (zlib's and TensorFlow's default) unless ``compressionLevel`` says otherwise:
    gzip's XFL header byte is 2 at level 9, 4 at level 1 and 0 between."""
    df = spark.createDataFrame([(f"user-{i % 50}", i) for i in range(4000)], "user string, n bigint").coalesce(1)
    sizes, xfl = {}, {}
    for level in (None, 1, 9):
        out = tmp_path / f"level-{level}"
        writer = df.write.format("tfrecord").option("codec", "gzip").mode("overwrite")
        if level is not None:
            writer = writer.option("compressionLevel", str(level))
        writer.save(str(out))
        (part,) = [out / f for f in _files(out) if "part-" in f]
        sizes[level], xfl[level] = part.stat().st_size, part.read_bytes()[8]
        assert sorted(read_tfrecord(spark, str(out)).collect()) == sorted((r.n, r.user) for r in df.collect())
    assert xfl == {None: 0, 1: 4, 9: 2}
    assert sizes[1] > sizes[None] >= sizes[9]
    with pytest.raises(Exception, match="compressionLevel = 10"):
        df.write.format("tfrecord").option("codec", "gzip").option("compressionLevel", "10").mode("overwrite").save(
            str(tmp_path / "x")
        )


def test_unsupported_type_fails_before_any_file_is_written(spark: Any, tmp_path: Path) -> None:
    df = spark.sql("SELECT 1 AS id, current_timestamp() AS ts")
    target = tmp_path / "never"
    with pytest.raises(SchemaError, match=r"'ts'.*timestamp"):
        write_tfrecord(df, str(target))
    with pytest.raises(Exception, match=r"'ts'.*timestamp"):
        df.write.format("tfrecord").mode("overwrite").save(str(target))
    assert not target.exists()


def test_a_failed_job_leaves_the_previous_output_untouched(spark: Any, tmp_path: Path) -> None:
    out = tmp_path / "keep"
    good = spark.createDataFrame([(1, [1]), (2, [2])], "id bigint, xs array<bigint>")
    write_tfrecord(good, str(out))
    before = {f: (out / f).read_bytes() for f in _files(out)}
    # A null inside an array is only found by the task that meets it.
    bad = spark.createDataFrame([(3, [3]), (4, [None])], "id bigint, xs array<bigint>").repartition(2)
    with pytest.raises(Exception, match=r"'xs'.*null element"):
        bad.write.format("tfrecord").mode("overwrite").save(str(out))
    assert {f: (out / f).read_bytes() for f in _files(out)} == before
    assert not (out / "_temporary").exists()


def _corrupt_dataset(spark: Any, tmp_path: Path) -> tuple[Path, int, int]:
    df = spark.createDataFrame([(i, f"v{i}") for i in range(5)], "id bigint, s string").coalesce(1)
    out = tmp_path / "corrupt"
    write_tfrecord(df, str(out))
    (part,) = [out / f for f in _files(out) if f.startswith("part-")]
    data = bytearray(part.read_bytes())
    spans = fmt.split_records(bytes(data))
    victim = int(spans.record_offsets[2])
    data[int(spans.starts[2])] ^= 0xFF  # break record 2's data CRC
    part.write_bytes(bytes(data[:-3]))  # and truncate the last record
    return part, victim, int(spans.record_offsets[4])


def test_corrupt_records_follow_the_read_mode(spark: Any, tmp_path: Path) -> None:
    part, victim, last = _corrupt_dataset(spark, tmp_path)
    schema = "id bigint, s string"
    reader = spark.read.format("tfrecord").schema(schema)
    with pytest.raises(Exception) as info:
        reader.load(str(part.parent)).collect()
    assert str(part) in str(info.value) and f"byte offset {victim}" in str(info.value)

    dropped = reader.option("mode", "DROPMALFORMED").load(str(part.parent))
    assert sorted(r.id for r in dropped.collect()) == [0, 1, 3]

    permissive = spark.read.format("tfrecord").option("mode", "PERMISSIVE").load(str(part.parent))
    assert permissive.columns[-1] == "_corrupt_record"
    rows = permissive.collect()
    bad = sorted(r._corrupt_record for r in rows if r._corrupt_record)
    assert len(rows) == 5 and len(bad) == 2
    assert f"byte offset {victim}: data CRC mismatch" in bad[0] or f"byte offset {victim}: data CRC mismatch" in bad[1]
    assert any(f"byte offset {last}: truncated" in b for b in bad)
    assert all(r.id is None for r in rows if r._corrupt_record)


def test_bad_options_are_named(spark: Any, tmp_path: Path) -> None:
    df = spark.createDataFrame([(1,)], "id bigint")
    with pytest.raises(Exception, match="recordType = 'Proto'"):
        df.write.format("tfrecord").option("recordType", "Proto").mode("overwrite").save(str(tmp_path / "x"))
    with pytest.raises(Exception, match="codec = 'snappy'"):
        df.write.format("tfrecord").option("codec", "snappy").mode("overwrite").save(str(tmp_path / "x"))
    with pytest.raises(Exception, match="mode = 'LENIENT'"):
        spark.read.format("tfrecord").option("mode", "lenient").schema("id bigint").load(str(tmp_path)).collect()


def test_static_registration_module_finds_the_source() -> None:
    import io

    from pyspark.sql.worker import lookup_data_sources

    # What Spark runs in a Python worker to find data sources for sessions that
    # never called register(): it must find ours under its name.
    out = io.BytesIO()
    lookup_data_sources._main(io.BytesIO(), out)
    assert b"tfrecord" in out.getvalue()


def test_a_corrupt_file_fails_the_spark_read_naming_file_offset_and_that_the_data_is_corrupt(
    spark: Any, tmp_path: Path
) -> None:
    part, victim, _last = _corrupt_dataset(spark, tmp_path)
    with pytest.raises(Exception) as info:
        spark.read.format("tfrecord").schema("id bigint, s string").load(str(part.parent)).collect()
    text = str(info.value)
    assert f"Corrupt TFRecord data in {part} at byte offset {victim}" in text
    assert "Rewrite the file" in text and "writer" in text
    assert "train_fn" not in text


def _stale_staging(out: Path) -> Path:
    """What a writer killed mid-write leaves: its staging directory with a half-written part file."""
    stale = out / "_temporary" / "0123456789abcdef"
    stale.mkdir(parents=True)
    whole = fmt.frame_one(b"\x0a\x00")  # an empty Example, framed
    (stale / "part-00000-0123456789abcdef-a0.tfrecord").write_bytes(whole + whole[:7])
    return stale


def test_staging_left_by_a_killed_write_is_ignored_by_reads_and_removed_by_the_next_overwrite(
    spark: Any, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    write_tfrecord(spark.createDataFrame([(1,), (2,)], "id bigint"), str(out))
    _stale_staging(out)

    # Readers skip it: no half-written records, no error.
    assert sorted(r.id for r in read_tfrecord(spark, str(out), schema="id bigint").collect()) == [1, 2]

    write_tfrecord(spark.createDataFrame([(3,)], "id bigint"), str(out), mode="overwrite")
    assert not (out / "_temporary").exists()
    assert [r.id for r in read_tfrecord(spark, str(out), schema="id bigint").collect()] == [3]


def test_an_append_keeps_other_writes_staging_but_not_its_own(spark: Any, tmp_path: Path) -> None:
    out = tmp_path / "appended"
    write_tfrecord(spark.createDataFrame([(1,)], "id bigint"), str(out))
    stale = _stale_staging(out)
    # Another job's staging may belong to a write still running: an append must not touch it.
    write_tfrecord(spark.createDataFrame([(2,)], "id bigint"), str(out), mode="append")
    assert stale.exists() and list((out / "_temporary").iterdir()) == [stale]
    assert sorted(r.id for r in read_tfrecord(spark, str(out), schema="id bigint").collect()) == [1, 2]


def test_a_killed_first_write_does_not_count_as_existing_data(spark: Any, tmp_path: Path) -> None:
    out = tmp_path / "first"
    _stale_staging(out)  # the only thing under the path
    write_tfrecord(spark.createDataFrame([(7,)], "id bigint"), str(out), mode="ignore")
    assert [r.id for r in read_tfrecord(spark, str(out), schema="id bigint").collect()] == [7]
    with pytest.raises(TFRecordError, match="already holds data"):
        write_tfrecord(spark.createDataFrame([(8,)], "id bigint"), str(out), mode="error")


def test_a_large_file_is_read_in_byte_range_splits_each_record_once(spark: Any, tmp_path: Path) -> None:
    df = spark.range(3000).selectExpr("id", "repeat('x', cast(id % 97 AS int)) AS s")
    out = tmp_path / "one"
    df.coalesce(1).write.format("tfrecord").mode("overwrite").save(str(out))
    (part,) = [p for p in out.iterdir() if p.name.startswith("part-")]
    size = part.stat().st_size
    reader = spark.read.format("tfrecord").schema(df.schema)
    split = reader.option("splitBytes", str(size // 7)).load(str(out))
    assert split.rdd.getNumPartitions() == -(-size // (size // 7)) >= 7
    assert reader.option("splitBytes", "0").load(str(out)).rdd.getNumPartitions() == 1
    assert reader.load(str(out)).rdd.getNumPartitions() == 1  # smaller than the 128 MiB default
    rows = split.collect()
    assert sorted(r.id for r in rows) == list(range(3000))
    assert all(r.s == "x" * (r.id % 97) for r in rows)
