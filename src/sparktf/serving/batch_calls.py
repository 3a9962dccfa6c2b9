"""The model calls the micro-batcher runs: ``:predict`` rows and ``:recommend`` queries.

:mod:`sparktf.serving.batching` knows nothing about models; this module says how
requests of one lane become one model call and how its outputs go back to each
request: ``:predict`` inputs are stacked along the batch dimension and the outputs
split by each request's rows; ``:recommend`` queries go to
:meth:`~sparktf.serving.recommend.VersionRecommender.recommend` together. When a
batch call fails, the batcher reruns its requests one at a time, so only the
request that causes the failure gets it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from sparktf.serving import tfserving as tfs
from sparktf.serving.batching import MicroBatcher, RunAlone
from sparktf.serving.recommend import RecommendQuery
from sparktf.serving.repository import LoadedVersion

__all__ = ["predict_batch", "run_predict", "run_recommend"]


async def run_predict(
    batcher: MicroBatcher[Any, Any],
    lv: LoadedVersion,
    sig: tfs.SignatureInfo,
    inputs: dict[str, np.ndarray],
    rows: int,
) -> dict[str, np.ndarray]:
    """One signature call, batched with concurrent requests when the signature allows.

    Raises:
        ServingError: 400 for more rows than ``serve.max_batch_size``, or what the model
            raises for this request's inputs.
    """
    limit = batcher.max_batch_size
    if rows > limit:
        raise tfs.bad_request(
            f"The request has {rows} rows, more than serve.max_batch_size ({limit}); "
            "split it, or start the server with a larger serve.max_batch_size."
        )
    if sig.batchable and rows >= 1:
        run = partial(predict_batch, lv.servable, sig.name)
        shapes = tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(inputs.items()))
        result: dict[str, np.ndarray] = await batcher.submit(("predict", id(lv), sig.name, shapes), inputs, rows, run)
        return result
    alone: dict[str, np.ndarray] = await batcher.run_alone(partial(lv.servable.run, sig.name, inputs))
    return alone


def predict_batch(servable: Any, signature: str, items: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Stack the items' inputs, call the signature once and split the outputs back.

    Raises:
        RunAlone: the outputs do not split by the items' rows (an output without the
            batch dimension); the batcher then runs each item alone.
        ServingError: what the model raises (the batcher reruns a failed batch item by item).
    """
    if len(items) == 1:
        return [servable.run(signature, items[0])]
    names = list(items[0])
    sizes = [int(item[names[0]].shape[0]) for item in items]
    stacked = {n: np.concatenate([it[n] for it in items], axis=0) for n in names}
    out = servable.run(signature, stacked)
    total = sum(sizes)
    if any(v.ndim == 0 or v.shape[0] != total for v in out.values()):
        raise RunAlone(f"the outputs of {signature!r} do not have the batch's {total} rows")
    bounds = np.cumsum([0, *sizes])
    return [{n: v[bounds[i] : bounds[i + 1]] for n, v in out.items()} for i in range(len(items))]


async def run_recommend(batcher: MicroBatcher[Any, Any], lv: LoadedVersion, query: RecommendQuery) -> dict[str, Any]:
    """One ``:recommend`` query, answered in one model call and one index search with the
    concurrent queries of the same version."""
    reply: dict[str, Any] = await batcher.submit(("recommend", id(lv)), query, 1, lv.recommender.recommend)
    return reply
