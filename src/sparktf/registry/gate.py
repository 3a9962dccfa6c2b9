"""The validation gate: candidate metrics + champion metrics + thresholds -> a report.

Pure functions over plain data, so every rule is unit-tested without MLflow:
:func:`evaluate_gate` takes the two sides' metrics (:class:`ModelMetrics`, built
from a flat ``{"ndcg@10": 0.31}`` dict, a ``{"overall": ..., "slices": ...}`` dict
or an evaluation result) and the ``[gate]`` thresholds, and returns a
:class:`GateReport` that lists **every** check with the observed values, not just
the first failure.

The rules, after TFMA's value and change thresholds:

* ``min_value``: the candidate's value must be at least the floor (at most, when
  lower is better). Floors always apply.
* ``min_absolute_change``: ``change = candidate - champion`` (``champion -
  candidate`` when lower is better) must be at least the bound, so a positive
  change is an improvement either way and a negative bound allows a bounded drop.
* ``min_relative_change``: ``change / |champion|`` must be at least the bound. A
  champion value of 0 gives a relative change of 0 when the candidate ties it and
  +/-infinity otherwise.
* Change checks need a champion; with none (the first model) only floors apply,
  and a threshold that has no floor still checks that the candidate reports the
  metric at all.
* A metric that is missing, ``nan`` or infinite on either side **fails** its check;
  so does a slicing that one side lacks. Nothing is skipped silently: slice values
  with fewer queries than ``min_slice_queries`` are reported as ``skipped``.
* Slice thresholds apply to every value of the slicing (e.g. each user-activity
  bucket). When both sides report a slice's query ``count`` and the counts differ,
  the two were not evaluated on the same data and a ``same_queries`` check fails.

Why our own code: ``mlflow.validate_evaluation_results`` has no slices, needs
``mlflow.models.evaluate`` results and raises instead of returning a report; TFMA's
validator needs Apache Beam and TFX's metadata store.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sparktf.config import MetricThreshold
from sparktf.errors import RegistryError

__all__ = [
    "Check",
    "CheckKind",
    "CheckStatus",
    "GateReport",
    "ModelMetrics",
    "as_model_metrics",
    "evaluate_gate",
    "format_observed",
    "format_threshold",
    "format_value",
]

CheckKind = Literal["min_value", "min_absolute_change", "min_relative_change", "present", "same_queries"]
CheckStatus = Literal["passed", "failed", "skipped"]

#: The key slice metrics carry their number of queries under (not a metric).
COUNT_KEY = "count"

SliceMetrics = Mapping[str, Mapping[str, Mapping[str, float]]]


# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class ModelMetrics:
    """One model's metrics on the held-out data.

    Attributes:
        overall: ``{"hr@10": 0.42, "ndcg@10": 0.31, "mrr": 0.2, ...}``.
        slices: ``{slicing: {slice value: {metric: value, "count": queries}}}``.
    """

    overall: Mapping[str, float]
    slices: SliceMetrics = field(default_factory=dict)

    def value(self, metric: str, slicing: str = "", slice_value: str = "") -> float | None:
        """The metric's value, or ``None`` when it is absent or not a finite number."""
        source: Mapping[str, Any] | None = self.overall
        if slicing:
            source = self.slices.get(slicing, {}).get(slice_value)
        raw = None if source is None else source.get(metric)
        try:
            number = float(raw) if raw is not None else None
        except (TypeError, ValueError):
            return None
        return number if number is not None and math.isfinite(number) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall": {k: _jsonable(v) for k, v in self.overall.items()},
            "slices": {
                s: {v: {m: _jsonable(x) for m, x in ms.items()} for v, ms in vals.items()}
                for s, vals in self.slices.items()
            },
        }


