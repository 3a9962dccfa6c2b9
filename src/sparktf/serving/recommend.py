"""``:recommend``: a user and/or recent items in, top-K items with scores out.

The query embedding comes from the export's ``serving_default`` signature
(``user_id`` + ``history``), the items from the ANN index over the export's item
embeddings (``sparktf.retrieval.index``; a saved index when one matches the
model, else an exact one built in memory). Exclusions are the request's list plus,
when the server has the features tables, the items the user already saw.

The history of a query without one in the request is, in this order: the user's live
history from the online store (``"history_source": "live"``, with a ``"live"`` block naming
the session, the event count and the micro-batch it reflects), the user's recent items of
the features tables (``"features"``), or none (``"none"``). A store that cannot be read
leaves the reply to the features and says why in ``"live_error"``.

When the model has nothing to go on (no history, and the user is unknown or not
given) the reply holds the most popular items instead and says so:
``"fallback": "popular"`` with a ``"reason"``. A user counts as unknown to a
model when the model's query embedding for that user with an empty history is the
out-of-vocabulary one (probed once per version at warm-up), so no user
vocabulary has to be shipped beside the SavedModel. Every reply lists the
``"unknown_items"`` of its history that are not in the model's catalogue; a
history of unknown items only counts as no history.

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
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sparktf.errors import ServingError
from sparktf.monitoring.profile import Reference, load_reference
from sparktf.retrieval.index import AnnIndex, build_index, load_index
from sparktf.serving.features import FeatureLookup
from sparktf.serving.tfserving import DEFAULT_SIGNATURE, bad_request

if TYPE_CHECKING:
    from sparktf.online.store import UserState

__all__ = [
    "RecommendQuery",
    "VersionRecommender",
    "add_attributes",
    "base_reply",
    "exclusions",
    "has_recommender_signature",
    "is_recommender_export",
    "live_block",
    "missing_export_parts",
    "needs_live",
    "parse_recommend_request",
    "query_context",
]

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
        session_id: the client's session; an experiment assigns anonymous traffic (no
            ``user_id``) by it, and the impressions of the reply carry it.
    """

    user_id: str | None
    history: tuple[str, ...]
    k: int
    exclude: tuple[str, ...] = ()
    exclude_seen: bool | None = None
    attributes: bool = False
    session_id: str | None = None


def parse_recommend_request(body: Mapping[str, Any], *, default_k: int, max_k: int) -> RecommendQuery:
    """Check and decode a ``:recommend`` body (pure).

    Every id is checked here, before the request can join a batch: an id the model
    cannot take (not UTF-8 text, too long) is this request's 400, never a failure
    inside a batch shared with other requests.

    Raises:
        ServingError: 400 naming the field, the value and what is allowed.
    """
    allowed = ("user_id", "history", "k", "exclude", "exclude_seen", "attributes", "session_id")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request(f"Unknown field {unknown[0]!r} in the :recommend request; allowed: {', '.join(allowed)}.")
    user = body.get("user_id")
    if user is not None:
        if not isinstance(user, str | int) or isinstance(user, bool):
            raise bad_request(f"'user_id' must be a string; got {type(user).__name__} {user!r:.60}.")
        user = _id_text(user, "'user_id'")
    session = body.get("session_id")
    if session is not None:
        if not isinstance(session, str | int) or isinstance(session, bool):
            raise bad_request(f"'session_id' must be a string; got {type(session).__name__} {session!r:.60}.")
        session = _id_text(session, "'session_id'")
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
        session_id=session,
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
        if isinstance(x, bool) or not isinstance(x, str | int):
            raise bad_request(f"{name}[{i}] must be a non-empty item id string; got {x!r:.60}.")
        out.append(_id_text(x, f"{name}[{i}]"))
    return tuple(out)


