"""TFRecord write/read throughput against Spark's Parquet, and the codec against protobuf objects.

Run: ``cd /work/main && .venv/bin/python -m bench.bench_tfrecord [--rows 2000000]``

One Spark session (``local[2]``), one DataFrame of ``--rows`` rows and 11 mixed
columns (4 strings, 3 integers, a double, a boolean, an array of strings of 1-20
ids, an array of 8 floats, an array of 5 longs), cached in memory so every writer
reads the same rows. In the same run:

* **write**: ``df.write.format("tfrecord")`` (none and gzip) vs ``df.write.parquet``
  (Spark's default snappy), rows/s over the whole job.
* **read**: ``spark.read.format("tfrecord")`` with the schema given vs
  ``spark.read.parquet``, each into Spark's ``noop`` sink so every column is
  materialized; also with the NumPy reference decoder (``decoder=numpy``), gzip, one
  column of the eleven (a narrow schema, as far as the Python Data Source API lets
  pruning go), and the same rows written as one file instead of eight.
* **codec** (one core, no Spark): :func:`sparktf.tfrecord.codec.encode_examples` +
  framing vs building ``example_pb2.Example`` objects row by row and serializing
  them, and :func:`~sparktf.tfrecord.codec.decode_examples` vs
  ``Example.FromString`` plus gathering the values into Arrow columns, on the same
  Arrow batches of 10,000 rows; each the best of three, alternating, as the
  machine may be shared. The Spark jobs run ``--rounds`` times (3), alternated in each
  round (the second round in reverse order), and each row is their median with the range.

The table goes to ``bench/results/tfrecord.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

COLUMNS = """
    concat('user_', cast(id % 100000 AS string)) AS user_id,
    concat('item_', cast((id * 7919) % 50000 AS string)) AS item_id,
    transform(sequence(0, cast(id % 20 AS int)), x -> concat('item_', cast((id + x * 31) % 50000 AS string))) AS history,
    cast(id % 20 + 1 AS int) AS history_len,
    cast((id * 37) % 100000 AS double) / 100.0 AS price,
    concat('cat_', cast(id % 40 AS string)) AS category,
    transform(sequence(1, 8), x -> cast(((id * x) % 1000) / 1000.0 AS float)) AS scores,
    1767225600000 + id * 1000 AS ts,
    id % 3 = 0 AS flag,
    sequence(id % 5, id % 5 + 4) AS counts,
    cast(id % 2 AS int) AS label
