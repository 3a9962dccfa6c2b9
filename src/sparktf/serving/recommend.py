"""``:recommend``: a user and/or recent items in, top-K items with scores out.

The query embedding comes from the export's ``serving_default`` signature
(``user_id`` + ``history``), the items from the ANN index over the export's item
embeddings (``sparktf.retrieval.index``; a saved index when one matches the
model, else an exact one built in memory). Exclusions are the request's list plus,
when the server has the features tables, the items the user already saw.

When the model has nothing to go on (no history, and the user is unknown or not
given) the reply holds the most popular items instead and says so:
``"fallback": "popular"`` with a ``"reason"``. A user counts as unknown to a
model when the model's query embedding for that user with an empty history is the
out-of-vocabulary one (probed once per version at warm-up), so no user
vocabulary has to be shipped beside the SavedModel.

Why our own code: TF Serving has no retrieval endpoint; the TFRS/ScaNN SavedModel
layer answers top-K without exclusions or a cold-start fallback, and cannot tell
the caller which version answered.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from sparktf.errors import ServingError
from sparktf.serving.features import FeatureLookup
from sparktf.serving.tfserving import DEFAULT_SIGNATURE, bad_request

__all__ = ["RecommendQuery", "Recommender", "is_recommender_export", "parse_recommend_request"]

log = logging.getLogger(__name__)

MAX_ID_CHARS = 512
MAX_HISTORY = 1000
MAX_EXCLUDE = 10_000
_PROBE_USER = "\x00sparktf-unknown-user"


@dataclass(frozen=True)
class RecommendQuery:
    """One decoded ``:recommend`` request.

    Attributes:
        user_id: the user, or None.
        history: recent item ids, oldest first, most recent last (may be empty).
        k: how many items to return.
        exclude: item ids never to return.
        exclude_seen: leave out the user's seen items; None takes the server's default.
        attributes: add item attributes to each returned item.
    """

    user_id: str | None
    history: tuple[str, ...]
    k: int
    exclude: tuple[str, ...] = ()
    exclude_seen: bool | None = None
    attributes: bool = False


def parse_recommend_request(body: Mapping[str, Any], *, default_k: int, max_k: int) -> RecommendQuery:
    """Check and decode a ``:recommend`` body (pure).

    Raises:
        ServingError: 400 naming the field, the value and what is allowed.
    """
    allowed = ("user_id", "history", "k", "exclude", "exclude_seen", "attributes")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request(f"Unknown field {unknown[0]!r} in the :recommend request; allowed: {', '.join(allowed)}.")
    user = body.get("user_id")
    if user is not None:
        if not isinstance(user, str | int) or isinstance(user, bool):
            raise bad_request(f"'user_id' must be a string; got {type(user).__name__} {user!r:.60}.")
        user = str(user)
        if not user or len(user) > MAX_ID_CHARS:
            raise bad_request(f"'user_id' must have 1 to {MAX_ID_CHARS} characters; got {len(user)}.")
    history = _id_list(body.get("history"), "history", MAX_HISTORY)
    exclude = _id_list(body.get("exclude"), "exclude", MAX_EXCLUDE)
    k = body.get("k", default_k)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k:
        raise bad_request(f"'k' must be an integer from 1 to {max_k} (serve.max_k); got {k!r:.60}.")
    flags = {}
    for name in ("exclude_seen", "attributes"):
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            raise bad_request(f"{name!r} must be true or false; got {value!r:.60}.")
        flags[name] = value
    return RecommendQuery(
        user_id=user,
        history=history,
        k=k,
        exclude=exclude,
        exclude_seen=flags["exclude_seen"],
        attributes=bool(flags["attributes"]),
    )


def _id_list(value: Any, name: str, limit: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise bad_request(f"{name!r} must be a list of item ids; got a {type(value).__name__}.")
    if len(value) > limit:
        raise bad_request(f"{name!r} has {len(value)} items; at most {limit} are allowed.")
    out = []
    for i, x in enumerate(value):
        if isinstance(x, bool) or not isinstance(x, str | int) or not str(x) or len(str(x)) > MAX_ID_CHARS:
            raise bad_request(f"{name}[{i}] must be a non-empty item id string; got {x!r:.60}.")
        out.append(str(x))
    return tuple(out)


# --------------------------------------------------------------------------- the model side


class _Runnable(Protocol):
    path: str
    version: int

    def run(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class _Index(Protocol):
    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[Sequence[str]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...


def is_recommender_export(path: str) -> bool:
    """True for a version directory written by :func:`sparktf.models.export.export_model`."""
    extra = os.path.join(path, "assets.extra")
    return all(os.path.isfile(os.path.join(extra, f)) for f in ("sparktf.json", "item_ids.txt", "item_embeddings.npy"))


class Recommender:
    """``:recommend`` for one loaded export version.

    Args:
        servable: the loaded SavedModel version (its ``serving_default`` gives query embeddings).
        features: user and item lookups (may be empty).
        index_path: a saved index to use when it matches this version's items; "" to
            look for ``index/`` in the version directory only.
        exclude_seen: the default of a request's ``exclude_seen``.
    """

    def __init__(
        self, servable: _Runnable, features: FeatureLookup, index_path: str = "", exclude_seen: bool = True
    ) -> None:
        extra = os.path.join(servable.path, "assets.extra")
        with open(os.path.join(extra, "item_ids.txt"), encoding="utf-8") as fh:
            self.item_ids = [line.rstrip("\n") for line in fh if line.rstrip("\n")]
        self.embeddings = np.load(os.path.join(extra, "item_embeddings.npy")).astype(np.float32)
        with open(os.path.join(extra, "sparktf.json"), encoding="utf-8") as fh:
            self.meta: dict[str, Any] = json.load(fh)
        if self.embeddings.shape[0] != len(self.item_ids):
            raise ServingError(
                f"{extra}: item_embeddings.npy has {self.embeddings.shape[0]} rows but item_ids.txt has "
                f"{len(self.item_ids)} ids.",
                hint="Re-export the model; the two files must come from the same export.",
                status=500,
            )
        self.servable = servable
        self.features = features
        self.exclude_seen = exclude_seen
        self.index, self.index_kind = _open_index(servable.path, index_path, self.item_ids, self.embeddings)
        self._oov: np.ndarray | None = None

    def warmup(self) -> None:
        """Run the whole path once (model, index, fallback) and probe the unknown-user embedding."""
        out = self._query_embeddings([_PROBE_USER], [()])
        self._oov = out[0]
        self.recommend([RecommendQuery(user_id=None, history=(self.item_ids[0],), k=1)])

    def _query_embeddings(self, users: Sequence[str], histories: Sequence[Sequence[str]]) -> np.ndarray:
        width = max([len(h) for h in histories] + [1])
        dense = np.full((len(histories), width), b"", dtype=object)
        for i, h in enumerate(histories):
            dense[i, : len(h)] = [x.encode("utf-8") for x in h]
        users_arr = np.array([u.encode("utf-8") for u in users], dtype=object)
        out = self.servable.run(DEFAULT_SIGNATURE, {"user_id": users_arr, "history": dense})
        return np.asarray(out["query_embedding"], dtype=np.float32)

    def recommend(self, queries: Sequence[RecommendQuery]) -> list[dict[str, Any]]:
        """Answer several queries with one model call and one index search."""
        contexts = [self._context(q) for q in queries]
        q_emb = self._query_embeddings([q.user_id or "" for q in queries], [c[0] for c in contexts])
        replies: list[dict[str, Any]] = [{} for _ in queries]
        model_rows: list[int] = []
        for i, (q, (history, source)) in enumerate(zip(queries, contexts, strict=True)):
            reason = self._fallback_reason(q, history, q_emb[i])
            replies[i] = {
                "user_id": q.user_id,
                "history": list(history),
                "history_source": source,
                "fallback": "popular" if reason else None,
                "reason": reason,
            }
            if not reason:
                model_rows.append(i)
        if model_rows:
            k = max(queries[i].k for i in model_rows)
            excludes = [sorted(self._exclusions(queries[i], contexts[i][0])) for i in model_rows]
            ids, scores = self.index.search(q_emb[model_rows], k, exclude=excludes)
            for row, i in enumerate(model_rows):
                items = [
                    {"item_id": str(item), "score": float(score)}
                    for item, score in zip(ids[row][: queries[i].k], scores[row][: queries[i].k], strict=True)
                    if str(item) != "" and np.isfinite(score)
                ]
                replies[i]["items"] = items
        for i, q in enumerate(queries):
            if "items" not in replies[i]:
                excluded = self._exclusions(q, contexts[i][0])
                popular = [x for x in self.item_ids if x not in excluded][: q.k]
                replies[i]["items"] = [{"item_id": x, "score": None} for x in popular]
            if q.attributes:
                for item in replies[i]["items"]:
                    item.update({k: v for k, v in self.features.items.get(item["item_id"], {}).items()})
        return replies

    def _context(self, q: RecommendQuery) -> tuple[tuple[str, ...], str]:
        if q.history:
            return q.history, "request"
        if q.user_id is not None and q.user_id in self.features.recent:
            return tuple(self.features.recent[q.user_id]), "features"
        return (), "none"

    def _fallback_reason(self, q: RecommendQuery, history: Sequence[str], q_emb: np.ndarray) -> str | None:
        if history:
            return None
        if q.user_id is None:
            return "cold start: the request has neither a user_id nor a history"
        if self._oov is not None and np.allclose(q_emb, self._oov, rtol=1e-5, atol=1e-6):
            return (
                f"user {q.user_id!r} is unknown to model version {self.servable.version} and has no history "
                "(in the request or the features)"
            )
        return None

    def _exclusions(self, q: RecommendQuery, history: Sequence[str]) -> set[str]:
        """The request's exclusions, plus (with exclude_seen) everything the user interacted
        with: the seen items of the features and the history used as context, as the batch
        recommendations do."""
        excluded = set(q.exclude)
        use_seen = self.exclude_seen if q.exclude_seen is None else q.exclude_seen
        if use_seen:
            excluded |= set(history)
            if q.user_id is not None:
                excluded |= self.features.seen.get(q.user_id, frozenset())
        return excluded


def _open_index(version_dir: str, index_path: str, ids: list[str], emb: np.ndarray) -> tuple[_Index, str]:
    """A saved index that matches this version's items, else an exact one in memory."""
    try:
        from sparktf.retrieval.index import build_index, load_index
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("sparktf.retrieval"):
            raise
        log.warning("sparktf.retrieval is not installed here; :recommend uses an exact in-memory search")
        return _ExactIndex(ids, emb), "exact (in memory)"
    for path in [p for p in (index_path, os.path.join(version_dir, "index")) if p]:
        if not os.path.isdir(path):
            continue
        index = load_index(path)
        problem = _index_mismatch(index, ids, emb)
        if problem is None:
            return index, f"saved ({path})"
        log.warning("Not using the index at %s for %s: %s; building an exact one in memory", path, version_dir, problem)
    return build_index(emb, ids, kind="brute_force"), "brute_force (in memory)"