def as_model_metrics(obj: Any) -> ModelMetrics:
    """Coerce what an ``evaluate_fn`` returns into :class:`ModelMetrics`.

    Accepts a :class:`ModelMetrics`, anything with ``overall`` and ``slices``
    attributes (:class:`sparktf.evaluation.EvaluationResult`), a mapping with an
    ``overall`` key (and optionally ``slices``; ``metrics`` is read as a synonym of
    ``overall``), or a flat mapping of metric name to number.

    Raises:
        RegistryError: ``obj`` is none of these.
    """
    if isinstance(obj, ModelMetrics):
        return obj
    if hasattr(obj, "overall") and hasattr(obj, "slices"):
        return ModelMetrics(overall=dict(obj.overall), slices=_plain_slices(obj.slices))
    if isinstance(obj, Mapping):
        for key in ("overall", "metrics"):
            if isinstance(obj.get(key), Mapping):
                return ModelMetrics(overall=dict(obj[key]), slices=_plain_slices(obj.get("slices") or {}))
        if all(isinstance(k, str) and not isinstance(v, Mapping) for k, v in obj.items()):
            return ModelMetrics(overall=dict(obj))
    raise RegistryError(
        f"Cannot read model metrics from a {type(obj).__name__} ({_preview(obj)}).",
        hint="An evaluate_fn must return an EvaluationResult, {'overall': {...}, 'slices': {...}} "
        "or a flat {'ndcg@10': 0.3, ...} mapping.",
    )


def _plain_slices(slices: Any) -> dict[str, dict[str, dict[str, float]]]:
    return {str(s): {str(v): dict(ms) for v, ms in vals.items()} for s, vals in dict(slices).items()}


def _preview(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 120 else text[:117] + "..."


def _jsonable(value: Any) -> Any:
    # JSON has no nan/inf; a report must still show that the value was there and bad.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Check:
    """One check of the gate and what was observed.

    Attributes:
        metric: the metric key (``ndcg@10``).
        kind: which bound: ``min_value``, ``min_absolute_change``,
            ``min_relative_change``, ``present`` (the metric or slicing must exist) or
            ``same_queries`` (both sides evaluated on the same slice queries).
        status: ``passed``, ``failed`` or ``skipped`` (too few queries in the slice).
        candidate: the candidate's value (``None`` when missing).
        champion: the champion's value (``None`` without a champion or when missing).
        observed: what was compared with the threshold: the value for ``min_value``,
            the direction-aware change for the change checks.
        threshold: the bound from the config.
        higher_is_better: the metric's direction.
        slicing: ``""`` for the overall metric, else the slicing (``user_activity``).
        slice_value: the slice (``high``); ``"*"`` when a whole slicing is missing.
        detail: one sentence that says what happened and, for failures, what to do.
    """

    metric: str
    kind: CheckKind
    status: CheckStatus
    candidate: float | None = None
    champion: float | None = None
    observed: float | None = None
    threshold: float | None = None
    higher_is_better: bool = True
    slicing: str = ""
    slice_value: str = ""
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status != "failed"

    @property
    def where(self) -> str:
        """``overall`` or ``slicing=value``."""
        return f"{self.slicing}={self.slice_value}" if self.slicing else "overall"

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "slice": self.where,
            "check": self.kind,
            "status": self.status,
            "candidate": _jsonable(self.candidate),
            "champion": _jsonable(self.champion),
            "observed": _jsonable(self.observed),
            "threshold": _jsonable(self.threshold),
            "higher_is_better": self.higher_is_better,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class GateReport:
    """Every check of one gate run, both sides' metrics, and the verdict.

    Attributes:
        candidate: what was validated, e.g. ``sparktf-recommender v7``.
        champion: what it was compared with, or ``None`` for the first model.
        checks: every check, in threshold order.
        candidate_metrics: the candidate's metrics as evaluated.
        champion_metrics: the champion's metrics, evaluated on the same data.
    """

    candidate: str
    champion: str | None
    checks: tuple[Check, ...]
    candidate_metrics: ModelMetrics
    champion_metrics: ModelMetrics | None = None

    @property
    def passed(self) -> bool:
        """True when at least one check ran and none failed."""
        return any(c.status == "passed" for c in self.checks) and all(c.passed for c in self.checks)

    @property
    def failed_checks(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == "failed")

    @property
    def status(self) -> Literal["passed", "failed"]:
        return "passed" if self.passed else "failed"

    def summary(self) -> str:
        """One paragraph: the verdict and each failed check with its numbers."""
        against = f"against champion {self.champion}" if self.champion else "with no champion (floors only)"
        head = (
            f"{self.candidate} {self.status} the validation gate {against}: "
            f"{sum(c.status == 'passed' for c in self.checks)} passed, {len(self.failed_checks)} failed, "
            f"{sum(c.status == 'skipped' for c in self.checks)} skipped."
        )
        if not any(c.status == "passed" for c in self.checks) and not self.failed_checks:
            head += " No check ran, so nothing shows the candidate is good enough."
        lines = [head, *(f"- {c.metric} [{c.where}] {c.kind}: {c.detail}" for c in self.failed_checks)]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "candidate": self.candidate,
            "champion": self.champion,
            "checks": [c.to_dict() for c in self.checks],
            "failed_checks": [c.to_dict() for c in self.failed_checks],
            "candidate_metrics": self.candidate_metrics.to_dict(),
            "champion_metrics": self.champion_metrics.to_dict() if self.champion_metrics else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def failed_checks_json(self) -> str:
        """The failed checks as compact JSON (the ``validation_failed_checks`` version tag)."""
        return json.dumps([c.to_dict() for c in self.failed_checks], separators=(",", ":"), allow_nan=False)

    def to_markdown(self) -> str:
        """The report as markdown: verdict, every check, then both sides' overall metrics."""
        champion = self.champion or "none (first model: only the absolute floors apply)"
        lines = [
            f"## Validation gate: {self.status.upper()}",
            "",
            f"- candidate: {self.candidate}",
            f"- champion: {champion}",
            "",
            "| result | metric | slice | check | candidate | champion | observed | threshold |",
            "|---|---|---|---|---:|---:|---:|---:|",
        ]
        for c in self.checks:
            mark = {"passed": "pass", "failed": "**FAIL**", "skipped": "skip"}[c.status]
            lines.append(
                f"| {mark} | {c.metric} | {c.where} | {c.kind} | {format_value(c.candidate)} | {format_value(c.champion)} "
                f"| {format_observed(c)} | {format_threshold(c)} |"
            )
        details = [c for c in self.checks if c.status != "passed"]
        if details:
            lines += ["", "### Why", ""] + [f"- {c.metric} [{c.where}] {c.kind}: {c.detail}" for c in details]
        lines += ["", "### Overall metrics", "", "| metric | candidate | champion |", "|---|---:|---:|"]
        champ = self.champion_metrics.overall if self.champion_metrics else {}
        for key in sorted(set(self.candidate_metrics.overall) | set(champ)):
            lines.append(
                f"| {key} | {format_value(self.candidate_metrics.overall.get(key))} | {format_value(champ.get(key))} |"
            )
        return "\n".join(lines) + "\n"


def format_value(value: Any) -> str:
    """A metric value for a report: 4 decimals, ``—`` when missing."""
    if value is None:
        return "—"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.4f}" if math.isfinite(number) else str(number)


