"""The experiment's decision rule and guardrails (issue 17): pure functions over a report."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from sparktf.experiments.report import DecisionRule, decide, guardrails_from_metrics, order_agreement
from sparktf.serving.metrics import ServerMetrics

RULE = DecisionRule(
    control="popular",
    alpha=0.05,
    srm_alpha=0.001,
    min_users_per_arm=100,
    min_lift=0.0,
    max_error_rate=0.01,
    max_p99_latency_ms=250.0,
)
MODELS = {"popular": "popular", "seq": "champion"}


def _arm(
    users: int, lift: tuple[float, float, float] | None, error: float | None = 0.0, p99: float | None = 20.0
) -> Any:
    out: dict[str, Any] = {"users": users, "guardrail": {"error_rate": error, "p99_latency_ms": p99}, "lift": {}}
    if lift is not None:
        rel, lo, hi = lift
        out["lift"]["ctr"] = {"relative": rel, "relative_ci_low": lo, "relative_ci_high": hi}
    return out


def _report(**arms: Any) -> dict[str, Any]:
    base = {"popular": _arm(500, None), "seq": _arm(510, (0.4, 0.2, 0.6))}
    base.update(arms)
    return {
        "arms": base,
        "sample_ratio": {"arms": list(base), "observed": [500, 510], "expected": [505, 505], "p_value": 0.75},
        "users_in_several_arms": 0,
    }


def test_a_significant_winner_is_promoted() -> None:
    d = decide(_report(), RULE, MODELS)
    assert d["decision"] == "promote" and d["arm"] == "seq" and "+40.0%" in d["reasons"][0]


def test_a_sample_ratio_mismatch_stops_before_any_lift_is_read() -> None:
    report = _report()
    report["sample_ratio"] |= {"observed": [600, 400], "p_value": 2.5e-10}
    d = decide(report, RULE, MODELS)
    assert d["decision"] == "stop" and "sample ratio mismatch" in d["reasons"][0]
    report = _report()
    report["users_in_several_arms"] = 3
    assert decide(report, RULE, MODELS)["decision"] == "stop"


@pytest.mark.parametrize(("error", "p99", "what"), [(0.05, 20.0, "error rate"), (0.0, 500.0, "p99 latency")])
def test_a_failed_guardrail_stops_the_arm(error: float, p99: float, what: str) -> None:
    d = decide(_report(seq=_arm(510, (0.4, 0.2, 0.6), error, p99)), RULE, MODELS)
    assert d["decision"] == "stop" and d["arm"] == "seq" and what in d["reasons"][0]


def test_too_few_users_or_unknown_guardrails_keep_the_experiment_running() -> None:
    assert decide(_report(seq=_arm(50, (0.4, 0.2, 0.6))), RULE, MODELS)["decision"] == "keep"
    unknown = decide(_report(seq=_arm(510, (0.4, 0.2, 0.6), None, None)), RULE, MODELS)
    assert unknown["decision"] == "keep" and "guardrails unknown" in unknown["reasons"][0]


def test_an_inconclusive_or_losing_challenger() -> None:
    assert decide(_report(seq=_arm(510, (0.05, -0.1, 0.2))), RULE, MODELS)["decision"] == "keep"
    assert decide(_report(seq=_arm(510, (-0.3, -0.5, -0.1))), RULE, MODELS)["decision"] == "stop"
    strict = dataclasses.replace(RULE, min_lift=0.3)
    assert decide(_report(), strict, MODELS)["decision"] == "keep"  # lower bound 0.2 < min_lift 0.3


def test_a_winning_baseline_is_not_promoted() -> None:
    report = _report(cooc=_arm(505, (0.5, 0.3, 0.7)), seq=_arm(510, (0.1, -0.1, 0.3)))
    report["sample_ratio"] |= {"observed": [500, 505, 510], "expected": [505, 505, 505]}
    d = decide(report, RULE, {**MODELS, "cooc": "cooccurrence"})
    assert d["decision"] == "keep" and d["arm"] == "cooc" and "baseline" in d["reasons"][1]


def test_guardrails_are_read_from_the_servers_own_metrics() -> None:
    metrics = ServerMetrics()
    for _ in range(98):
        metrics.arm_requests.labels("e", "seq", "ok").inc()
        metrics.arm_latency.labels("e", "seq").observe(0.004)
    metrics.arm_requests.labels("e", "seq", "error").inc(2)
    metrics.arm_latency.labels("e", "seq").observe(0.3)
    metrics.arm_latency.labels("e", "seq").observe(0.3)
    metrics.arm_requests.labels("other", "seq", "error").inc(50)  # another experiment's
    body, _ = metrics.render()
    g = guardrails_from_metrics(body.decode(), "e")["seq"]
    assert g.requests == 100 and g.error_rate == pytest.approx(0.02)
    assert g.p99_latency_ms == pytest.approx(500.0)  # the 99th of 100 falls in the (250, 500] ms bucket


def test_order_agreement() -> None:
    assert order_agreement({"a": 0.02, "b": 0.01}, {"a": 0.6, "b": 0.1})["agrees"] is True
    out = order_agreement({"a": 0.02, "b": 0.01, "c": 0.015}, {"a": 0.6, "b": 0.7, "c": None})
    assert out["agrees"] is False and out["by_online_ctr"] == ["a", "b"]
    assert order_agreement({"a": 0.02}, {"a": 0.6})["agrees"] is None


def _pair(rel: float, lo: float, hi: float) -> dict[str, float]:
    return {
        "relative": rel,
        "relative_ci_low": lo,
        "relative_ci_high": hi,
        "absolute_ci_low": lo,
        "absolute_ci_high": hi,
    }


def test_a_winner_must_also_beat_the_champions_own_arm() -> None:
    """popular (control) vs the champion's arm vs a challenger: both beat popular, but the
    challenger is promoted only if it beats the champion's arm too."""
    report = _report(champ=_arm(505, (0.5, 0.3, 0.7)), seq=_arm(510, (0.6, 0.4, 0.8)))
    report["sample_ratio"] |= {"observed": [500, 505, 510], "expected": [505, 505, 505]}
    models = {**MODELS, "champ": "champion"}
    report["pairwise_ctr"] = {"seq": {"champ": _pair(0.07, -0.1, 0.25)}}
    d = decide(report, RULE, models, incumbent="champ")
    assert d["decision"] == "keep" and "keep the champion" in d["reasons"][1]
    report["pairwise_ctr"] = {"seq": {"champ": _pair(0.3, 0.1, 0.5)}}
    assert decide(report, RULE, models, incumbent="champ")["decision"] == "promote"
    champ_best = _report(champ=_arm(505, (0.9, 0.7, 1.1)), seq=_arm(510, (0.6, 0.4, 0.8)))
    champ_best["sample_ratio"] = report["sample_ratio"]
    d = decide(champ_best, RULE, models, incumbent="champ")
    assert d["decision"] == "keep" and "serves the champion already" in d["reasons"][1]


def test_order_agreement_tells_ties_from_contradictions() -> None:
    online = {"a": 0.0106, "b": 0.0107, "p": 0.0037}
    offline = {"a": 0.66, "b": 0.65, "p": 0.27}
    pairwise = {
        "a": {"b": _pair(-0.01, -0.2, 0.18), "p": _pair(1.8, 1.1, 2.6)},
        "b": {"p": _pair(1.9, 1.1, 2.6)},
    }
    out = order_agreement(online, offline, pairwise)
    assert out["agrees"] is False and out["ties"] == [["a", "b"]] and out["contradictions"] == []
    pairwise["a"]["b"] = _pair(-0.3, -0.5, -0.1)
    assert order_agreement(online, offline, pairwise)["contradictions"] == [["a", "b"]]
