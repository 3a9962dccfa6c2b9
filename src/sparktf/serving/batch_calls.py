"""The model calls the micro-batcher runs: ``:predict`` rows and ``:recommend`` queries.

:mod:`sparktf.serving.batching` knows nothing about models; this module says how
requests of one lane become one model call and how its outputs go back to each
request: ``:predict`` inputs are stacked along the batch dimension and the outputs
split by each request's rows; ``:recommend`` queries go to
:meth:`~sparktf.serving.recommend.VersionRecommender.recommend` together, with the live
histories of their users read from the online store in one ``get_many`` per batch (in the
batch's worker thread, never on the event loop). When a
batch call fails, the batcher reruns its requests one at a time, so only the
request that causes the failure gets it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from sparktf.errors import SparkTFError
from sparktf.serving import tfserving as tfs
from sparktf.serving.batching import MicroBatcher, RunAlone
from sparktf.serving.metrics import ServerMetrics, count_live_lookups
from sparktf.serving.recommend import RecommendQuery, VersionRecommender, needs_live
from sparktf.serving.repository import LoadedVersion

if TYPE_CHECKING:
    from sparktf.online.store import OnlineStore, UserState

__all__ = ["lookup_live", "predict_batch", "recommend_batch", "run_predict", "run_recommend"]

log = logging.getLogger(__name__)


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


async def run_recommend(
    batcher: MicroBatcher[Any, Any],
    recommender: Any,
    query: RecommendQuery,
    online: OnlineStore | None = None,
    metrics: ServerMetrics | None = None,
) -> dict[str, Any]:
    """One ``:recommend`` query, answered in one model call and one index search with the
    concurrent queries of the same version; ``online`` (when given) gives the live
    histories of the batch's users. ``recommender`` is a version's
    :class:`~sparktf.serving.recommend.VersionRecommender` or an experiment's baseline arm."""
    run = partial(recommend_batch, recommender, online, metrics)
    # A lane keeps the run function it was made with: one lane per recommender and store.
    reply: dict[str, Any] = await batcher.submit(("recommend", id(recommender), id(online)), query, 1, run)
    return reply


def recommend_batch(
    recommender: VersionRecommender,
    online: OnlineStore | None,
    metrics: ServerMetrics | None,
    queries: Sequence[RecommendQuery],
) -> list[dict[str, Any]]:
    """Read the live histories the batch needs (one ``get_many``), then answer it."""
    if online is None:
        return recommender.recommend(queries)
    live, error = lookup_live(online, queries, metrics)
    return recommender.recommend(queries, live=live, live_error=error)


def lookup_live(
    online: OnlineStore, queries: Sequence[RecommendQuery], metrics: ServerMetrics | None = None
) -> tuple[Mapping[str, UserState], str | None]:
    """The states of the users of ``queries`` that bring no history, in one ``get_many``,
    and why the store could not be read (None when it could).

    A store that fails (Redis down, a database locked or damaged) must not fail
    ``:recommend``: the error is logged and counted, and the queries go on without live
    histories. The stores' messages carry no secrets (RedisStore shows host:port/db only).
    """
    users = [q.user_id for q in queries if q.user_id is not None and needs_live(q)]
    if not users:
        return {}, None
    try:
        live = online.get_many(users)
    except Exception as exc:  # noqa: BLE001 - any store failure means: answer from the features
        error = _store_error(exc)
        _warn(f"{error}; :recommend answers from the features tables meanwhile ({online!r}: {exc!r})")
        if metrics is not None:
            count_live_lookups(metrics, "error", len(users))
        return {}, error
    if metrics is not None:
        found = sum(1 for u in users if u in live and live[u].items)
        if found:
            count_live_lookups(metrics, "live", found)
        if len(users) - found:
            count_live_lookups(metrics, "missing", len(users) - found)
    return live, None


#: The least time between two warnings of a failing store (one per batch would flood the log).
STORE_WARNING_INTERVAL_S = 30.0
_last_warning = [-float("inf")]


def _store_error(exc: Exception) -> str:
    """What a reply says of a store failure: our stores' own messages (written for people,
    without passwords: RedisStore shows host:port/db only), else the exception's type; the
    details go to the log."""
    if isinstance(exc, SparkTFError):
        return f"the online store could not be read: {exc.message}"
    return f"the online store could not be read ({type(exc).__name__}; see the server's log)"


def _warn(text: str) -> None:
    now = time.monotonic()
    if now - _last_warning[0] >= STORE_WARNING_INTERVAL_S:
        _last_warning[0] = now
        log.warning("%s", text)