def format_observed(c: Check) -> str:
    """What a check compared: the value, a signed change, or a signed percentage."""
    if c.observed is None:
        return "—"
    if c.kind == "min_relative_change":
        return f"{c.observed:+.2%}" if math.isfinite(c.observed) else str(c.observed)
    if c.kind == "min_absolute_change":
        return f"{c.observed:+.4f}"
    return format_value(c.observed)


def format_threshold(c: Check) -> str:
    """A check's bound with its relation (``≥ 0.3000``, ``≥ -1.00%``)."""
    if c.threshold is None:
        return "—"
    if c.kind == "min_value":
        return ("≥ " if c.higher_is_better else "≤ ") + format_value(c.threshold)
    if c.kind == "min_relative_change":
        return f"≥ {c.threshold:+.2%}"
    if c.kind == "min_absolute_change":
        return f"≥ {c.threshold:+.4f}"
    return format_value(c.threshold)


# --------------------------------------------------------------------------- rules


def _is_set(bound: float) -> bool:
    return not math.isnan(bound)


def _missing(side: str, metric: str, where: str, available: Iterable[str]) -> str:
    names = sorted(k for k in available if k != COUNT_KEY)
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "") if names else "none"
    return (
        f"{metric} is missing (or not a finite number) in the {side}'s metrics for {where}; "
        f"it reports: {shown}. A missing metric fails the check: evaluate with the cut-off the "
        "threshold names, or fix gate.thresholds."
    )


def _floor_check(t: MetricThreshold, cand: float | None, champ: float | None, **where: str) -> Check:
    ok = cand is not None and (cand >= t.min_value if t.higher_is_better else cand <= t.min_value)
    relation = ">=" if t.higher_is_better else "<="
    detail = (
        f"candidate {format_value(cand)} {relation} {format_value(t.min_value)}"
        if ok
        else f"candidate {format_value(cand)} is not {relation} the {'floor' if t.higher_is_better else 'ceiling'} "
        f"{format_value(t.min_value)}"
    )
    return Check(
        t.metric,
        "min_value",
        "passed" if ok else "failed",
        candidate=cand,
        champion=champ,
        observed=cand,
        threshold=t.min_value,
        higher_is_better=t.higher_is_better,
        detail=detail,
        **where,
    )


