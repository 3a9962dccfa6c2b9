"""Full-catalogue ranking metrics: HR@K, NDCG@K, MRR and catalogue coverage@K.

Every model and every baseline is evaluated by this one module, under one protocol:

* **Candidates** are the whole catalogue: the ``N`` items of the train vocabulary, as
  columns ``0..N-1`` in vocabulary order (vocabulary index ``i`` is column ``i - 1``;
  index 0, out-of-vocabulary, is not a candidate). No negative sampling.
* **Exclusions**: when asked, the items a user interacted with before the target are
  removed from that query's candidates, **except the target itself**, which always
  stays a candidate (the usual practice: a re-consumed item can still be a hit).
* **Rank** of the target = 1 + the number of candidates with a strictly greater score
  + the number of candidates with an *equal* score and a smaller column. That is the
  position of the target in a stable sort by descending score, the very order of the
  top-K lists, so HR@K from ranks and "the target is in the top-K list" always agree.
  Columns follow the vocabulary, which is sorted by descending train frequency, so ties
  are broken towards the more popular item, the same rule for every model.
* **Out-of-vocabulary targets** have rank infinity: a miss at every K and 0 for MRR.
  They are counted in :class:`EvalProtocol`, never dropped.
* **HR@K** = share of queries with rank <= K; **NDCG@K** = mean of 1/log2(rank + 1)
  over queries with rank <= K (one relevant item, so the ideal DCG is 1);
  **MRR** = mean of 1/rank with the rank over the full catalogue (not truncated);
  **coverage@K** = share of catalogue items in at least one query's top-K list.

Why our own code: TFRS's ``FactorizedTopK`` gives top-K accuracy only, with no MRR, no
coverage, no slices and no exclusion that spares the target; RecBole and Microsoft
Recommenders bring torch or their own data frames and build the dense
queries x items matrix at once. Here the scores arrive in row chunks, so a million
users over a 100k-item catalogue never materialise together, and the tie rule is
written down once for models and baselines alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sparktf.errors import DataError, ModelError

__all__ = [
    "MAX_BATCH_ELEMENTS",
    "EvalProtocol",
    "EvaluationResult",
    "Exclusions",
    "Queries",
    "evaluate_ranked_lists",
    "evaluate_ranking",
    "metrics_from_ranks",
    "rank_targets",
    "top_k",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: A batch of scores holds at most this many numbers (rows x catalogue); larger
#: batches are split. 16M float32 scores plus the boolean masks stay near 150 MB.
MAX_BATCH_ELEMENTS = 1 << 24

TIE_RULE = "ties broken by vocabulary order (the more popular item first)"


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Exclusions:
    """Per-query sets of catalogue columns left out of the ranking (CSR layout).

    Row ``q`` excludes ``indices[indptr[q]:indptr[q + 1]]``. Excluding a query's
    target has no effect: the target always stays a candidate.

    Attributes:
        indptr: [num_queries + 1] int64, non-decreasing, starting at 0.
        indices: [nnz] int64 catalogue columns.
    """

    indptr: IntArray
    indices: IntArray

    def __post_init__(self) -> None:
        indptr = np.asarray(self.indptr, dtype=np.int64)
        indices = np.asarray(self.indices, dtype=np.int64)
        if indptr.ndim != 1 or len(indptr) == 0 or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
            raise DataError(
                f"Exclusions.indptr must start at 0 and never decrease; got {indptr[:5].tolist()}... "
                f"(length {len(indptr)}).",
                hint="Build exclusions with Exclusions.from_lists(...).",
            )
        if indptr[-1] != len(indices):
            raise DataError(
                f"Exclusions.indptr ends at {int(indptr[-1])} but there are {len(indices)} indices.",
                hint="Build exclusions with Exclusions.from_lists(...).",
            )
        object.__setattr__(self, "indptr", indptr)
        object.__setattr__(self, "indices", indices)

    @classmethod
    def from_lists(cls, lists: Sequence[Sequence[int] | npt.NDArray[Any]]) -> Exclusions:
        """One sequence of catalogue columns per query."""
        lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        parts = [np.asarray(x, dtype=np.int64) for x in lists if len(x)]
        indices = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return cls(indptr, indices)

    @classmethod
    def empty(cls, num_queries: int) -> Exclusions:
        """No exclusions for ``num_queries`` queries."""
        return cls(np.zeros(num_queries + 1, dtype=np.int64), np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def rows(self, start: int, stop: int) -> Exclusions:
        """The exclusions of queries ``start..stop-1``."""
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        return Exclusions(self.indptr[start : stop + 1] - lo, self.indices[lo:hi])


@dataclass(frozen=True)
class Queries:
    """What is being predicted: one target per query, plus what to leave out.

    Attributes:
        targets: [num_queries] int64 catalogue column of each target, -1 when the
            target is out of vocabulary.
        num_items: the catalogue size ``N`` (columns of every score matrix).
        exclude: per-query exclusions, or ``None`` to rank every item.
        slices: slicing name (e.g. ``user_activity``) -> [num_queries] labels (str).
        split: the split the queries come from, for the protocol.
        exclusion_rule: what ``exclude`` holds, in words, for the protocol.
        user_ids: [num_queries] ids, only used to name a query in error messages.
        item_ids: [num_items] ids, only used to name an item in error messages.
        protocol: the protocol's name (``product`` or ``literature``,
            :mod:`sparktf.evaluation.protocols`), carried into every result.
    """

    targets: IntArray
    num_items: int
    exclude: Exclusions | None = None
    slices: Mapping[str, npt.NDArray[Any]] = field(default_factory=dict)
    split: str = "test"
    exclusion_rule: str = "items the user interacted with before the target"
    user_ids: npt.NDArray[Any] | None = None
    item_ids: npt.NDArray[Any] | None = None
    protocol: str = "product"

    def __post_init__(self) -> None:
        targets = np.asarray(self.targets, dtype=np.int64)
        object.__setattr__(self, "targets", targets)
        if self.num_items < 1:
            raise DataError(
                f"The catalogue is empty (num_items = {self.num_items}); there is nothing to rank.",
                hint="Check that vocab/items of the features has rows.",
            )
        bad = np.flatnonzero((targets < -1) | (targets >= self.num_items))
        if len(bad):
            q = int(bad[0])
            raise DataError(
                f"Query {self.describe(q)} has target column {int(targets[q])}, outside the catalogue "
                f"0..{self.num_items - 1} (and not -1 for out-of-vocabulary); {len(bad)} queries are like this.",
                hint="Map targets with the item vocabulary: column = vocabulary index - 1, -1 when unknown.",
            )
        if self.exclude is not None and len(self.exclude) != len(targets):
            raise DataError(
                f"Exclusions cover {len(self.exclude)} queries but there are {len(targets)} targets.",
            )
        if self.exclude is not None and len(self.exclude.indices):
            idx = self.exclude.indices
            if int(idx.min()) < 0 or int(idx.max()) >= self.num_items:
                raise DataError(
                    f"Exclusions hold catalogue columns {int(idx.min())}..{int(idx.max())}, outside 0..{self.num_items - 1}.",
                    hint="Map excluded items with the item vocabulary and leave out unknown ones.",
                )
        for name, labels in self.slices.items():
            if len(labels) != len(targets):
                raise DataError(
                    f"Slice labels {name!r} have {len(labels)} entries but there are {len(targets)} queries.",
                )

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def num_oov(self) -> int:
        """Queries whose target is not in the catalogue (counted as misses)."""
        return int(np.count_nonzero(self.targets < 0))

    def describe(self, q: int) -> str:
        """A query's row number, with its user when known."""
        if self.user_ids is not None:
            return f"row {q} (user {str(self.user_ids[q])!r})"
        return f"row {q}"

    def item(self, col: int) -> str:
        """An item's column, with its id when known."""
        if self.item_ids is not None:
            return f"column {col} (item {str(self.item_ids[col])!r})"
        return f"column {col}"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class EvalProtocol:
    """How a result was measured; rendered as a sentence in every report.

    Attributes:
        split: the split the queries come from.
        num_items: catalogue size (the candidates of every query, before exclusions).
        exclude_seen: whether items seen before the target were removed (target kept).
        ks: the cut-offs.
        num_queries: queries evaluated (out-of-vocabulary targets included).
        oov_targets: queries whose target is not in the catalogue (misses).
        exclusion_rule: what "seen" means, in words.
        list_length: 0 for full ranking; L when the metrics come from top-L lists,
            in which case MRR is truncated at L and named ``mrr@L``.
        name: the protocol's name, ``product`` or ``literature``
            (:mod:`sparktf.evaluation.protocols`); every report is labelled with it.
    """

    split: str
    num_items: int
    exclude_seen: bool
    ks: tuple[int, ...]
    num_queries: int
    oov_targets: int
    exclusion_rule: str = "items the user interacted with before the target"
    list_length: int = 0
    name: str = "product"

    def sentence(self) -> str:
        """The protocol in one sentence, for reports."""
        ks = ", ".join(str(k) for k in self.ks)
        if self.list_length:
            ranking = (
                f"{self.num_queries:,} queries on the {self.split} split, each scored from the model's own "
                f"top-{self.list_length} list over a catalogue of {self.num_items:,} items (MRR truncated at "
                f"{self.list_length})"
            )
        else:
            ranking = (
                f"{self.num_queries:,} queries on the {self.split} split, each ranking the full catalogue of "
                f"{self.num_items:,} items (no sampling)"
            )
        seen = (
            f"{self.exclusion_rule} excluded, except the target itself"
            if self.exclude_seen
            else "seen items not excluded"
        )
        return (
            f"{self.name.capitalize()} protocol: {ranking}; {seen}; {TIE_RULE}; {self.oov_targets:,} "
            f"out-of-vocabulary targets counted as misses; K in {{{ks}}}."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "num_items": self.num_items,
            "exclude_seen": self.exclude_seen,
            "ks": list(self.ks),
            "num_queries": self.num_queries,
            "oov_targets": self.oov_targets,
            "exclusion_rule": self.exclusion_rule,
            "list_length": self.list_length,
            "name": self.name,
            "sentence": self.sentence(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalProtocol:
        return cls(
            split=str(data["split"]),
            num_items=int(data["num_items"]),
            exclude_seen=bool(data["exclude_seen"]),
            ks=tuple(int(k) for k in data["ks"]),
            num_queries=int(data["num_queries"]),
            oov_targets=int(data["oov_targets"]),
            exclusion_rule=str(data.get("exclusion_rule", cls.exclusion_rule)),
            list_length=int(data.get("list_length", 0)),
            name=str(data.get("name", "product")),
        )


SliceMetrics = dict[str, dict[str, dict[str, float]]]


@dataclass(frozen=True)
class EvaluationResult:
    """The metrics of one model under one protocol (picklable, JSON-able).

    Attributes:
        model: the model's name (``most_popular``, ``sequential``...).
        protocol: how it was measured.
        overall: ``hr@K``, ``ndcg@K``, ``coverage@K`` for each K, and ``mrr``
            (``mrr@L`` when evaluated from top-L lists).
        slices: ``{slicing: {slice value: {metric: value, "count": queries}}}``;
            coverage is a property of the whole set of lists, so it is overall only.
    """

    model: str
    protocol: EvalProtocol
    overall: dict[str, float]
    slices: SliceMetrics = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "protocol": self.protocol.to_dict(),
            "overall": dict(self.overall),
            "slices": {s: {v: dict(m) for v, m in vals.items()} for s, vals in self.slices.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationResult:
        return cls(
            model=str(data["model"]),
            protocol=EvalProtocol.from_dict(data["protocol"]),
            overall={str(k): float(v) for k, v in data["overall"].items()},
            slices={
                str(s): {str(v): {str(m): float(x) for m, x in ms.items()} for v, ms in vals.items()}
                for s, vals in data.get("slices", {}).items()
            },
        )


# --------------------------------------------------------------------------- core


def _eligible(num_rows: int, num_items: int, exclude: Exclusions | None, targets: IntArray) -> npt.NDArray[np.bool_]:
    """[rows, items] True where an item is a candidate for the query."""
    elig = np.ones((num_rows, num_items), dtype=np.bool_)
    if exclude is not None and len(exclude.indices):
        rows = np.repeat(np.arange(num_rows), np.diff(exclude.indptr))
        elig[rows, exclude.indices] = False
        known = np.flatnonzero(targets >= 0)
        elig[known, targets[known]] = True
    return elig


def _check_scores(scores: npt.NDArray[Any], num_rows: int, queries: Queries | None, offset: int) -> None:
    if (
        scores.ndim != 2
        or scores.shape[0] != num_rows
        or (queries is not None and scores.shape[1] != queries.num_items)
    ):
        n = queries.num_items if queries is not None else scores.shape[-1]
        extra = (
            " The model seems to emit a column for the out-of-vocabulary index 0: pass scores[:, 1:]."
            if scores.ndim == 2 and scores.shape[1] == n + 1
            else ""
        )
        raise ModelError(
            f"Scores for queries {offset}..{offset + num_rows - 1} have shape {tuple(scores.shape)}; "
            f"expected ({num_rows}, {n}): one row per query, one column per catalogue item in vocabulary "
            f"order.{extra}",
        )
    nan = np.isnan(scores)
    if nan.any():
        r, c = (int(x[0]) for x in np.nonzero(nan))
        where = queries.describe(offset + r) if queries is not None else f"row {offset + r}"
        what = queries.item(c) if queries is not None else f"column {c}"
        raise ModelError(
            f"Scores contain NaN at query {where}, {what} ({int(nan.sum())} NaNs in this batch); a NaN has no rank.",
            hint="Check the model for exploding weights or a division by zero; use -inf to rule an item out.",
        )


def rank_targets(
    scores: npt.NDArray[Any],
    targets: IntArray,
    exclude: Exclusions | None = None,
) -> FloatArray:
    """The full-catalogue rank of each query's target (1 = best).

    Args:
        scores: [queries, items] scores, higher is better; no NaN.
        targets: [queries] catalogue columns, -1 for out-of-vocabulary.
        exclude: per-query columns to leave out (the target is never left out).

    Returns:
        [queries] float64 ranks; ``inf`` for out-of-vocabulary targets.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64)
    b, n = scores.shape
    elig = _eligible(b, n, exclude, targets)
    known = targets >= 0
    safe = np.where(known, targets, 0)
    t = scores[np.arange(b), safe][:, None]
    above = np.count_nonzero((scores > t) & elig, axis=1)
    tied_before = np.count_nonzero((scores == t) & elig & (np.arange(n)[None, :] < safe[:, None]), axis=1)
    ranks: FloatArray = (1 + above + tied_before).astype(np.float64)
    ranks[~known] = np.inf
    return ranks


def top_k(
    scores: npt.NDArray[Any],
    k: int,
    exclude: Exclusions | None = None,
    targets: IntArray | None = None,
) -> IntArray:
    """Each query's top-``k`` catalogue columns, best first, under the tie rule.

    Args:
        scores: [queries, items] scores, higher is better; no NaN.
        k: list length.
        exclude: per-query columns to leave out.
        targets: [queries] columns kept as candidates even when excluded (-1: none).

    Returns:
        [queries, k] int64 columns, padded with -1 when fewer than ``k`` candidates.
    """
    scores = np.asarray(scores)
    b, n = scores.shape
    tgt = np.full(b, -1, dtype=np.int64) if targets is None else np.asarray(targets, dtype=np.int64)
    elig = _eligible(b, n, exclude, tgt)
    out = np.full((b, k), -1, dtype=np.int64)
    if b == 0 or k == 0:
        return out
    kk = min(k, n)
    masked = np.where(elig, scores, -np.inf)
    # The kk-th largest score of each row; every candidate above it is in the list,
    # and the ones equal to it fill the rest in column order.
    thr = np.partition(masked, n - kk, axis=1)[:, n - kk][:, None]
    above = (scores > thr) & elig
    at = (scores == thr) & elig
    need = kk - np.count_nonzero(above, axis=1)
    # Rows with more tied candidates than places keep the first ones by column; a
    # per-row look-up is much cheaper than a cumulative sum over every column.
    for r in np.flatnonzero(np.count_nonzero(at, axis=1) > need):
        at[r, np.flatnonzero(at[r])[need[r] :]] = False
    rows, cols = np.nonzero(above | at)
    order = np.lexsort((cols, -scores[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, np.arange(b))
    out[rows, np.arange(len(rows)) - starts[rows]] = cols
    return out


def metrics_from_ranks(ranks: FloatArray, ks: Sequence[int]) -> dict[str, float]:
    """HR@K, NDCG@K for each K, and MRR, from full-catalogue ranks.

    Args:
        ranks: [queries] ranks (1 = best, ``inf`` = miss); must not be empty.
        ks: cut-offs.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    if len(ranks) == 0:
        raise DataError("Cannot compute metrics over zero queries.", hint="Check that the split has examples.")
    out: dict[str, float] = {}
    gain = 1.0 / np.log2(ranks + 1.0)
    for k in ks:
        hit = ranks <= k
        out[f"hr@{k}"] = float(np.mean(hit))
        out[f"ndcg@{k}"] = float(np.mean(np.where(hit, gain, 0.0)))
    out["mrr"] = float(np.mean(1.0 / ranks))
    return out


def _slice_metrics(
    ranks: FloatArray, slices: Mapping[str, npt.NDArray[Any]], ks: Sequence[int], mrr_key: str
) -> SliceMetrics:
    out: SliceMetrics = {}
    for name, labels in slices.items():
        labels = np.asarray(labels).astype(str)
        values, inverse = np.unique(labels, return_inverse=True)
        per: dict[str, dict[str, float]] = {}
        for i, value in enumerate(values):
            mask = inverse == i
            m = metrics_from_ranks(ranks[mask], ks)
            m[mrr_key] = m.pop("mrr")
            m["count"] = float(np.count_nonzero(mask))
            per[str(value)] = m
        out[name] = per
    return out


def _normalised_ks(ks: Sequence[int]) -> tuple[int, ...]:
    out = tuple(sorted({int(k) for k in ks}))
    if not out or out[0] < 1:
        raise DataError(f"Cut-offs must be positive integers; got {list(ks)!r}.", hint="Use e.g. ks=(10, 20, 50, 100).")
    return out


def evaluate_ranking(
    score_rows: Callable[[int, int], npt.NDArray[Any]],
    queries: Queries,
    *,
    ks: Sequence[int],
    model: str,
    batch_size: int = 1024,
) -> EvaluationResult:
    """Evaluate a model that scores the whole catalogue, one batch of queries at a time.

    Args:
        score_rows: ``score_rows(start, stop)`` returns the [stop - start, N] scores of
            queries ``start..stop-1`` (higher is better, columns in vocabulary order).
        queries: targets, exclusions and slice labels.
        ks: cut-offs.
        model: the model's name for the result.
        batch_size: queries per call, lowered so a batch holds at most
            :data:`MAX_BATCH_ELEMENTS` scores.

    Raises:
        ModelError: scores of the wrong shape or with NaN.
        DataError: no queries.

    Example:
        >>> q = Queries(targets=np.array([0, 2]), num_items=3, split="test")
        >>> r = evaluate_ranking(lambda a, b: np.array([[3.0, 2, 1], [3, 2, 1]])[a:b], q, ks=[1], model="m")
        >>> r.overall["hr@1"], r.overall["mrr"]
        (0.5, 0.6666666666666666)
    """
    ks = _normalised_ks(ks)
    q_total = len(queries)
    if q_total == 0:
        raise DataError(
            f"The {queries.split} split has no queries to evaluate.", hint="Check the features' examples table."
        )
    kmax = max(ks)
    step = max(1, min(batch_size, MAX_BATCH_ELEMENTS // queries.num_items))
    ranks = np.empty(q_total, dtype=np.float64)
    covered = {k: np.zeros(queries.num_items, dtype=np.bool_) for k in ks}
    for start in range(0, q_total, step):
        stop = min(start + step, q_total)
        scores = np.asarray(score_rows(start, stop))
        _check_scores(scores, stop - start, queries, start)
        excl = queries.exclude.rows(start, stop) if queries.exclude is not None else None
        targets = queries.targets[start:stop]
        ranks[start:stop] = rank_targets(scores, targets, excl)
        lists = top_k(scores, kmax, excl, targets)
        for k in ks:
            head = lists[:, :k]
            covered[k][head[head >= 0]] = True
    overall = metrics_from_ranks(ranks, ks)
    for k in ks:
        overall[f"coverage@{k}"] = float(np.mean(covered[k]))
    return EvaluationResult(
        model=model,
        protocol=_protocol(queries, ks, list_length=0),
        overall=overall,
        slices=_slice_metrics(ranks, queries.slices, ks, "mrr"),
    )


def evaluate_ranked_lists(
    lists: npt.NDArray[Any],
    queries: Queries,
    *,
    ks: Sequence[int],
    model: str,
) -> EvaluationResult:
    """Evaluate ready-made top-L lists (e.g. batch recommendations or an ANN index).

    The lists are taken as they are: exclusions are the list maker's business
    (``queries.exclude`` is only recorded in the protocol). A target beyond the list
    is a miss, so MRR is truncated at L and reported as ``mrr@L``.

    Args:
        lists: [queries, L] catalogue columns, best first, padded with -1.
        queries: targets and slice labels.
        ks: cut-offs, each at most L.
        model: the model's name for the result.

    Raises:
        DataError: a cut-off longer than the lists, a column outside the catalogue,
            a column listed twice for one query, or no queries.
    """
    ks = _normalised_ks(ks)
    lists = np.asarray(lists, dtype=np.int64)
    if lists.ndim != 2 or lists.shape[0] != len(queries):
        raise DataError(f"Top-L lists have shape {lists.shape}; expected ({len(queries)}, L): one row per query.")
    if len(queries) == 0:
        raise DataError(f"The {queries.split} split has no queries to evaluate.")
    length = lists.shape[1]
    if max(ks) > length:
        raise DataError(
            f"Cut-off K = {max(ks)} is longer than the top-{length} lists given.",
            hint=f"Ask the model for at least {max(ks)} items per query, or lower evaluation.ks.",
        )
    bad = (lists < -1) | (lists >= queries.num_items)
    if bad.any():
        r, c = (int(x[0]) for x in np.nonzero(bad))
        raise DataError(
            f"Top-L list of query {queries.describe(r)} holds column {int(lists[r, c])} at position {c + 1}, "
            f"outside the catalogue 0..{queries.num_items - 1}.",
        )
    # Padding (-1) becomes distinct negatives so that only real items can repeat.
    srt = np.sort(np.where(lists >= 0, lists, -1 - np.arange(length)[None, :]), axis=1)
    dup = np.flatnonzero((np.diff(srt, axis=1) == 0).any(axis=1))
    if len(dup):
        raise DataError(
            f"Top-L list of query {queries.describe(int(dup[0]))} holds an item twice "
            f"({len(dup)} lists do); a ranked list has each item once.",
        )
    hit = lists == queries.targets[:, None]
    hit &= (queries.targets >= 0)[:, None]
    ranks = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1.0, np.inf)
    overall = metrics_from_ranks(ranks, ks)
    mrr_key = f"mrr@{length}"
    overall[mrr_key] = overall.pop("mrr")
    for k in ks:
        head = lists[:, :k]
        overall[f"coverage@{k}"] = float(len(np.unique(head[head >= 0])) / queries.num_items)
    return EvaluationResult(
        model=model,
        protocol=_protocol(queries, ks, list_length=length),
        overall=overall,
        slices=_slice_metrics(ranks, queries.slices, ks, mrr_key),
    )


def _protocol(queries: Queries, ks: tuple[int, ...], *, list_length: int) -> EvalProtocol:
    return EvalProtocol(
        split=queries.split,
        num_items=queries.num_items,
        exclude_seen=queries.exclude is not None,
        ks=ks,
        num_queries=len(queries),
        oov_targets=queries.num_oov,
        exclusion_rule=queries.exclusion_rule,
        list_length=list_length,
        name=queries.protocol,
    )
