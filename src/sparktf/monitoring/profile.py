"""The profile of a model's traffic: what it was trained on (the reference, saved with each
version) and what it is served (counted by the same code), and the drift between them.

A profile counts, per request, five features into fixed bins:

* ``history_length`` (per request): the history the model ranked from, capped at the model's
  ``max_history`` (what it reads); bins are reference quantiles;
* ``history_popularity`` (per history item the model knows): ``head``/``torso``/``tail`` by
  the training interactions (:func:`sparktf.evaluation.evalset.popularity_buckets`);
* ``history_category`` (per known history item): the ``top_categories`` most frequent in
  training by name, the rest ``(other)``;
* ``history_price_bucket`` (per known history item): the features' price bucket;
* ``top1_score`` (per reply the model ranked): the score of the first item; bins are
  reference quantiles of the validation queries' top-1 scores (seen items excluded, as served);

and three rates: ``unknown_item_rate`` (history items the model does not know),
``fallback_rate`` (replies from the popular fallback) and ``unknown_user_rate`` (requests
naming a user nobody knows: no history anywhere, and none in the model's user vocabulary).

The bins are fixed when the model is trained (:func:`build_reference`) and stored with it
(``assets.extra/reference_profile.json`` beside the export, and so in its MLflow model; the
per-item bins as ``reference_items.npy`` in the export's item order), so that every window
of served traffic is binned like the reference and windows stay comparable.

Drift per feature is the population stability index and the Jensen-Shannon distance
(natural log) of the current shares against the reference shares, zero shares floored at
1e-4 for PSI as Evidently does (:func:`psi`, :func:`js_distance`); the formulas are the
reference's section 6.

Why our own code: Evidently computes drift between two data frames of rows; the server has
no rows to keep (bounded memory, microseconds per request), only bin counts, and the
reference must be binned once at training time. The statistics are a few lines; the report
(:mod:`sparktf.monitoring.report`) says where Evidently fits.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from sparktf.config import MonitoringConfig

__all__ = [
    "FEATURES",
    "ITEM_BINS_FILE",
    "OTHER",
    "RATES",
    "REFERENCE_FILE",
    "Counts",
    "FeatureBins",
    "Profiler",
    "Reference",
    "Thresholds",
    "build_reference",
    "compare",
    "js_distance",
    "load_reference",
    "psi",
    "quantile_edges",
    "sum_counts",
    "write_reference",
]

#: The reference profile beside the export (in ``assets.extra/``).
REFERENCE_FILE = "reference_profile.json"
#: The per-item bins (popularity, category, price bucket) in the export's item order.
ITEM_BINS_FILE = "reference_items.npy"
#: The profiled features, in display order.
FEATURES: tuple[str, ...] = (
    "history_length",
    "history_popularity",
    "history_category",
    "history_price_bucket",
    "top1_score",
)
#: The rates; each alerts above its ``monitoring.max_<rate>``.
RATES: tuple[str, ...] = ("fallback_rate", "unknown_user_rate", "unknown_item_rate")
#: The bin of categories beyond ``top_categories`` and of items without one.
OTHER = "(other)"
#: The columns of ``reference_items.npy``.
_ITEM_FEATURES = ("history_popularity", "history_category", "history_price_bucket")
_FORMAT = 1
_EPS = 1e-4


@dataclass(frozen=True)
class FeatureBins:
    """One feature's bins and its reference counts.

    Attributes:
        name: one of :data:`FEATURES`.
        kind: ``numeric`` (``edges``: a value v falls in bin ``bisect_right(edges, v)``) or
            ``categorical`` (one bin per label).
        unit: what one count is: ``request``, ``history item`` or ``reply``.
        labels: a name per bin.
        edges: the numeric bins' inner cut points (empty for categorical).
        reference: the reference's count per bin.
    """

    name: str
    kind: str
    unit: str
    labels: tuple[str, ...]
    edges: tuple[float, ...] = ()
    reference: tuple[int, ...] = ()

    def bin_of(self, value: float) -> int:
        return bisect.bisect_right(self.edges, value)


@dataclass(frozen=True)
class Reference:
    """A model version's reference profile (see the module docstring).

    Attributes:
        model_kind: the model it was built for.
        split: the queries it was measured on (``validation``).
        queries: how many.
        history_cap: the longest history the model reads.
        features: :data:`FEATURES` → bins and reference counts.
        rates: :data:`RATES` → the reference's rate.
        item_bins: [items, 3] int16 bins of each of the export's items (its ``item_ids.txt``
            order) for ``history_popularity``, ``history_category``, ``history_price_bucket``.
    """

    model_kind: str
    split: str
    queries: int
    history_cap: int
    features: Mapping[str, FeatureBins]
    rates: Mapping[str, float]
    item_bins: npt.NDArray[np.int16] = field(repr=False, default_factory=lambda: np.zeros((0, 3), np.int16))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "model_kind": self.model_kind,
            "split": self.split,
            "queries": self.queries,
            "history_cap": self.history_cap,
            "features": {
                name: {
                    "kind": f.kind,
                    "unit": f.unit,
                    "labels": list(f.labels),
                    "edges": list(f.edges),
                    "counts": list(f.reference),
                }
                for name, f in self.features.items()
            },
            "rates": dict(self.rates),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], item_bins: npt.NDArray[Any]) -> Reference:
        if data.get("format") != _FORMAT:
            raise ValueError(f"reference profile format {data.get('format')!r}; this sparktf reads {_FORMAT}")
        features = {
            name: FeatureBins(
                name=name,
                kind=str(f["kind"]),
                unit=str(f["unit"]),
                labels=tuple(str(x) for x in f["labels"]),
                edges=tuple(float(x) for x in f["edges"]),
                reference=tuple(int(x) for x in f["counts"]),
            )
            for name, f in data["features"].items()
        }
        missing = [f for f in FEATURES if f not in features]
        if missing:
            raise ValueError(f"reference profile lacks feature(s) {missing}")
        return cls(
            model_kind=str(data["model_kind"]),
            split=str(data["split"]),
            queries=int(data["queries"]),
            history_cap=int(data["history_cap"]),
            features=features,
            rates={k: float(v) for k, v in data["rates"].items()},
            item_bins=np.asarray(item_bins, dtype=np.int16).reshape(-1, 3),
        )


def write_reference(directory: str, reference: Reference) -> list[str]:
    """Write the profile into ``directory`` (an export's ``assets.extra``); returns the paths."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, REFERENCE_FILE)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(reference.to_dict(), fh, indent=1)
    bins = os.path.join(directory, ITEM_BINS_FILE)
    np.save(bins, np.asarray(reference.item_bins, dtype=np.int16))
    return [path, bins]


def load_reference(directory: str) -> Reference | None:
    """The profile in ``directory`` (an export's ``assets.extra``), or None when it has none
    (a model exported before profiles existed, or not by sparktf).

    Raises:
        ValueError: the files are there but cannot be read (named in the message).
    """
    path = os.path.join(directory, REFERENCE_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return Reference.from_dict(data, np.load(os.path.join(directory, ITEM_BINS_FILE)))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: the reference profile cannot be read ({exc})") from exc


# --------------------------------------------------------------------------- building


def quantile_edges(values: npt.ArrayLike, bins: int, *, integer: bool = False) -> tuple[float, ...]:
    """Inner cut points of up to ``bins`` quantile bins of ``values`` (ties merge bins, so a
    value always falls in one bin; integer data cuts between integers)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return ()
    qs = np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1])
    if integer:
        qs = np.floor(qs) + 0.5
    edges = sorted({float(q) for q in qs if v.min() < q <= v.max()})
    return tuple(edges)


def _numeric_labels(edges: Sequence[float], integer: bool) -> tuple[str, ...]:
    if not edges:
        return ("all",)
    if integer:
        cuts = [math.ceil(e) for e in edges]  # bin i holds [cuts[i-1], cuts[i]-1]
        labels = [f"≤{cuts[0] - 1}"]
        labels += [f"{a}" if b - 1 == a else f"{a}–{b - 1}" for a, b in itertools.pairwise(cuts)]
        labels.append(f"≥{cuts[-1]}")
        return tuple(labels)
    out = [f"<{edges[0]:.3g}"]
    out += [f"{a:.3g}–{b:.3g}" for a, b in itertools.pairwise(edges)]
    out.append(f"≥{edges[-1]:.3g}")
    return tuple(out)


def _popularity_labels(counts: npt.NDArray[Any], shares: Sequence[float]) -> npt.NDArray[np.str_]:
    from sparktf.evaluation.evalset import popularity_buckets

    return popularity_buckets(counts, shares)


def build_reference(
    *,
    model_kind: str,
    split: str,
    item_ids: Sequence[str],
    item_counts: npt.ArrayLike,
    item_category: Mapping[str, Any],
    item_price_bucket: Mapping[str, Any],
    histories: Sequence[Sequence[str]],
    top1_scores: npt.ArrayLike,
    history_cap: int,
    score_bins: int = 10,
    length_bins: int = 10,
    top_categories: int = 20,
    popularity_shares: Sequence[float] = (0.5, 0.8),
) -> Reference:
    """The reference profile of a model (pure).

    Args:
        model_kind: the model's kind.
        split: the split the queries come from.
        item_ids: the export's items, in its ``item_ids.txt`` order.
        item_counts: their training interaction counts (the vocabulary's ``count``).
        item_category, item_price_bucket: item id → category / price bucket (the features'
            ``items/``; an item without one counts as ``(other)``).
        histories: the queries' histories (oldest first).
        top1_scores: the model's top-1 score per query (NaN: no score).
        history_cap: the model's ``max_history``.
    """
    ids = [str(x) for x in item_ids]
    counts = np.asarray(item_counts, dtype=np.float64)
    if counts.shape != (len(ids),):
        raise ValueError(f"item_counts has shape {counts.shape}, expected ({len(ids)},)")
    # Categories by training interactions: the most frequent get their own bin.
    mass: dict[str, float] = {}
    for item, c in zip(ids, counts, strict=True):
        cat = item_category.get(item)
        if cat is not None:
            mass[str(cat)] = mass.get(str(cat), 0.0) + float(c)
    named = sorted(mass, key=lambda c: (-mass[c], c))[:top_categories]
    cat_labels = (*named, OTHER)
    cat_index = {c: i for i, c in enumerate(named)}
    prices = sorted({int(p) for p in item_price_bucket.values() if p is not None and not _isnan(p)})
    price_labels = (*[str(p) for p in prices], OTHER)
    price_index = {p: i for i, p in enumerate(prices)}
    pop_labels = ("head", "torso", "tail")
    pop = _popularity_labels(counts, popularity_shares) if len(ids) else np.array([], dtype="<U5")
    item_bins = np.zeros((len(ids), 3), dtype=np.int16)
    for row, item in enumerate(ids):
        cat = item_category.get(item)
        price = item_price_bucket.get(item)
        item_bins[row, 0] = pop_labels.index(str(pop[row]))
        item_bins[row, 1] = cat_index.get(str(cat), len(named)) if cat is not None else len(named)
        item_bins[row, 2] = (
            price_index.get(int(price), len(prices)) if price is not None and not _isnan(price) else len(prices)
        )

    lengths = np.asarray([min(len(h), history_cap) for h in histories], dtype=np.float64)
    len_edges = quantile_edges(lengths, length_bins, integer=True)
    scores = np.asarray(top1_scores, dtype=np.float64)
    score_edges = quantile_edges(scores, score_bins)
    features = {
        "history_length": FeatureBins(
            "history_length", "numeric", "request", _numeric_labels(len_edges, True), len_edges
        ),
        "history_popularity": FeatureBins("history_popularity", "categorical", "history item", pop_labels),
        "history_category": FeatureBins("history_category", "categorical", "history item", cat_labels),
        "history_price_bucket": FeatureBins("history_price_bucket", "categorical", "history item", price_labels),
        "top1_score": FeatureBins("top1_score", "numeric", "reply", _numeric_labels(score_edges, False), score_edges),
    }
    reference = Reference(
        model_kind=model_kind,
        split=split,
        queries=len(histories),
        history_cap=history_cap,
        features=features,
        rates={},
        item_bins=item_bins,
    )
    profiler = Profiler(reference, ids)
    c = profiler.new_counts()
    for history, score in zip(histories, scores, strict=True):
        known = any(x in profiler.row for x in history[-history_cap:]) if history_cap else False
        profiler.observe(
            c,
            history,
            top1=float(score) if np.isfinite(score) else None,
            fallback=not known,
            unknown_user=False,
        )
    with_counts = {
        name: FeatureBins(f.name, f.kind, f.unit, f.labels, f.edges, tuple(int(x) for x in c.bins[name]))
        for name, f in features.items()
    }
    return Reference(
        model_kind=model_kind,
        split=split,
        queries=len(histories),
        history_cap=history_cap,
        features=with_counts,
        rates=c.rates(),
        item_bins=item_bins,
    )


def _isnan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


# --------------------------------------------------------------------------- counting


@dataclass
class Counts:
    """Bin counts of some traffic (a window slot, a window, an hour of events)."""

    bins: dict[str, list[int]]
    requests: int = 0
    fallbacks: int = 0
    named_users: int = 0
    unknown_users: int = 0
    history_items: int = 0
    unknown_items: int = 0

    def add(self, other: Counts) -> None:
        for name, values in other.bins.items():
            mine = self.bins[name]
            for i, v in enumerate(values):
                mine[i] += v
        self.requests += other.requests
        self.fallbacks += other.fallbacks
        self.named_users += other.named_users
        self.unknown_users += other.unknown_users
        self.history_items += other.history_items
        self.unknown_items += other.unknown_items

    def rates(self) -> dict[str, float]:
        """:data:`RATES` of these counts (NaN where the denominator is 0)."""

        def div(a: int, b: int) -> float:
            return a / b if b else float("nan")

        return {
            "fallback_rate": div(self.fallbacks, self.requests),
            "unknown_user_rate": div(self.unknown_users, self.named_users),
            "unknown_item_rate": div(self.unknown_items, self.history_items),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "bins": {k: list(v) for k, v in self.bins.items()},
            "requests": self.requests,
            "fallbacks": self.fallbacks,
            "named_users": self.named_users,
            "unknown_users": self.unknown_users,
            "history_items": self.history_items,
            "unknown_items": self.unknown_items,
        }


class Profiler:
    """Counts requests into a reference's bins: the one counting code of the reference, the
    server's windows and the report's hours.

    Args:
        reference: the bins.
        item_ids: the export's items, in the order of ``reference.item_bins``.

    Why plain lists and dicts: the server calls :meth:`observe` once per reply on its batch
    thread; list indexing and a dict lookup per history item keep it at a few microseconds
    for a 20-item history (measured by ``bench/bench_monitoring.py``), where NumPy's
    per-call overhead would be larger than the work.
    """

    def __init__(self, reference: Reference, item_ids: Sequence[str]) -> None:
        if len(item_ids) != len(reference.item_bins):
            raise ValueError(
                f"the reference profile bins {len(reference.item_bins)} items, the export has {len(item_ids)}"
            )
        self.reference = reference
        self.row = {str(x): i for i, x in enumerate(item_ids)}
        bins = reference.item_bins
        self._pop = bins[:, 0].tolist()
        self._cat = bins[:, 1].tolist()
        self._price = bins[:, 2].tolist()
        f = reference.features
        self._sizes = {name: len(f[name].labels) for name in FEATURES}
        self._len_edges = list(f["history_length"].edges)
        self._score_edges = list(f["top1_score"].edges)
        self._cap = reference.history_cap

    def new_counts(self) -> Counts:
        return Counts({name: [0] * n for name, n in self._sizes.items()})

    def observe(
        self,
        counts: Counts,
        history: Sequence[str],
        *,
        top1: float | None,
        fallback: bool,
        unknown_user: bool | None,
    ) -> None:
        """Count one reply: the history it was ranked from, its top-1 score (None when the
        model did not rank it), whether the fallback answered, whether it named a user
        nobody knows (None: it named no user)."""
        b = counts.bins
        h = history[-self._cap :] if len(history) > self._cap else history
        counts.requests += 1
        b["history_length"][bisect.bisect_right(self._len_edges, len(h))] += 1
        pop, cat, price = b["history_popularity"], b["history_category"], b["history_price_bucket"]
        row = self.row
        unknown = 0
        for item in h:
            r = row.get(item)
            if r is None:
                unknown += 1
            else:
                pop[self._pop[r]] += 1
                cat[self._cat[r]] += 1
                price[self._price[r]] += 1
        counts.history_items += len(h)
        counts.unknown_items += unknown
        if top1 is not None:
            b["top1_score"][bisect.bisect_right(self._score_edges, top1)] += 1
        if fallback:
            counts.fallbacks += 1
        if unknown_user is not None:
            counts.named_users += 1
            counts.unknown_users += unknown_user


# --------------------------------------------------------------------------- drift


def _shares(counts: Sequence[float]) -> npt.NDArray[np.float64]:
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    return c / total if total > 0 else np.full(c.shape, np.nan)


def psi(reference: Sequence[float], current: Sequence[float], eps: float = _EPS) -> float:
    """Population stability index Σ (q − p)·ln(q / p) of two count (or share) vectors,
    zero shares floored at ``eps``; NaN when either is empty."""
    p, q = _shares(reference), _shares(current)
    if np.isnan(p).any() or np.isnan(q).any():
        return float("nan")
    p, q = np.maximum(p, eps), np.maximum(q, eps)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(reference: Sequence[float], current: Sequence[float]) -> float:
    """Jensen-Shannon distance (natural log, in [0, √ln 2]) of two count vectors, as
    ``scipy.spatial.distance.jensenshannon``; NaN when either is empty."""
    p, q = _shares(reference), _shares(current)
    if np.isnan(p).any() or np.isnan(q).any():
        return float("nan")
    m = 0.5 * (p + q)

    def kl(a: npt.NDArray[np.float64]) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / m[nz])))

    return float(math.sqrt(max(0.5 * kl(p) + 0.5 * kl(q), 0.0)))


@dataclass(frozen=True)
class Thresholds:
    """When a version's traffic alerts (``[monitoring]``)."""

    min_requests: int = 500
    psi: float = 0.25
    js: float = 0.1
    max_rates: Mapping[str, float] = field(
        default_factory=lambda: {"fallback_rate": 0.2, "unknown_user_rate": 0.2, "unknown_item_rate": 0.1}
    )

    @classmethod
    def from_config(cls, cfg: MonitoringConfig) -> Thresholds:
        """``[monitoring]``'s thresholds: the one reading of them, for the server and the report."""
        return cls(
            min_requests=cfg.min_requests,
            psi=cfg.psi_alert,
            js=cfg.js_alert,
            max_rates={
                "fallback_rate": cfg.max_fallback_rate,
                "unknown_user_rate": cfg.max_unknown_user_rate,
                "unknown_item_rate": cfg.max_unknown_item_rate,
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {"min_requests": self.min_requests, "psi": self.psi, "js": self.js, **dict(self.max_rates)}


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def compare(reference: Reference, counts: Counts, thresholds: Thresholds) -> dict[str, Any]:
    """Drift of ``counts`` against ``reference``: per feature the shares, PSI and JS distance,
    per rate its value, and the alerts (each names the feature, the statistic, the value and
    the threshold). ``status`` is ``insufficient_data`` below ``min_requests``, else
    ``alert`` or ``ok``."""
    enough = counts.requests >= thresholds.min_requests
    alerts: list[dict[str, Any]] = []
    features: dict[str, Any] = {}
    for name in FEATURES:
        f = reference.features[name]
        cur = counts.bins[name]
        n = int(sum(cur))
        p, j = psi(f.reference, cur), js_distance(f.reference, cur)
        breaches = []
        if enough and n > 0:
            for stat, value, limit in (("psi", p, thresholds.psi), ("js", j, thresholds.js)):
                if math.isfinite(value) and value > limit:
                    breaches.append({"feature": name, "statistic": stat, "value": _num(value), "threshold": limit})
        alerts += breaches
        features[name] = {
            "kind": f.kind,
            "unit": f.unit,
            "labels": list(f.labels),
            "reference": [_num(x) for x in _shares(f.reference)],
            "current": [_num(x) for x in _shares(cur)] if n else [None] * len(cur),
            "n": n,
            "psi": _num(p),
            "js": _num(j),
            "alert": bool(breaches),
        }
    rates: dict[str, Any] = {}
    current_rates = counts.rates()
    for name in RATES:
        value = current_rates[name]
        limit = float(thresholds.max_rates[name])
        breach = enough and math.isfinite(value) and value > limit
        if breach:
            alerts.append({"feature": name, "statistic": "rate", "value": _num(value), "threshold": limit})
        rates[name] = {
            "value": _num(value),
            "reference": _num(reference.rates.get(name, float("nan"))),
            "threshold": limit,
            "alert": bool(breach),
        }
    return {
        "requests": counts.requests,
        "status": ("alert" if alerts else "ok") if enough else "insufficient_data",
        "alerts": alerts,
        "features": features,
        "rates": rates,
    }


def sum_counts(profiler: Profiler, parts: Iterable[Counts]) -> Counts:
    """The sum of several counts of one profile."""
    total = profiler.new_counts()
    for part in parts:
        total.add(part)
    return total