def _change(t: MetricThreshold, cand: float, champ: float) -> tuple[float, float]:
    """(absolute, relative) change in the good direction."""
    change = cand - champ if t.higher_is_better else champ - cand
    if champ != 0.0:
        return change, change / abs(champ)
    return change, 0.0 if change == 0.0 else math.copysign(math.inf, change)


def _change_checks(t: MetricThreshold, cand: float, champ: float, **where: str) -> list[Check]:
    absolute, relative = _change(t, cand, champ)
    out = []
    for kind, bound in _bounds(t, with_change=True):
        if kind == "min_value":
            continue
        relative_kind = kind == "min_relative_change"
        observed = relative if relative_kind else absolute
        ok = observed >= bound
        shown = f"{observed:+.2%}" if relative_kind and math.isfinite(observed) else f"{observed:+.4g}"
        need = f"{bound:+.2%}" if relative_kind else f"{bound:+.4g}"
        word = "change" if t.higher_is_better else "change (lower is better, so a drop counts as +)"
        verdict = "meets" if ok else "is below"
        out.append(
            Check(
                t.metric,
                kind,
                "passed" if ok else "failed",
                candidate=cand,
                champion=champ,
                observed=observed,
                threshold=bound,
                higher_is_better=t.higher_is_better,
                detail=f"{word} {shown} (candidate {format_value(cand)} vs champion {format_value(champ)}) {verdict} the required {need}",
                **where,
            )
        )
    return out


def _bounds(t: MetricThreshold, *, with_change: bool) -> list[tuple[CheckKind, float]]:
    """The bounds of ``t`` that are set, floors first; change bounds only ``with_change``."""
    kinds: list[tuple[CheckKind, float]] = [("min_value", t.min_value)]
    if with_change:
        kinds += [("min_absolute_change", t.min_absolute_change), ("min_relative_change", t.min_relative_change)]
    return [(kind, bound) for kind, bound in kinds if _is_set(bound)]


def _scope_checks(
    t: MetricThreshold,
    candidate: ModelMetrics,
    champion: ModelMetrics | None,
    slicing: str = "",
    slice_value: str = "",
) -> list[Check]:
    """The checks of one threshold on the overall metrics or on one slice value."""
    label = f"slice {slicing}={slice_value}" if slicing else "the overall metrics"
    cand = candidate.value(t.metric, slicing, slice_value)
    champ = champion.value(t.metric, slicing, slice_value) if champion else None
    wants_change = champion is not None and (_is_set(t.min_absolute_change) or _is_set(t.min_relative_change))

    def reported(side: ModelMetrics) -> Mapping[str, Any]:
        return side.slices.get(slicing, {}).get(slice_value, {}) if slicing else side.overall

    def check(kind: CheckKind, status: CheckStatus, detail: str, **values: float | None) -> Check:
        return Check(
            t.metric,
            kind,
            status,
            higher_is_better=t.higher_is_better,
            slicing=slicing,
            slice_value=slice_value,
            detail=detail,
            **values,
        )

    if cand is None:
        missing = _missing("candidate", t.metric, label, reported(candidate))
        bounds = _bounds(t, with_change=wants_change)
        if not bounds:
            return [check("present", "failed", missing, champion=champ)]
        return [check(kind, "failed", missing, champion=champ, threshold=bound) for kind, bound in bounds]
    checks: list[Check] = []
    if _is_set(t.min_value):
        checks.append(_floor_check(t, cand, champ, slicing=slicing, slice_value=slice_value))
    if wants_change and champ is None:
        assert champion is not None
        missing = _missing("champion", t.metric, label, reported(champion))
        detail = f"{missing} Both must be evaluated by the same evaluate_fn on the same data."
        checks += [
            check(kind, "failed", detail, candidate=cand, threshold=bound)
            for kind, bound in _bounds(t, with_change=True)
            if kind != "min_value"
        ]
    elif wants_change and champ is not None:
        checks += _change_checks(t, cand, champ, slicing=slicing, slice_value=slice_value)
    if not checks:
        note = "no champion yet, so only the metric's presence is checked (this threshold has no floor)"
        checks.append(check("present", "passed", note, candidate=cand, observed=cand))
    return checks


