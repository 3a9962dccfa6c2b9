"""Baseline arms of an online experiment: ``popular`` and ``cooccurrence`` served like a model.

An experiment compares a model with what a shop would do without one. The two
baselines answer ``:recommend`` with the same contexts (request, live or features
history) and the same exclusions as a model version
(:func:`~sparktf.serving.recommend.query_context`, :func:`~sparktf.serving.recommend.exclusions`),
so that the arms differ only in their ranking:

* ``popular``: items by the features' ``popularity_rank`` (the train part's interaction
  counts), the offline ``most_popular`` baseline;
* ``cooccurrence``: the last history item's successors by how often
  ``history[-1] -> target`` occurs in the train examples, ties and the rest by popularity,
  the offline ``item_cooccurrence`` baseline (:mod:`sparktf.evaluation.baselines`).

Why our own code: the offline baselines are fitted with Spark and score the whole
catalogue as arrays; a server needs a few dict lookups per request from tables it reads
with pyarrow once at start (Spark would be a heavy dependency of a web server).
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sparktf.errors import ServingError
from sparktf.serving.features import FeatureLookup
from sparktf.serving.recommend import RecommendQuery, add_attributes, base_reply, exclusions, query_context

if TYPE_CHECKING:
    from sparktf.online.store import UserState

__all__ = ["BaselineRecommender", "load_baseline"]


class BaselineRecommender:
    """``:recommend`` by popularity, or by last-item co-occurrence then popularity.

    Args:
        name: ``popular`` or ``cooccurrence``.
        popular: item ids, most popular first.
        successors: item -> items that followed it in the train examples, most frequent first
            (empty for ``popular``).
        features: the users' recent and seen items.
        exclude_seen: the default of a request's ``exclude_seen``.
    """

    def __init__(
        self,
        name: str,
        popular: Sequence[str],
        successors: Mapping[str, Sequence[str]],
        features: FeatureLookup,
        exclude_seen: bool,
    ) -> None:
        self.name = name
        self.popular = list(popular)
        self.successors = successors
        self.features = features
        self.exclude_seen = exclude_seen
        self.index_kind = f"baseline ({name})"
        self.index_problem: str | None = None

    def recommend(
        self,
        queries: Sequence[RecommendQuery],
        live: Mapping[str, UserState] | None = None,
        live_error: str | None = None,
    ) -> list[dict[str, Any]]:
        """Answer each query (same reply shape as :meth:`VersionRecommender.recommend`,
        with ``score`` the item's rank-based score: higher is better)."""
        replies = []
        for q in queries:
            history, source = query_context(q, live, self.features)
            excluded = exclusions(q, history, self.features, self.exclude_seen)
            ranked = self._ranked(history)
            items: list[dict[str, Any]] = []
            taken: set[str] = set()
            for item in ranked:
                if item in excluded or item in taken:
                    continue
                taken.add(item)
                items.append({"item_id": item, "score": float(-len(items))})
                if len(items) == q.k:
                    break
            reply = base_reply(q, history, source, live, live_error)
            reply["items"] = items
            if q.attributes:
                add_attributes(items, self.features)
            replies.append(reply)
        return replies

    def _ranked(self, history: Sequence[str]) -> list[str]:
        if self.name == "cooccurrence" and history:
            return [*self.successors.get(history[-1], ()), *self.popular]
        return self.popular


def load_baseline(name: str, features: FeatureLookup, *, exclude_seen: bool) -> BaselineRecommender:
    """The baseline ``name`` over the features tables at ``features.path``.

    Raises:
        ServingError: no features tables (a baseline has nothing to rank by), or an
            unknown baseline.
    """
    if name not in ("popular", "cooccurrence"):
        raise ServingError(f"Unknown baseline arm model {name!r}.", hint="Use 'popular' or 'cooccurrence'.")
    ranked = [i for i, attrs in features.items.items() if attrs.get("popularity_rank") is not None]
    if not ranked:
        raise ServingError(
            f"The {name!r} arm needs the features tables' items (with popularity_rank), and the server has none"
            + (f" at {features.path}" if features.path else "")
            + ".",
            hint="Run `sparktf run` (or `sparktf prepare`) first, or set serve.features_path.",
        )
    ranked.sort(key=lambda i: (features.items[i]["popularity_rank"], i))
    successors: dict[str, list[str]] = {}
    if name == "cooccurrence":
        successors = _successors(os.path.join(features.path, "examples"), {x: r for r, x in enumerate(ranked)})
    return BaselineRecommender(name, ranked, successors, features, exclude_seen)


def _successors(table_dir: str, rank: Mapping[str, int]) -> dict[str, list[str]]:
    """item -> the targets that followed it as the last history item of a train example,
    by count, then popularity (the offline ``item_cooccurrence`` fit)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    if not os.path.isdir(table_dir):
        return {}
    dataset = ds.dataset(table_dir, format="parquet", partitioning="hive", ignore_prefixes=[".", "_"])
    flt = pc.field("split") == "train" if "split" in dataset.schema.names else None
    table = dataset.to_table(columns=["history", "target"], filter=flt)
    history = table.column("history").combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(history), 0).to_numpy(zero_copy_only=False)
    offsets = history.offsets.to_numpy()
    values = history.values.to_pylist()
    targets = table.column("target").to_pylist()
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for i, (n, target) in enumerate(zip(lengths, targets, strict=True)):
        if n and target is not None:
            last = values[offsets[i + 1] - 1]
            if last is not None:
                counts[str(last)][str(target)] += 1
    big = len(rank)
    return {
        item: [t for t, _ in sorted(c.items(), key=lambda tc: (-tc[1], rank.get(tc[0], big), tc[0]))]
        for item, c in counts.items()
    }
