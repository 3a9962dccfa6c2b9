"""The server's ranking on Spark executors: a candidate's slate for each logged reply.

Off-policy evaluation (:mod:`sparktf.experiments.offpolicy`) needs what a candidate model
would have shown for each request another policy served. The answer must be the server's
own: the same query from the logged user and history, the same unknown-item handling,
popular fallback and exclusions; so each executor's Python worker loads the candidate as
the server loads a version (:func:`sparktf.serving.repository.load_version`) and asks its
:class:`~sparktf.serving.recommend.VersionRecommender`, a batch of logged replies per call.
"""

from __future__ import annotations

import functools
import json
import os
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sparktf.errors import DataError
from sparktf.experiments.offpolicy import SLATE_SCHEMA

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

__all__ = ["candidate_slates"]

_CACHE: OrderedDict[str, Any] = OrderedDict()


def _load(model_path: str) -> Any:
    """The candidate as the server loads it (its recommender, warmed up), once per Python worker."""
    hit = _CACHE.get(model_path)
    if hit is not None:
        return hit
    from sparktf.tfenv import ensure_legacy_keras

    ensure_legacy_keras()
    from sparktf.serving.repository import load_version

    recommender = load_version(0, model_path, exclude_seen=True).recommender
    if recommender is None:
        raise DataError(f"{model_path} is not a sparktf recommender export, so it cannot rank the logged replies.")
    _CACHE[model_path] = recommender
    while len(_CACHE) > 2:
        _CACHE.popitem(last=False)
    return recommender


def _history(request_id: str, context: str | None) -> tuple[str, ...]:
    """An impression's logged ``context`` (a JSON array of item ids) as a history.

    Raises:
        DataError: it is not one, naming the reply (a client posted impressions of its own).
    """
    try:
        value = json.loads(context or "[]")
    except ValueError:
        value = None
    if not isinstance(value, list):
        raise DataError(
            f"The impressions of request {request_id} have a context that is not a JSON array of item ids: "
            f"{str(context)[:80]!r}.",
            hint="Estimate from impressions the server logged (--logged-by its arms), or fix the client that posted these.",
        )
    return tuple(str(x) for x in value if isinstance(x, str | int))


def _replay(frames: Iterator[pd.DataFrame], *, model_path: str, batch: int) -> Iterator[pd.DataFrame]:
    """Each logged reply asked again of the candidate through the server's own ranking code
    (:class:`~sparktf.serving.recommend.VersionRecommender`: the same query, unknown-item
    handling, popular fallback and exclusions), with the logged history as the request's."""
    import pandas as pd

    from sparktf.experiments.assignment import ANONYMOUS_PREFIX
    from sparktf.serving.recommend import RecommendQuery

    recommender: Any = None
    for frame in frames:
        if frame.empty:
            continue
        if recommender is None:
            recommender = _load(model_path)
        for start in range(0, len(frame), batch):
            part = frame.iloc[start : start + batch]
            queries = [
                RecommendQuery(
                    user_id=None if str(user).startswith(ANONYMOUS_PREFIX) else str(user),
                    history=_history(rid, context),
                    k=int(n),
                    exclude=tuple(seen) if seen is not None else (),
                    exclude_seen=True,
                )
                for rid, user, context, n, seen in zip(
                    part["request_id"], part["user_id"], part["context"], part["slots"], part["seen"], strict=True
                )
            ]
            replies = recommender.recommend(queries)
            rows = [
                (rid, pos + 1, str(item["item_id"]))
                for rid, reply in zip(part["request_id"], replies, strict=True)
                for pos, item in enumerate(reply["items"])
            ]
            yield pd.DataFrame(rows, columns=["request_id", "position", "target_item"])


def candidate_slates(slots: DataFrame, model_path: str, seen: DataFrame | None, batch: int = 256) -> DataFrame:
    """The candidate's slate for each logged reply (:data:`SLATE_SCHEMA`), replayed on the executors.

    Args:
        slots: :func:`sparktf.experiments.offpolicy.logged_slots`.
        model_path: the candidate's export directory, readable by every executor.
        seen: ``user_id, items``: each user's seen items (the features' ``seen`` table), or None.
        batch: replies per model call.
    """
    from pyspark.sql import functions as F

    replies = slots.groupBy("request_id").agg(
        F.first("user_id").alias("user_id"),
        F.first("context").alias("context"),
        F.max("position").alias("slots"),
    )
    if seen is not None:
        replies = replies.join(seen.select("user_id", F.col("items").alias("seen")), "user_id", "left")
    else:
        replies = replies.withColumn("seen", F.lit(None).cast("array<string>"))
    fn = functools.partial(_replay, model_path=os.path.abspath(model_path), batch=int(batch))
    return replies.select("request_id", "user_id", "context", "slots", "seen").mapInPandas(fn, SLATE_SCHEMA)