def _index_mismatch(index: Any, ids: list[str], emb: np.ndarray) -> str | None:
    """Why a saved index does not belong to these embeddings, or None when it does.

    A stale index (built for another version) can have the same ids and dimension,
    so the scores it returns are checked against the dot products they must be.
    """
    if int(getattr(index, "dim", emb.shape[1])) != emb.shape[1]:
        return f"its dimension is {index.dim}, the model's is {emb.shape[1]}"
    index_ids = [str(x) for x in np.asarray(index.ids).tolist()]
    if set(index_ids) != set(ids):
        return f"it holds {len(index_ids)} ids that are not this model's {len(ids)} items"
    rng = np.random.default_rng(0)
    rows = rng.choice(len(ids), size=min(8, len(ids)), replace=False)
    found, scores = index.search(emb[rows], 1)
    position = {x: i for i, x in enumerate(ids)}
    for q, item, score in zip(rows, found[:, 0], scores[:, 0], strict=True):
        if str(item) == "":
            return "it returned no item for an item's own embedding"
        expected = float(emb[q] @ emb[position[str(item)]])
        if abs(float(score) - expected) > 0.05 * max(1.0, abs(expected)):
            return f"its score {float(score):.4g} for item {item!r} is not the model's dot product {expected:.4g}"
    return None


class _ExactIndex:
    """Exact top-k by one matrix product, only for checkouts without ``sparktf.retrieval``."""

    def __init__(self, ids: list[str], emb: np.ndarray) -> None:
        self.ids = np.asarray(ids, dtype=object)
        self.dim = emb.shape[1]
        self._emb = emb
        self._pos = {x: i for i, x in enumerate(ids)}

    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[Sequence[str]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = np.asarray(queries, dtype=np.float32) @ self._emb.T
        for row, items in enumerate(exclude or []):
            cols = [self._pos[x] for x in items if x in self._pos]
            scores[row, cols] = -np.inf
        k_eff = min(k, scores.shape[1])
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k_eff]
        top_scores = np.take_along_axis(scores, top, axis=1)
        ids = np.where(np.isfinite(top_scores), self.ids[top], "")
        pad = k - k_eff
        if pad:
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values="")
            top_scores = np.pad(top_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return ids, top_scores
