"""Write a Spark DataFrame as TFRecords, read it back on Spark, then feed it to TensorFlow.

What it shows:

1. ``df.write.format("tfrecord")``: sparktf's Spark data source (registered by
   ``sparktf.get_spark``) writes each row as a ``tf.train.Example``. Strings, integers,
   floats and arrays of them map to BytesList, Int64List and FloatList features; a
   null is simply a missing feature.
2. ``spark.read.format("tfrecord")``: the same files back as a DataFrame, with the
   schema inferred from the records (doubles come back as floats: TFRecord stores
   float32) or given explicitly.
3. ``sparktf.tfrecord.tfrecord_dataset``: a batched ``tf.data.Dataset`` over the same
   files whose parse spec is built from the Spark schema, so nobody writes a
   ``feature_description`` by hand; arrays arrive as ``tf.RaggedTensor``.

Run it:

    python examples/tfrecords_spark_to_tfdata.py                # 10,000 rows
    python examples/tfrecords_spark_to_tfdata.py --smoke-test   # 12 rows, seconds
    python examples/tfrecords_spark_to_tfdata.py --workdir /tmp/tfr   # keep the files
"""

from __future__ import annotations

from _common import parse_args, workdir

import sparktf


def main() -> None:
    args = parse_args(__doc__)
    rows = 12 if args.smoke_test else 10_000
    with workdir(args.workdir, "tfrecords") as work:
        spark = sparktf.get_spark(master="local[2]", log_level="ERROR", ui=False)
        from pyspark.sql import functions as F

        # A clickstream-like table with every kind of column a training set has.
        df = spark.range(rows).select(
            F.format_string("u%d", F.col("id") % 7).alias("user_id"),  # string
            F.col("id").alias("event_id"),  # bigint
            (F.col("id") % 5).cast("int").alias("clicks"),  # int
            (F.col("id") * 0.5 + 0.25).alias("price"),  # double (stored as float32)
            F.array(*(F.format_string("i%d", (F.col("id") + k) % 50) for k in range(3))).alias("history"),
            F.array(F.col("id").cast("float"), F.lit(1.0).cast("float")).alias("embedding"),  # array<float>
            F.when(F.col("id") % 3 == 0, None).otherwise(F.col("id") % 10).alias("coupon"),  # nullable
        )
        path = str(work / "tfrecords" / "clicks")
        df.write.format("tfrecord").option("recordType", "Example").mode("overwrite").save(path)
        files = sorted(p.name for p in (work / "tfrecords" / "clicks").glob("part-*"))
        print(f"wrote {rows} rows as {len(files)} TFRecord files under {path}")

        # Back on Spark: once with the schema inferred from the records, once with our own.
        inferred = spark.read.format("tfrecord").option("recordType", "Example").load(path)
        print("inferred schema:", inferred.schema.simpleString())
        back = spark.read.format("tfrecord").option("recordType", "Example").schema(df.schema).load(path)
        got = back.orderBy("event_id").collect()
        want = df.orderBy("event_id").collect()
        differ = sum(a != b for a, b in zip(got, want, strict=False)) + abs(len(got) - len(want))
        print(f"read back {len(got)} rows on Spark; {differ} differ from what was written")
        for row in got[:3]:
            print("  ", row)

        # Into TensorFlow: the parse spec comes from the DataFrame's schema.
        from sparktf.tfrecord import tfrecord_dataset

        batch_size = 4 if args.smoke_test else 512
        dataset = tfrecord_dataset(path, df.schema, batch_size=batch_size)
        batch = next(iter(dataset))
        print(f"tf.data batch of {batch_size} records:")
        for name, tensor in batch.items():
            print(f"  {name:9s} {type(tensor).__name__:14s} {tensor.dtype.name:7s} shape={tensor.shape}")
        # A null is a missing feature; tf.data fills in the parse spec's default (0 for integers).
        ids = batch["event_id"].numpy().tolist()[:6]
        in_spark = {r.event_id: r.coupon for r in want}
        print("coupon by event_id in Spark:", {i: in_spark[i] for i in ids})
        print("coupon by event_id in TF:   ", dict(zip(ids, batch["coupon"].numpy().tolist()[:6], strict=True)))
        seen = sum(int(b["event_id"].shape[0]) for b in dataset)
        print(f"tf.data read {seen} records from the files Spark wrote")
        spark.stop()


if __name__ == "__main__":
    main()
