"""The validation gate's rules, on plain metric dicts (no MLflow, Spark or TensorFlow)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparktf.config import MetricThreshold
from sparktf.errors import RegistryError
from sparktf.registry.gate import GateReport, ModelMetrics, as_model_metrics, evaluate_gate

NAN = math.nan


def _t(metric: str = "ndcg@10", **kw: object) -> MetricThreshold:
    return MetricThreshold(metric=metric, **kw)  # type: ignore[arg-type]


def _by(report: GateReport, kind: str, where: str = "overall", metric: str | None = None) -> list[str]:
    return [
        c.status
        for c in report.checks
        if c.kind == kind and c.where == where and (metric is None or c.metric == metric)
    ]


# --------------------------------------------------------------------------- floors and changes


def test_better_candidate_passes_every_check_with_both_values_recorded() -> None:
    thresholds = [_t(min_value=0.1, min_absolute_change=0.0, min_relative_change=0.01)]
    report = evaluate_gate({"ndcg@10": 0.33}, {"ndcg@10": 0.30}, thresholds)
    assert report.passed and report.status == "passed"
    assert [c.kind for c in report.checks] == ["min_value", "min_absolute_change", "min_relative_change"]
    rel = report.checks[2]
    assert rel.candidate == 0.33 and rel.champion == 0.30
    assert rel.observed == pytest.approx((0.33 - 0.30) / 0.30)


def test_worse_candidate_fails_the_change_check_and_the_report_says_which_with_numbers() -> None:
    report = evaluate_gate(
        {"ndcg@10": 0.27, "hr@10": 0.5},
        {"ndcg@10": 0.30, "hr@10": 0.5},
        [_t(min_value=0.0, min_relative_change=-0.05), _t("hr@10", min_relative_change=-0.05)],
    )
    assert not report.passed
    (failed,) = report.failed_checks
    assert (failed.metric, failed.kind, failed.where) == ("ndcg@10", "min_relative_change", "overall")
    assert failed.observed == pytest.approx(-0.1)
    assert failed.threshold == -0.05
    assert "-10.00%" in failed.detail and "0.2700" in failed.detail and "0.3000" in failed.detail
    assert "ndcg@10 [overall] min_relative_change" in report.summary()


def test_without_a_champion_only_the_floors_apply() -> None:
    thresholds = [_t(min_value=0.2, min_relative_change=0.5), _t("hr@10", min_absolute_change=0.1)]
    report = evaluate_gate({"ndcg@10": 0.25, "hr@10": 0.4}, None, thresholds)
    assert report.passed and report.champion is None
    assert [(c.metric, c.kind) for c in report.checks] == [("ndcg@10", "min_value"), ("hr@10", "present")]
    below = evaluate_gate({"ndcg@10": 0.15, "hr@10": 0.4}, None, thresholds)
    assert not below.passed and [c.kind for c in below.failed_checks] == ["min_value"]


def test_lower_is_better_uses_a_ceiling_and_counts_a_drop_as_improvement() -> None:
    t = _t("latency_ms", higher_is_better=False, min_value=50.0, min_absolute_change=0.0)
    faster = evaluate_gate({"latency_ms": 30.0}, {"latency_ms": 40.0}, [t])
    assert faster.passed and faster.checks[1].observed == pytest.approx(10.0)
    slower = evaluate_gate({"latency_ms": 45.0}, {"latency_ms": 40.0}, [t])
    assert [c.kind for c in slower.failed_checks] == ["min_absolute_change"]
    over_ceiling = evaluate_gate({"latency_ms": 60.0}, {"latency_ms": 70.0}, [t])
    assert [c.kind for c in over_ceiling.failed_checks] == ["min_value"]


def test_relative_change_against_a_zero_champion() -> None:
    t = _t(min_relative_change=0.0)
    assert evaluate_gate({"ndcg@10": 0.0}, {"ndcg@10": 0.0}, [t]).checks[0].observed == 0.0
    up = evaluate_gate({"ndcg@10": 0.1}, {"ndcg@10": 0.0}, [t])
    assert up.passed and up.checks[0].observed == math.inf
    strict = evaluate_gate({"ndcg@10": 0.0}, {"ndcg@10": 0.0}, [_t(min_relative_change=0.01)])
    assert not strict.passed


def test_a_tie_meets_a_zero_bound_and_fails_a_positive_one() -> None:
    same = {"ndcg@10": 0.3}
    assert evaluate_gate(same, same, [_t(min_absolute_change=0.0)]).passed
    assert not evaluate_gate(same, same, [_t(min_absolute_change=1e-9)]).passed


# --------------------------------------------------------------------------- missing metrics fail


@pytest.mark.parametrize("bad", [None, NAN, math.inf, "0.3x"])
def test_a_missing_or_non_finite_candidate_metric_fails_instead_of_passing(bad: object) -> None:
    cand = {"hr@10": 0.5} if bad is None else {"hr@10": 0.5, "ndcg@10": bad}
    report = evaluate_gate(cand, {"ndcg@10": 0.3, "hr@10": 0.5}, [_t(min_value=0.0, min_relative_change=-1.0 + 1e-9)])
    assert not report.passed
    assert {c.kind for c in report.failed_checks} == {"min_value", "min_relative_change"}
    assert all("missing" in c.detail and "hr@10" in c.detail for c in report.failed_checks)


def test_a_metric_missing_on_the_champion_fails_the_change_check() -> None:
    report = evaluate_gate({"ndcg@10": 0.3}, {"hr@10": 0.5}, [_t(min_value=0.0, min_absolute_change=-1.0)])
    assert _by(report, "min_value") == ["passed"]
    assert _by(report, "min_absolute_change") == ["failed"]
    assert "champion" in report.failed_checks[0].detail


def test_a_threshold_without_floor_still_requires_the_metric_with_no_champion() -> None:
    report = evaluate_gate({"hr@10": 0.4}, None, [_t(min_relative_change=0.0)])
    assert not report.passed and report.failed_checks[0].kind == "present"


def test_a_gate_with_no_check_run_does_not_pass() -> None:
    assert not evaluate_gate({"ndcg@10": 0.3}, None, []).passed


# --------------------------------------------------------------------------- slices


def _sliced(low: float, high: float, n_low: int = 40, n_high: int = 60, overall: float = 0.3) -> dict[str, object]:
    return {
        "overall": {"ndcg@10": overall},
        "slices": {
            "user_activity": {
                "low": {"ndcg@10": low, "count": n_low},
                "high": {"ndcg@10": high, "count": n_high},
            }
        },
    }


def test_a_slice_regression_fails_even_when_the_overall_metric_improves() -> None:
    thresholds = [_t(min_relative_change=0.0), _t(slice="user_activity", min_relative_change=-0.05)]
    report = evaluate_gate(_sliced(0.10, 0.50, overall=0.35), _sliced(0.20, 0.40, overall=0.30), thresholds)
    assert _by(report, "min_relative_change") == ["passed"]
    assert _by(report, "min_relative_change", "user_activity=high") == ["passed"]
    (failed,) = report.failed_checks
    assert failed.where == "user_activity=low" and failed.observed == pytest.approx(-0.5)
    assert "user_activity=low" in report.to_markdown() and "-50.00%" in report.to_markdown()


def test_slice_floors_apply_per_slice_without_a_champion() -> None:
    report = evaluate_gate(_sliced(0.05, 0.5), None, [_t(slice="user_activity", min_value=0.1)])
    assert _by(report, "min_value", "user_activity=low") == ["failed"]
    assert _by(report, "min_value", "user_activity=high") == ["passed"]


def test_a_missing_slicing_or_slice_value_fails() -> None:
    t = _t(slice="user_activity", min_relative_change=-0.05)
    no_slicing = evaluate_gate({"ndcg@10": 0.3}, _sliced(0.2, 0.4), [t])
    assert [(c.where, c.kind) for c in no_slicing.failed_checks] == [("user_activity=*", "present")]
    champion_lacks_it = evaluate_gate(_sliced(0.2, 0.4), {"ndcg@10": 0.3}, [t])
    assert [(c.where, c.kind) for c in champion_lacks_it.failed_checks] == [("user_activity=*", "present")]
    cand = _sliced(0.2, 0.4)
    del cand["slices"]["user_activity"]["low"]  # type: ignore[index]
    value_gone = evaluate_gate(cand, _sliced(0.2, 0.4), [t])
    assert [c.where for c in value_gone.failed_checks] == ["user_activity=low"]


def test_different_slice_counts_mean_different_data_and_fail() -> None:
    report = evaluate_gate(
        _sliced(0.2, 0.4, n_low=40), _sliced(0.2, 0.4, n_low=39), [_t(slice="user_activity", min_value=0.0)]
    )
    (failed,) = report.failed_checks
    assert failed.kind == "same_queries" and (failed.candidate, failed.champion) == (40.0, 39.0)


def test_small_slices_are_reported_as_skipped_not_dropped() -> None:
    report = evaluate_gate(
        _sliced(0.0, 0.5, n_low=3),
        _sliced(0.3, 0.5, n_low=3),
        [_t(slice="user_activity", min_relative_change=-0.05)],
        min_slice_queries=10,
    )
    assert report.passed
    (skipped,) = [c for c in report.checks if c.status == "skipped"]
    assert skipped.where == "user_activity=low" and "3 queries" in skipped.detail and "failed" in skipped.detail


# --------------------------------------------------------------------------- inputs


def test_metrics_come_from_flat_dicts_nested_dicts_and_result_objects() -> None:
    class Result:
        def __init__(self) -> None:
            self.overall = {"ndcg@10": 0.3}
            self.slices = {"user_activity": {"low": {"ndcg@10": 0.2, "count": 5}}}

    assert as_model_metrics({"ndcg@10": 0.3}).overall == {"ndcg@10": 0.3}
    assert as_model_metrics({"metrics": {"ndcg@10": 0.3}}).overall == {"ndcg@10": 0.3}
    slices = Result().slices
    nested = as_model_metrics({"overall": {"ndcg@10": 0.3}, "slices": slices})
    assert nested == as_model_metrics(Result()) == ModelMetrics({"ndcg@10": 0.3}, slices)
    with pytest.raises(RegistryError, match="Cannot read model metrics from a list"):
        as_model_metrics([0.3])


# --------------------------------------------------------------------------- properties

values = st.floats(min_value=-10, max_value=10, allow_nan=False)
bounds = st.one_of(st.just(NAN), st.floats(min_value=-0.9, max_value=2, allow_nan=False))


@st.composite
def thresholds(draw: st.DrawFn) -> MetricThreshold:
    floor, absolute, relative = draw(bounds), draw(bounds), draw(bounds)
    if all(math.isnan(b) for b in (floor, absolute, relative)):
        floor = draw(values)
    return _t("m", min_value=floor, min_absolute_change=absolute, min_relative_change=relative)


@settings(max_examples=200, deadline=None)
@given(cand=values, champ=values, t=thresholds())
def test_direction_is_symmetric(cand: float, champ: float, t: MetricThreshold) -> None:
    """Negating a metric and flipping its direction gives the same verdict on every check."""
    mirrored = MetricThreshold(
        metric="m",
        higher_is_better=False,
        min_value=-t.min_value,
        min_absolute_change=t.min_absolute_change,
        min_relative_change=t.min_relative_change,
    )
    up = evaluate_gate({"m": cand}, {"m": champ}, [t])
    down = evaluate_gate({"m": -cand}, {"m": -champ}, [mirrored])
    assert [(c.kind, c.status) for c in up.checks] == [(c.kind, c.status) for c in down.checks]


@settings(max_examples=200, deadline=None)
@given(cand=values, champ=values, gain=st.floats(min_value=0, max_value=5), t=thresholds())
def test_a_better_candidate_never_fares_worse(cand: float, champ: float, gain: float, t: MetricThreshold) -> None:
    before = evaluate_gate({"m": cand}, {"m": champ}, [t])
    after = evaluate_gate({"m": cand + gain}, {"m": champ}, [t])
    if before.passed:
        assert after.passed


@settings(max_examples=200, deadline=None)
@given(cand=values, champ=st.one_of(st.none(), values), t=thresholds())
def test_the_verdict_is_exactly_no_failed_check(cand: float, champ: float | None, t: MetricThreshold) -> None:
    report = evaluate_gate({"m": cand}, None if champ is None else {"m": champ}, [t])
    assert report.passed == (not report.failed_checks)
    if champ is None:
        assert {c.kind for c in report.checks} <= {"min_value", "present"}