def _count(metrics: ModelMetrics | None, slicing: str, value: str) -> int | None:
    if metrics is None:
        return None
    raw = metrics.slices.get(slicing, {}).get(value, {}).get(COUNT_KEY)
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def _slice_checks(
    t: MetricThreshold, candidate: ModelMetrics, champion: ModelMetrics | None, min_slice_queries: int
) -> list[Check]:
    """The checks of one threshold on every value of its slicing."""
    slicing = t.slice

    def whole_slicing_missing(detail: str) -> Check:
        return Check(
            t.metric,
            "present",
            "failed",
            higher_is_better=t.higher_is_better,
            slicing=slicing,
            slice_value="*",
            detail=detail,
        )

    if slicing not in candidate.slices:
        shown = ", ".join(sorted(candidate.slices)) or "none"
        return [
            whole_slicing_missing(
                f"the candidate's metrics have no slicing {slicing!r} (slicings reported: {shown}); "
                "evaluate with that slicing or fix gate.thresholds."
            )
        ]
    checks: list[Check] = []
    values = set(candidate.slices[slicing])
    wants_change = champion is not None and (_is_set(t.min_absolute_change) or _is_set(t.min_relative_change))
    if champion is not None and slicing in champion.slices:
        values |= set(champion.slices[slicing])
    elif champion is not None:
        if wants_change:
            checks.append(
                whole_slicing_missing(
                    f"the champion's metrics have no slicing {slicing!r}, so no change can be measured; "
                    "both must be evaluated by the same evaluate_fn on the same data."
                )
            )
        champion = None  # the check above stands for every slice value
    for value in sorted(values):
        n_cand = _count(candidate, slicing, value)
        n_champ = _count(champion, slicing, value)
        if n_cand is not None and n_champ is not None and n_cand != n_champ:
            checks.append(
                Check(
                    t.metric,
                    "same_queries",
                    "failed",
                    candidate=float(n_cand),
                    champion=float(n_champ),
                    higher_is_better=t.higher_is_better,
                    slicing=slicing,
                    slice_value=value,
                    detail=f"the candidate was evaluated on {n_cand} queries of this slice and the champion on "
                    f"{n_champ}: they were not evaluated on the same data, so their metrics cannot be compared.",
                )
            )
            continue
        scoped = _scope_checks(t, candidate, champion, slicing, value)
        if min_slice_queries and n_cand is not None and n_cand < min_slice_queries:
            note = f"only {n_cand} queries in this slice (gate.min_slice_queries = {min_slice_queries}); not checked."
            scoped = [
                dataclasses.replace(c, status="skipped", detail=f"{note} It would have {c.status}: {c.detail}")
                for c in scoped
            ]
        checks.extend(scoped)
    return checks


def evaluate_gate(
    candidate: Any,
    champion: Any | None,
    thresholds: Sequence[MetricThreshold],
    *,
    min_slice_queries: int = 0,
    candidate_label: str = "candidate",
    champion_label: str | None = None,
) -> GateReport:
    """Run every check of the gate.

    Args:
        candidate: the candidate's metrics (anything :func:`as_model_metrics` takes).
        champion: the champion's metrics on the same data, or ``None`` when there is
            no champion yet (then only the floors apply).
        thresholds: the ``[[gate.thresholds]]`` of the config.
        min_slice_queries: slice values with fewer candidate queries are reported as
            skipped.
        candidate_label: how the report names the candidate (``name v7``).
        champion_label: how it names the champion; defaults to ``"champion"`` when
            there is one.

    Returns:
        A :class:`GateReport`; ``report.passed`` is the verdict.

    Raises:
        RegistryError: the metrics cannot be read.
    """
    cand = as_model_metrics(candidate)
    champ = as_model_metrics(champion) if champion is not None else None
    checks: list[Check] = []
    for t in thresholds:
        if t.slice:
            checks.extend(_slice_checks(t, cand, champ, min_slice_queries))
        else:
            checks.extend(_scope_checks(t, cand, champ))
    return GateReport(
        candidate=candidate_label,
        champion=(champion_label or "champion") if champ is not None else None,
        checks=tuple(checks),
        candidate_metrics=cand,
        champion_metrics=champ,
    )
