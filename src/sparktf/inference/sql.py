"""``recommend(user_id, k)`` as a Spark SQL function.

    SELECT user_id, recommend(user_id, 10) AS recs FROM users
    SELECT r.item_id, r.score FROM (SELECT explode(recommend('u42', 5)) AS r)

It returns ``array<struct<item_id: string, score: float>>``, best first, with the
items the user already interacted with left out (fewer than k entries when the
catalogue runs out; NULL for a NULL user). A user the features do not know gets
the model's cold-start answer (an empty history).

How it gets registered: the ``recommend`` stage registers it on its session after
writing the recommendations; in another session (a notebook, ``spark-sql`` through
PySpark) call :func:`sparktf.stages.recommend.register_recommend_from_config` once a
model and an index exist::

    from sparktf import get_spark, load_config
    from sparktf.stages.recommend import register_recommend_from_config
    cfg = load_config("my.toml"); spark = get_spark(cfg.spark)
    register_recommend_from_config(spark, cfg)
    spark.sql("SELECT recommend('u42', 5)").show(truncate=False)

It is a pandas UDF: each Python worker loads the model, the index and the user
contexts (``<workdir>/state/user_contexts``, written by the stage) once and keeps
them for every later batch. The data layer's ``sql_functions`` module registers the
other SQL functions; this one lives here because it needs a trained model.

Why our own code: Spark cannot call a SavedModel plus a ScaNN index from SQL by
itself, and ``mlflow.pyfunc.spark_udf`` knows neither the user's history nor the
items to exclude.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from sparktf.errors import InferenceError
from sparktf.inference.batch import index_token, load_cached
from sparktf.retrieval.index import PAD_ID

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession


__all__ = ["RETURN_TYPE", "contexts_token", "register_recommend"]

RETURN_TYPE = "array<struct<item_id:string,score:float>>"

_CONTEXTS: OrderedDict[tuple[str, str], dict[str, tuple[list[str], list[str]]]] = OrderedDict()


def contexts_token(path: str) -> str:
    """Changes whenever the context table at ``path`` is rewritten."""
    stamps = [
        f"{entry.name}:{entry.stat().st_mtime_ns}"
        for entry in sorted(os.scandir(path), key=lambda e: e.name)
        if entry.name.endswith(".parquet")
    ]
    return hashlib.sha256("\n".join(stamps).encode()).hexdigest()[:16]


def _load_contexts(path: str, token: str) -> dict[str, tuple[list[str], list[str]]]:
    key = (path, token)
    hit = _CONTEXTS.get(key)
    if hit is not None:
        return hit
    import pyarrow.dataset as ds

    table = ds.dataset(path, format="parquet").to_table(columns=["user_id", "history", "exclude"])
    out = {
        u: (h or [], e or [])
        for u, h, e in zip(
            table.column("user_id").to_pylist(),
            table.column("history").to_pylist(),
            table.column("exclude").to_pylist(),
            strict=True,
        )
    }
    _CONTEXTS.clear()  # one context table per worker is plenty
    _CONTEXTS[key] = out
    return out


def _recommend_series(
    user_id: pd.Series,
    k: pd.Series,
    *,
    model_path: str,
    index_path: str,
    index_tok: str,
    contexts_path: str,
    contexts_tok: str,
    max_k: int,
    threads: int,
) -> pd.Series:
    import pandas as pd

    for user, want in zip(user_id.tolist(), k.tolist(), strict=True):
        if want is None or pd.isna(want) or not 1 <= int(want) <= max_k:
            raise InferenceError(
                f"recommend(user_id, k) got k = {want!r} for user_id {user!r}; k must be an integer from 1 to {max_k}.",
                hint="Pass a literal such as recommend(user_id, 10).",
            )
    known = [i for i, u in enumerate(user_id.tolist()) if u is not None and not pd.isna(u)]
    result: list[Any] = [None] * len(user_id)
    if not known:
        return pd.Series(result, dtype=object)
    model, index, _ = load_cached(model_path, index_path, index_tok, threads)
    contexts = _load_contexts(contexts_path, contexts_tok)
    users = [str(user_id.iloc[i]) for i in known]
    ctx = [contexts.get(u, ([], [])) for u in users]
    kmax = int(k.iloc[known].max())
    q = model(users, [c[0] for c in ctx])["query_embedding"]
    ids, scores = index.search(q, kmax, [c[1] for c in ctx])
    for row, i in enumerate(known):
        want = int(k.iloc[i])
        result[i] = [
            {"item_id": item, "score": float(score)}
            for item, score in zip(ids[row, :want].tolist(), scores[row, :want].tolist(), strict=True)
            if item != PAD_ID
        ]
    return pd.Series(result, dtype=object)


def register_recommend(
    spark: SparkSession,
    model_path: str,
    index_path: str,
    contexts_path: str,
    *,
    name: str = "recommend",
    max_k: int = 1000,
    threads_per_worker: int = 1,
) -> None:
    """Register ``name(user_id, k)`` on ``spark`` (see the module docstring).

    Args:
        spark: the session.
        model_path: a local model export every executor can read.
        index_path: the index built from that model.
        contexts_path: Parquet of ``user_id``, ``history``, ``exclude``
            (:func:`~sparktf.inference.batch.user_contexts`, as the stage writes it).
        name: the SQL name.
        max_k: the largest k accepted.
        threads_per_worker: TensorFlow threads per Python worker.

    Raises:
        InferenceError: the context table does not exist.
    """
    import functools

    import pandas as pd
    from pyspark.sql.pandas.functions import pandas_udf

    if not os.path.isdir(contexts_path):
        raise InferenceError(
            f"The user contexts at {contexts_path} do not exist.",
            hint="Run `sparktf recommend` once (it writes them), or write user_contexts(...) there as Parquet.",
        )
    impl = functools.partial(
        _recommend_series,
        model_path=os.path.abspath(model_path),
        index_path=os.path.abspath(index_path),
        index_tok=index_token(index_path),
        contexts_path=os.path.abspath(contexts_path),
        contexts_tok=contexts_token(contexts_path),
        max_k=int(max_k),
        threads=int(threads_per_worker),
    )

    def recommend(user_id: pd.Series, k: pd.Series) -> pd.Series:
        return impl(user_id, k)

    # Real classes, not the strings of postponed annotations: pandas_udf reads them.
    recommend.__annotations__ = {"user_id": pd.Series, "k": pd.Series, "return": pd.Series}
    # Typed Any: pyspark's overloads cannot see that the annotations set above are Series.
    make_udf: Any = pandas_udf
    spark.udf.register(name, make_udf(recommend, RETURN_TYPE))
