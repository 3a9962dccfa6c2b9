"""The profile's statistics against known truth (issue 19): PSI and JS distance by their
definitions and scipy, binning, the sliding window, and the alert rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparktf.monitoring.profile import (
    FEATURES,
    Profiler,
    Thresholds,
    build_reference,
    compare,
    js_distance,
    load_reference,
    psi,
    quantile_edges,
    write_reference,
)
from sparktf.monitoring.window import OnlineWindow

ITEMS = [f"i{i}" for i in range(60)]
COUNTS = np.arange(60, 0, -1)
CATEGORY = {x: f"c{i % 5}" for i, x in enumerate(ITEMS)}
PRICE = {x: i % 4 + 1 for i, x in enumerate(ITEMS)}


def _histories(rng: np.random.Generator, n: int, p: np.ndarray | None = None) -> list[list[str]]:
    p = COUNTS / COUNTS.sum() if p is None else p
    return [[ITEMS[j] for j in rng.choice(60, size=int(rng.integers(1, 30)), p=p)] for _ in range(n)]


def _reference(seed: int = 0, n: int = 3000) -> object:
    rng = np.random.default_rng(seed)
    return build_reference(
        model_kind="sequential",
        split="validation",
        item_ids=ITEMS,
        item_counts=COUNTS,
        item_category=CATEGORY,
        item_price_bucket=PRICE,
        histories=_histories(rng, n),
        top1_scores=rng.normal(2.0, 0.5, n),
        history_cap=20,
    )


counts = st.lists(st.integers(0, 1000), min_size=2, max_size=12)


@settings(max_examples=200, deadline=None)
@given(counts, st.data())
def test_psi_and_js_follow_their_definitions(p: list[int], data: st.DataObject) -> None:
    from scipy.spatial.distance import jensenshannon

    q = data.draw(st.lists(st.integers(0, 1000), min_size=len(p), max_size=len(p)))
    if sum(p) == 0 or sum(q) == 0:
        assert math.isnan(psi(p, q)) and math.isnan(js_distance(p, q))
        return
    ps, qs = np.array(p) / sum(p), np.array(q) / sum(q)
    # PSI is the symmetrised KL divergence of the floored shares.
    pf, qf = np.maximum(ps, 1e-4), np.maximum(qs, 1e-4)
    assert psi(p, q) == pytest.approx(float(np.sum(pf * np.log(pf / qf)) + np.sum(qf * np.log(qf / pf))), abs=1e-9)
    assert psi(p, q) >= 0 and psi(p, p) == pytest.approx(0.0, abs=1e-12)
    assert js_distance(p, q) == pytest.approx(float(jensenshannon(ps, qs)), abs=1e-9)
    assert 0.0 <= js_distance(p, q) <= math.sqrt(math.log(2)) + 1e-12


def test_quantile_edges_give_equal_bins_and_never_lose_a_value() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=10_000)
    edges = quantile_edges(values, 10)
    assert len(edges) == 9
    share = np.bincount(np.searchsorted(edges, values, side="right"), minlength=10) / values.size
    assert np.allclose(share, 0.1, atol=0.002)
    # Integer data with ties: bins merge, every value lands in one.
    ints = rng.integers(1, 5, size=1000)
    edges = quantile_edges(ints, 10, integer=True)
    assert edges == (1.5, 2.5, 3.5)


def test_a_sample_of_the_reference_distribution_stays_under_the_thresholds() -> None:
    """Same distribution, seeded repeats: no feature alerts (false alerts are the cost of a
    monitor nobody trusts); a shifted distribution alerts on the right features."""
    ref = _reference()
    thresholds = Thresholds(min_requests=500)
    for seed in range(1, 6):
        rng = np.random.default_rng(seed)
        prof = Profiler(ref, ITEMS)
        c = prof.new_counts()
        for h, s in zip(_histories(rng, 1000), rng.normal(2.0, 0.5, 1000), strict=True):
            prof.observe(c, h, top1=float(s), fallback=False, unknown_user=False)
        out = compare(ref, c, thresholds)
        assert out["status"] == "ok", (seed, out["alerts"])
    # Only items of category c2 and scores lower by one standard deviation.
    rng = np.random.default_rng(9)
    p = np.array([float(CATEGORY[x] == "c2") for x in ITEMS])
    prof = Profiler(ref, ITEMS)
    c = prof.new_counts()
    for h, s in zip(_histories(rng, 600, p / p.sum()), rng.normal(1.5, 0.5, 600), strict=True):
        prof.observe(c, h, top1=float(s), fallback=False, unknown_user=False)
    out = compare(ref, c, thresholds)
    alerting = {a["feature"] for a in out["alerts"]}
    assert {"history_category", "top1_score"} <= alerting
    assert "history_length" not in alerting and "unknown_item_rate" not in alerting
    assert all(a["value"] > a["threshold"] for a in out["alerts"])
    # Below min_requests nothing alerts, whatever the drift.
    assert compare(ref, c, Thresholds(min_requests=601))["status"] == "insufficient_data"


def test_rates_count_unknown_items_fallbacks_and_unknown_users() -> None:
    ref = _reference()
    prof = Profiler(ref, ITEMS)
    c = prof.new_counts()
    prof.observe(c, ["i1", "new", "i2", "new2"], top1=1.0, fallback=False, unknown_user=False)
    prof.observe(c, [], top1=None, fallback=True, unknown_user=True)
    prof.observe(c, ["i3"], top1=None, fallback=True, unknown_user=None)
    assert c.rates() == {"fallback_rate": 2 / 3, "unknown_user_rate": 1 / 2, "unknown_item_rate": 2 / 5}
    assert sum(c.bins["top1_score"]) == 1 and sum(c.bins["history_category"]) == 3
    # The history is capped at what the model reads.
    c2 = prof.new_counts()
    prof.observe(c2, ["i1"] * 50, top1=None, fallback=False, unknown_user=None)
    assert c2.history_items == 20


def test_the_profile_round_trips_through_its_files(tmp_path: object) -> None:
    ref = _reference()
    write_reference(str(tmp_path), ref)
    back = load_reference(str(tmp_path))
    assert back is not None and back.to_dict() == ref.to_dict()
    assert np.array_equal(back.item_bins, ref.item_bins)
    assert load_reference(str(tmp_path / "none")) is None
    (tmp_path / "reference_profile.json").write_text("{")
    with pytest.raises(ValueError, match="reference_profile.json"):
        load_reference(str(tmp_path))


def test_the_window_forgets_what_is_older_than_it() -> None:
    now = [1000.0]
    ref = _reference(n=500)
    window = OnlineWindow(ref, ITEMS, window_s=60, slots=6, clock=lambda: now[0])
    for _ in range(10):
        window.observe(["i1"], top1=1.0, fallback=False, unknown_user=None)
    now[0] += 30
    for _ in range(5):
        window.observe(["i1"], top1=1.0, fallback=False, unknown_user=None)
    assert window.snapshot().requests == 15
    now[0] += 35  # the first ten are now more than a window old
    assert window.snapshot().requests == 5
    now[0] += 600
    assert window.snapshot().requests == 0
    assert set(window.status(Thresholds())["features"]) == set(FEATURES)