def _id_text(value: str | int, where: str) -> str:
    """``value`` as an id the model can take: 1 to MAX_ID_CHARS characters of UTF-8 text."""
    text = str(value)
    if not text or len(text) > MAX_ID_CHARS:
        raise bad_request(f"{where} must have 1 to {MAX_ID_CHARS} characters; got {len(text)}.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # JSON allows "\ud800" escapes that are no character at all; the model takes UTF-8.
        raise bad_request(
            f"{where} is not valid Unicode text: character {exc.start} is a lone surrogate "
            f"({text[exc.start]!r}); send ids as UTF-8 text."
        ) from None
    return text


# --------------------------------------------------------------------------- the model side


class _Runnable(Protocol):
    path: str
    version: int

    def run(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


_EXPORT_PARTS = ("sparktf.json", "item_ids.txt", "item_embeddings.npy")


def is_recommender_export(path: str) -> bool:
    """True for a version directory written by :func:`sparktf.models.export.export_model`."""
    return not missing_export_parts(path)


def missing_export_parts(path: str) -> list[str]:
    """The files of ``assets.extra/`` that a sparktf export has and ``path`` lacks."""
    extra = os.path.join(path, "assets.extra")
    return [f"assets.extra/{f}" for f in _EXPORT_PARTS if not os.path.isfile(os.path.join(extra, f))]


def has_recommender_signature(signatures: Mapping[str, Any]) -> bool:
    """True when ``serving_default`` is a sparktf recommender's (``user_id`` and ``history``
    in, ``query_embedding`` out): such a version cannot serve without its ``assets.extra``."""
    sig = signatures.get(DEFAULT_SIGNATURE)
    if sig is None:
        return False
    return set(sig.inputs) == {"user_id", "history"} and "query_embedding" in sig.outputs


class VersionRecommender:
    """``:recommend`` for one loaded export version (the serving side; the offline
    baselines are :class:`sparktf.evaluation.baselines.Recommender`).

    Args:
        servable: the loaded SavedModel version (its ``serving_default`` gives query embeddings).
        features: user and item lookups (may be empty).
        index_path: a saved index to use when it matches this version's items; "" to
            look for ``index/`` in the version directory only.
        exclude_seen: the default of a request's ``exclude_seen``.

    Attributes:
        index_kind: which index answers, for ``/readyz``.
        index_problem: why a saved index that was found is not used (damaged, or built
            for other embeddings), or None; the exact in-memory index answers instead.
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
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != len(self.item_ids):
            raise ServingError(
                f"{extra}: item_embeddings.npy has shape {self.embeddings.shape} but item_ids.txt has "
                f"{len(self.item_ids)} ids.",
                hint="Re-export the model; the two files must come from the same export.",
                status=500,
            )
        self.servable = servable
        self.features = features
        self.exclude_seen = exclude_seen
        self._known = frozenset(self.item_ids)
        self.index, self.index_kind, self.index_problem = _open_index(
            servable.path, index_path, self.item_ids, self.embeddings
        )
        self._oov: np.ndarray | None = None
        # The reference profile the training saved beside the export (issue 19): what the
        # server's monitoring compares this version's traffic with. Optional: a version
        # without one (or with one that cannot be read, named here) is served all the same.
        self.reference: Reference | None = None
        self.reference_problem: str | None = None
        try:
            self.reference = load_reference(extra)
        except ValueError as exc:
            self.reference_problem = str(exc)

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

    def recommend(
        self,
        queries: Sequence[RecommendQuery],
        live: Mapping[str, UserState] | None = None,
        live_error: str | None = None,
    ) -> list[dict[str, Any]]:
        """Answer several queries with one model call and one index search.

        Args:
            queries: the batch.
            live: the online store's states of the batch's users (see :func:`needs_live`);
                None when the server reads no live histories.
            live_error: why the store could not be read for this batch; each query that
                wanted a live history says it in ``"live_error"`` and goes on without.
        """
        contexts = [self._context(q, live) for q in queries]
        unknown = [[x for x in history if x not in self._known] for history, _ in contexts]
        # A history of items the model has never seen carries nothing (each is the
        # out-of-vocabulary item), so such a query is asked as one without a history:
        # the user alone, or the popular fallback, said so in the reply.
        model_histories = [() if len(u) == len(h) else h for (h, _), u in zip(contexts, unknown, strict=True)]
        q_emb = self._query_embeddings([q.user_id or "" for q in queries], model_histories)
        replies: list[dict[str, Any]] = [{} for _ in queries]
        model_rows: list[int] = []
        for i, (q, (history, source)) in enumerate(zip(queries, contexts, strict=True)):
            reason = self._fallback_reason(q, history, model_histories[i], q_emb[i])
            replies[i] = base_reply(q, history, source, live, live_error, unknown=unknown[i], reason=reason)
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
                add_attributes(replies[i]["items"], self.features)
        return replies

    def _context(self, q: RecommendQuery, live: Mapping[str, UserState] | None) -> tuple[tuple[str, ...], str]:
        return query_context(q, live, self.features)

    def _fallback_reason(
        self, q: RecommendQuery, history: Sequence[str], used: Sequence[str], q_emb: np.ndarray
    ) -> str | None:
        if used:
            return None
        version = self.servable.version
        none_known = (
            f"none of its {len(history)} history item(s) is known to model version {version}" if history else ""
        )
        if q.user_id is None:
            return "cold start: the request has neither a user_id nor a history" + (
                f" the model knows ({none_known})" if history else ""
            )
        if self._oov is not None and np.allclose(q_emb, self._oov, rtol=1e-5, atol=1e-6):
            return f"user {q.user_id!r} is unknown to model version {version} and has no history " + (
                f"the model knows ({none_known})" if history else "(in the request, the live history or the features)"
            )
        return None

    def _exclusions(self, q: RecommendQuery, history: Sequence[str]) -> set[str]:
        return exclusions(q, history, self.features, self.exclude_seen)


def base_reply(
    q: RecommendQuery,
    history: Sequence[str],
    source: str,
    live: Mapping[str, UserState] | None,
    live_error: str | None,
    *,
    unknown: Sequence[str] = (),
    reason: str | None = None,
) -> dict[str, Any]:
    """What every ``:recommend`` reply says of its context, whatever ranks the items: the
    history used and where it came from (with the live block when it was live), the unknown
    items, the popular fallback's reason, and why the store could not be read."""
    reply: dict[str, Any] = {
        "user_id": q.user_id,
        "history": list(history),
        "history_source": source,
        "unknown_items": list(unknown),
        "fallback": "popular" if reason else None,
        "reason": reason,
    }
    if source == "live" and live is not None and q.user_id is not None:
        reply["live"] = live_block(live[q.user_id])
    if live_error is not None and needs_live(q):
        reply["live_error"] = live_error
    return reply


def add_attributes(items: Sequence[dict[str, Any]], features: FeatureLookup) -> None:
    """Add each item's attributes from the features (``"attributes": true``)."""
    for item in items:
        item.update(dict(features.items.get(str(item["item_id"]), {})))


def query_context(
    q: RecommendQuery, live: Mapping[str, UserState] | None, features: FeatureLookup
) -> tuple[tuple[str, ...], str]:
    """The history a query is answered with and where it comes from: the request, the
    user's live history (the online store), the features tables, or none."""
    if q.history:
        return q.history, "request"
    state = live.get(q.user_id) if live is not None and q.user_id is not None else None
    if state is not None and state.items:
        return tuple(state.items), "live"
    if q.user_id is not None and q.user_id in features.recent:
        return tuple(features.recent[q.user_id]), "features"
    return (), "none"


def exclusions(q: RecommendQuery, history: Sequence[str], features: FeatureLookup, exclude_seen: bool) -> set[str]:
    """The request's exclusions, plus (with exclude_seen) everything the user interacted
    with: the seen items of the features and the history used as context (the live
    history when that is the context), as the batch recommendations do."""
    excluded = set(q.exclude)
    use_seen = exclude_seen if q.exclude_seen is None else q.exclude_seen
    if use_seen:
        excluded |= set(history)
        if q.user_id is not None:
            excluded |= features.seen.get(q.user_id, frozenset())
    return excluded


def needs_live(q: RecommendQuery) -> bool:
    """Whether the query's history may come from the online store: it names a user and
    brings no history of its own."""
    return q.user_id is not None and not q.history


def live_block(state: UserState) -> dict[str, Any]:
    """What a reply says of the live state it used, so that a client can tell which
    acknowledged event the reply reflects."""
    return {
        "session_id": state.session_id,
        "events": state.events,
        "last_event_time": state.last_event_time,
        "last_ack_time": state.last_ack_time,
        "batch_id": state.batch_id,
    }


def _open_index(version_dir: str, index_path: str, ids: list[str], emb: np.ndarray) -> tuple[AnnIndex, str, str | None]:
    """A saved index that matches this version's items, else an exact one in memory.

    An index is an optional speed-up: one that cannot be read (a damaged or half-copied
    file) or that belongs to other embeddings is reported and replaced by the exact
    index, so that serving goes on. Returns the index, its description and the problem
    with the saved one (None when there was none or it is used).
    """
    problems = []
    for path in [p for p in (index_path, os.path.join(version_dir, "index")) if p]:
        if not os.path.isdir(path):
            continue
        try:
            index = load_index(path)
            problem = _index_mismatch(index, ids, emb)
        except Exception as exc:  # noqa: BLE001 - any damage to an optional part means: do without it
            problem = f"it cannot be read ({type(exc).__name__}: {exc})"
        if problem is None:
            return index, f"saved ({path})", None
        log.warning(
            "Not using the index at %s for %s: %s; :recommend searches an exact index in memory instead "
            "(rebuild the index with `sparktf index`)",
            path,
            version_dir,
            problem,
        )
        problems.append(f"the index at {path}: {problem}")
    exact = build_index(emb, ids, kind="brute_force")
    return exact, "brute_force (in memory)", "; ".join(problems) or None


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
