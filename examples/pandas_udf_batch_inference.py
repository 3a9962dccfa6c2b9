"""Batch top-K recommendations over a Spark DataFrame with an iterator pandas UDF.

What it shows:

1. Train sparktf's sequential next-item model for a moment and export it with
   ``sparktf.models.export_model`` (a SavedModel that takes raw string ids).
2. An *iterator* pandas UDF, ``Iterator[tuple[pd.Series, pd.Series]] ->
   Iterator[pd.DataFrame]``, that loads the export with
   ``sparktf.models.load_exported`` once, before its first Arrow batch, and then
   scores every batch of its task with it: the model is loaded once per task (a
   Python worker runs one task at a time), never per batch or per row. Two Spark
   accumulators count the loads and the batches to prove it.
3. The recommendations written as Parquet, and checked against a direct call of the
   same export on the driver.

This is the pattern to copy for your own model. sparktf's own batch stage
(``sparktf recommend``, ``sparktf.inference.recommend_batch``) does the same with
``mapInArrow``, plus an ANN index and each user's seen items left out.

Run it:

    python examples/pandas_udf_batch_inference.py                # 500 users, 200 items
    python examples/pandas_udf_batch_inference.py --smoke-test   # 20 users, 30 items
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from _common import parse_args, tiny_recommender, workdir

import sparktf

RECS_SCHEMA = "items array<string>, scores array<float>"


def top_k_udf(export_path: str, loads: Any, batches: Any) -> Any:
    """The pandas UDF ``(user_id, history) -> struct<items, scores>`` over ``export_path``.

    Args:
        export_path: a model export (``<base>/<version>``) every executor can read.
        loads, batches: Spark accumulators, counting model loads and Arrow batches.
    """
    from pyspark.sql.functions import pandas_udf

    def top_k(pieces: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        # Runs on a Python worker once per task; everything above the loop is per-task setup.
        from sparktf.models import load_exported

        model = load_exported(export_path)
        loads.add(1)
        for user_id, history in pieces:
            out = model(user_id.tolist(), [list(h) for h in history])
            batches.add(1)
            yield pd.DataFrame(
                {
                    "items": [[item.decode() for item in row] for row in out["top_k_ids"]],
                    "scores": list(out["top_k_scores"]),
                }
            )

    return pandas_udf(top_k, RECS_SCHEMA)


def main() -> None:
    args = parse_args(__doc__)
    with workdir(args.workdir, "batch-inference") as work:
        spark = sparktf.get_spark(master="local[2]", log_level="ERROR", ui=False)
        from pyspark.sql import functions as F

        tiny = tiny_recommender(work / "models" / "recommender", smoke_test=args.smoke_test)
        print(f"trained and exported a sequential model to {tiny.export_path} (final loss {tiny.final_loss:.3f})")

        # One row per user: the last 10 items they interacted with (local[2] makes 2 partitions).
        users = spark.createDataFrame(
            [(user, items[-10:]) for user, items in tiny.histories.items()], "user_id string, history array<string>"
        )
        # Small Arrow batches, so that every task has several of them to score.
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "4" if args.smoke_test else "100")
        loads, batches = spark.sparkContext.accumulator(0), spark.sparkContext.accumulator(0)
        top_k = top_k_udf(tiny.export_path, loads, batches)

        recs = users.select(
            "user_id",
            F.element_at("history", -1).alias("last_item"),
            top_k("user_id", "history").alias("recs"),
        ).select("user_id", "last_item", "recs.items", "recs.scores")
        out_path = str(work / "recommendations")
        recs.write.mode("overwrite").parquet(out_path)
        print(
            f"scored {len(tiny.histories)} users in {users.rdd.getNumPartitions()} tasks: the model was loaded "
            f"{loads.value} times for {batches.value} Arrow batches"
        )

        written = spark.read.parquet(out_path).orderBy("user_id")
        written.show(5, truncate=False)

        # The same export called directly on the driver must agree with what Spark wrote.
        from sparktf.models import load_exported

        rows = written.collect()
        direct = load_exported(tiny.export_path)(
            [r.user_id for r in rows], [tiny.histories[r.user_id][-10:] for r in rows]
        )
        spark_scores = np.array([r.scores for r in rows], dtype=np.float32)
        agree = np.allclose(spark_scores, direct["top_k_scores"], rtol=1e-5, atol=1e-5)
        print(f"{len(rows)} users' top-{spark_scores.shape[1]} scores from Spark agree with the direct call: {agree}")
        spark.stop()
        if not agree:
            raise SystemExit("Spark's scores differ from the direct call of the same export.")


if __name__ == "__main__":
    main()