"""


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _spark_benchmarks(spark: Any, rows: int, work: Path, rounds: int) -> list[tuple[str, str, float, float, str]]:
    """Every Spark job ``rounds`` times, the jobs alternated within each round (so a slow
    spell of a shared machine hits every side alike); each row is the median, with the range."""
    import statistics

    df = spark.range(rows, numPartitions=8).selectExpr(*[c.strip() for c in _split_columns(COLUMNS)])
    df = df.cache()
    df.count()
    pq, tfr, tgz = str(work / "pq"), str(work / "tfr"), str(work / "tfr_gz")
    one = str(work / "tfr_one")
    # Warm the Python workers once so neither side pays their start-up (nor the compiled
    # decoder's first load in each worker: about a second).
    spark.range(10).write.format("tfrecord").mode("overwrite").save(str(work / "warm"))
    spark.read.format("tfrecord").load(str(work / "warm")).write.format("noop").mode("overwrite").save()
    schema = df.schema

    def noop(reader: Any) -> None:
        reader.write.format("noop").mode("overwrite").save()

    def tfrecord(path: str, columns: Any = schema, decoder: str = "compiled") -> Any:
        return spark.read.format("tfrecord").schema(columns).option("decoder", decoder).load(path)

    writes: list[tuple[str, str, Any]] = [
        ("write", "Parquet (Spark, snappy)", lambda: df.write.mode("overwrite").parquet(pq)),
        ("write", "TFRecord (sparktf, none)", lambda: df.write.format("tfrecord").mode("overwrite").save(tfr)),
        (
            "write",
            "TFRecord (sparktf, gzip)",
            lambda: df.write.format("tfrecord").option("codec", "gzip").mode("overwrite").save(tgz),
        ),
    ]
    reads: list[tuple[str, str, Any]] = [
        ("read", "Parquet (Spark)", lambda: noop(spark.read.parquet(pq))),
        ("read", "TFRecord (sparktf, none)", lambda: noop(tfrecord(tfr))),
        ("read", "TFRecord, the NumPy reference decoder (decoder=numpy)", lambda: noop(tfrecord(tfr, decoder="numpy"))),
        ("read", "TFRecord (sparktf, gzip)", lambda: noop(tfrecord(tgz))),
        ("read", "Parquet, 1 column of 11 (user_id)", lambda: noop(spark.read.parquet(pq).select("user_id"))),
        ("read", "TFRecord, 1 column of 11 (schema 'user_id string')", lambda: noop(tfrecord(tfr, "user_id string"))),
        ("read", "TFRecord, the same rows in 1 file (not 8)", lambda: noop(tfrecord(one))),
    ]
    times: dict[tuple[str, str], list[float]] = {}
    for r in range(rounds):
        jobs = writes if r % 2 == 0 else writes[::-1]
        for area, name, fn in jobs:
            times.setdefault((area, name), []).append(_timed(fn))
        if r == 0:
            df.coalesce(1).write.format("tfrecord").mode("overwrite").save(one)
        for area, name, fn in reads if r % 2 == 0 else reads[::-1]:
            times.setdefault((area, name), []).append(_timed(fn))
    out: list[tuple[str, str, float, float, str]] = []
    for (area, name), ts in times.items():
        med = statistics.median(ts)
        out.append((area, name, rows / med, med, f"{min(ts):.1f}–{max(ts):.1f}"))
    sizes = {
        name: sum(f.stat().st_size for f in (work / name).rglob("*") if f.is_file()) for name in ("pq", "tfr", "tfr_gz")
    }
    out.append(
        (
            "size",
            f"MB on disk: Parquet {sizes['pq'] / 1e6:.0f}, TFRecord {sizes['tfr'] / 1e6:.0f}, gzip {sizes['tfr_gz'] / 1e6:.0f}",
            0.0,
            0.0,
            "",
        )
    )
    df.unpersist()
    return out


def _split_columns(text: str) -> list[str]:
    # Split on top-level commas only (the expressions contain commas of their own).
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def _protobuf_encode(batch: Any, example_pb2: Any, kinds: dict[str, int]) -> list[bytes]:
    out = []
    for row in batch.to_pylist():
        ex = example_pb2.Example()
        feats = ex.features.feature
        for name, value in row.items():
            if value is None:
                continue
            values = value if isinstance(value, list) else [value]
            kind = kinds[name]
            if kind == 1:
                feats[name].bytes_list.value.extend(v.encode() if isinstance(v, str) else v for v in values)
            elif kind == 2:
                feats[name].float_list.value.extend(values)
            else:
                feats[name].int64_list.value.extend(int(v) for v in values)
        out.append(ex.SerializeToString())
    return out


def _protobuf_decode(records: list[bytes], example_pb2: Any, schema: Any, specs: Any) -> Any:
    import pyarrow as pa

    columns: dict[str, list[Any]] = {s.name: [] for s in specs}
    attr = {1: "bytes_list", 2: "float_list", 3: "int64_list"}
    for data in records:
        feats = example_pb2.Example.FromString(data).features.feature
        for s in specs:
            if s.name not in feats:
                columns[s.name].append(None)
                continue
            values = list(getattr(feats[s.name], attr[s.kind]).value)
            if s.kind == 1 and pa.types.is_string(
                schema.field(s.name).type if s.depth == 0 else schema.field(s.name).type.value_type
            ):
                values = [v.decode() for v in values]
            columns[s.name].append(values if s.depth else values[0])
    return pa.table({s.name: pa.array(columns[s.name]).cast(schema.field(s.name).type) for s in specs})


def _codec_benchmarks(spark: Any, rows: int) -> list[tuple[str, str, float, float]]:
    import numpy as np
    import pyarrow as pa

    import sparktf.tfenv

    sparktf.tfenv.ensure_legacy_keras()
    from tensorflow.core.example import example_pb2

    from sparktf.tfrecord import codec, compiled
    from sparktf.tfrecord import format as fmt
    from sparktf.tfrecord.schema import feature_specs

    table = spark.range(rows).selectExpr(*[c.strip() for c in _split_columns(COLUMNS)]).toArrow()
    batches = table.to_batches(max_chunksize=10_000)
    specs = feature_specs(table.schema)
    kinds = {s.name: s.kind for s in specs}

    def ours_encode() -> list[Any]:
        return [codec.encode_examples(b, specs) for b in batches]

    encoded = ours_encode()
    blobs = [(buf.to_pybytes(), offs) for buf, offs in encoded]
    records = [[d[a:b] for a, b in zip(o[:-1].tolist(), o[1:].tolist(), strict=True)] for d, o in blobs]
    # The machine is shared: alternate the contenders and keep each one's best of three.
    t_ours = t_pb = t_dec = t_pbd = t_cmp = float("inf")
    compiled.decode_examples(blobs[0][0], blobs[0][1][:-1], blobs[0][1][1:], specs)  # compile, or load the cache
    for _ in range(3):
        t_ours = min(t_ours, _timed(lambda: [fmt.frame(buf, offs) for buf, offs in ours_encode()]))
        t_pb = min(
            t_pb,
            _timed(
                lambda: [b"".join(fmt.frame_one(r) for r in _protobuf_encode(b, example_pb2, kinds)) for b in batches]
            ),
        )
        t_dec = min(t_dec, _timed(lambda: [codec.decode_examples(d, o[:-1], o[1:], specs) for d, o in blobs]))
        t_cmp = min(t_cmp, _timed(lambda: [compiled.decode_examples(d, o[:-1], o[1:], specs) for d, o in blobs]))
        t_pbd = min(t_pbd, _timed(lambda: [_protobuf_decode(r, example_pb2, table.schema, specs) for r in records]))
    # Both paths must agree before their speeds mean anything.
    check = codec.decode_examples(blobs[0][0], blobs[0][1][:-1], blobs[0][1][1:], specs)
    ours = pa.Table.from_arrays(check.columns, schema=table.schema)
    theirs = _protobuf_decode(records[0], example_pb2, table.schema, specs)
    assert all(ours[c].equals(theirs[c]) for c in table.column_names), "codec and protobuf disagree"
    fast = compiled.decode_examples(blobs[0][0], blobs[0][1][:-1], blobs[0][1][1:], specs)
    assert all(a.equals(b) for a, b in zip(fast.columns, check.columns, strict=True)), "the two decoders disagree"
    assert records[0][0] and example_pb2.Example.FromString(records[0][0]).features.feature
    del np
    return [
        ("codec encode", "protobuf objects (example_pb2) + framing", rows / t_pb, t_pb),
        ("codec encode", "sparktf vectorized + batch framing", rows / t_ours, t_ours),
        ("codec decode", "protobuf FromString + columns to Arrow", rows / t_pbd, t_pbd),
        ("codec decode", "sparktf lock-step decoder to Arrow", rows / t_dec, t_dec),
        ("codec decode", "sparktf compiled decoder to Arrow", rows / t_cmp, t_cmp),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--codec-rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each Spark job, alternated (median shown)")
    args = parser.parse_args()

    from sparktf.config import SparkConfig
    from sparktf.spark import get_spark

    load_before = os.getloadavg()[0]
    spark = get_spark(SparkConfig(master="local[2]", ui=False, log_level="ERROR", driver_memory="6g"), testing=True)
    work = Path(tempfile.mkdtemp(prefix="bench_tfrecord_"))
    try:
        results = _spark_benchmarks(spark, args.rows, work, args.rounds)
        results += [(*r, "") for r in _codec_benchmarks(spark, args.codec_rows)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()[0]

    by = {(a, n): r for a, n, r, _, _ in results}
    pq_w = by[("write", "Parquet (Spark, snappy)")]
    tf_w = by[("write", "TFRecord (sparktf, none)")]
    lines = [
        f"## TFRecord bridge ({args.rows:,} rows x 11 columns; codec on {args.codec_rows:,} rows)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Spark local[2], "
        f"Python {sys.version.split()[0]}; load average {load_before:.1f} before, {load_after:.1f} after (shared machine).",
        "",
        f"Spark jobs: the median of {args.rounds} runs each, alternated (range of the seconds beside it); "
        "codec rows: the best of three.",
        "",
        "| what | how | rows/s | seconds | range (s) |",
        "|---|---|---:|---:|---:|",
    ]
    for area, name, rate, secs, spread in results:
        if area == "size":
            lines.append(f"| size | {name} | | | |")
        else:
            lines.append(f"| {area} | {name} | {rate:,.0f} | {secs:.1f} | {spread} |")
    enc_ratio = (
        by[("codec encode", "sparktf vectorized + batch framing")]
        / by[("codec encode", "protobuf objects (example_pb2) + framing")]
    )
    dec_ratio = (
        by[("codec decode", "sparktf lock-step decoder to Arrow")]
        / by[("codec decode", "protobuf FromString + columns to Arrow")]
    )
    cmp_ratio = (
        by[("codec decode", "sparktf compiled decoder to Arrow")]
        / by[("codec decode", "protobuf FromString + columns to Arrow")]
    )
    tf_r = by[("read", "TFRecord (sparktf, none)")]
    pq_r = by[("read", "Parquet (Spark)")]
    ref_r = by[("read", "TFRecord, the NumPy reference decoder (decoder=numpy)")]
    col_r = by[("read", "TFRecord, 1 column of 11 (schema 'user_id string')")]
    one_r = by[("read", "TFRecord, the same rows in 1 file (not 8)")]
    gz_w = by[("write", "TFRecord (sparktf, gzip)")]
    lines += [
        "",
        f"TFRecord write / Parquet write: **{tf_w / pq_w:.2f}x** (target >= 1.0x); gzip **{gz_w / pq_w:.2f}x** "
        f"(target >= 0.8x). TFRecord read / Parquet read: **{tf_r / pq_r:.2f}x** (target >= 1.0x; with the NumPy "
        f"reference decoder {ref_r / pq_r:.2f}x). One column of 11 takes **{tf_r / col_r:.0%}** of the time of all "
        f"11 (target <= 30%); the rows in one file read at **{one_r / tf_r:.2f}x** the speed of eight files "
        f"(target >= 0.8x).",
        f"Codec encode vs protobuf objects: **{enc_ratio:.1f}x** (target >= 5x); decode: **{dec_ratio:.1f}x**, "
        f"compiled **{cmp_ratio:.1f}x**.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tfrecord.md").write_text(text)


if __name__ == "__main__":
    main()
