"""The pure parts of ``sparktf monitor report``: skew measures, quality from moment sums, the
page's escaping, and the SVG charts staying inside their boxes (issue 19)."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest

from sparktf.monitoring.html import bar_chart, line_chart, render
from sparktf.monitoring.report import quality_from_row, version_label
from sparktf.monitoring.skew import history_skew, parse_context


def test_history_skew_on_known_histories() -> None:
    same = history_skew(["a", "b", "c"], ["a", "b", "c"], 20)
    assert (same.exact, same.jaccard, same.length_diff) == (True, 1.0, 0)
    reordered = history_skew(["b", "a"], ["a", "b"], 20)
    assert (reordered.exact, reordered.jaccard, reordered.length_diff) == (False, 1.0, 0)
    partial = history_skew(["a", "x"], ["a", "b", "c"], 20)  # {a} of {a, b, c, x}
    assert (partial.exact, partial.jaccard, partial.length_diff) == (False, 0.25, -1)
    # Only the last max_history of each count: the server's longer history is the same then.
    capped = history_skew(["old", "a", "b"], ["a", "b"], 2)
    assert (capped.exact, capped.jaccard, capped.length_diff) == (True, 1.0, 0)
    nothing = history_skew([], [], 5)
    assert (nothing.exact, nothing.jaccard, nothing.length_diff) == (True, 1.0, 0)
    assert history_skew(["a"], [], 5).jaccard == 0.0


def test_contexts_and_labels() -> None:
    assert parse_context('["i1", "i2", 3]') == ("i1", "i2", "3")
    assert parse_context(None) == () and parse_context("[]") == ()
    assert parse_context("{oops") is None and parse_context('{"a": 1}') is None
    assert version_label("3", "control") == "3" and version_label(None, "popular") == "baseline:popular"


def test_quality_from_known_counts_is_the_delta_method_by_hand() -> None:
    impressions = np.array([10.0, 5.0, 5.0, 20.0])
    clicks = np.array([1.0, 0.0, 2.0, 3.0])
    row = {"users": 4, "requests": 9, "impressions": impressions.sum(), "impressions_sq": impressions @ impressions}
    for column, y in (("clicks", clicks), ("carts", clicks // 2), ("purchases", np.zeros(4))):
        row |= {column: y.sum(), f"{column}_sq": y @ y, f"{column}_x": y @ impressions}
    q = quality_from_row(row, 0.05)
    assert (q["users"], q["requests"], q["impressions"], q["clicks"]) == (4, 9, 40, 6)
    # By hand: R = Σy / Σx; Var(R) = Var_i[(y_i - R x_i) / x̄] / n.
    r = 6 / 40
    lin = (clicks - r * impressions) / impressions.mean()
    se = math.sqrt(lin.var(ddof=1) / 4)
    ctr = q["rates"]["ctr"]
    assert ctr["value"] == pytest.approx(0.15)
    assert ctr["se"] == pytest.approx(se)
    assert (ctr["ci_low"], ctr["ci_high"]) == pytest.approx((r - 1.959964 * se, r + 1.959964 * se), rel=1e-6)
    # No purchase at all: the exact Poisson upper bound, not a [0, 0] interval.
    assert q["rates"]["purchase_rate"]["ci_high"] == pytest.approx(-math.log(0.025) / 40)


_COORD = re.compile(r'\b(x|y|x1|x2|y1|y2|cx|cy|width|height)="(-?[\d.]+)"')
_POINTS = re.compile(r'points="([^"]*)"')


def _inside(svg: str) -> None:
    """Every coordinate of the SVG lies in its own width × height box."""
    width = float(re.search(r'<svg[^>]*width="([\d.]+)"', svg).group(1))  # type: ignore[union-attr]
    height = float(re.search(r'<svg[^>]*height="([\d.]+)"', svg).group(1))  # type: ignore[union-attr]
    for name, value in _COORD.findall(svg):
        limit = width if name in ("x", "x1", "x2", "cx", "width") else height
        assert 0.0 <= float(value) <= limit + 1e-9, (name, value, width, height)
    for points in _POINTS.findall(svg):
        for pair in points.split():
            x, y = (float(v) for v in pair.split(","))
            assert 0.0 <= x <= width and 0.0 <= y <= height, (pair, width, height)


def test_line_chart_stays_in_its_box_and_breaks_at_gaps() -> None:
    t = 1_800_000_000.0
    svg = line_chart(
        {
            "a": [(t, 0.1, 0.05, 0.2), (t + 3600, None, None, None), (t + 7200, 0.3, -5.0, 9.0)],
            "b": [(t, math.nan, 0.0, 1.0), (t + 3600, 1e9, None, None), (t + 7200, -1e9, math.inf, 2.0)],
        },
        width=300,
        height=150,
        thresholds=[("limit", 0.25), ("none", math.nan)],
        title="<t>",
    )
    _inside(svg)
    assert svg.count("<polyline") == 3  # a: two runs around its gap; b: one run after its NaN
    assert "&lt;t&gt;" in svg and "<t>" not in svg
    _inside(line_chart({}, width=200, height=100))  # nothing to draw: still an empty, valid frame
    _inside(line_chart({"one": [(t, 0.5, 0.4, 0.6)]}, width=200, height=100))


def test_bar_chart_stays_in_its_box() -> None:
    svg = bar_chart(
        ["head", "torso", "a very long category name that is cut", "<b>"],
        {"reference": [0.5, 0.3, 0.2, None], "current": [1.0, math.nan, 0.0, 2.0]},
        width=320,
        title="shares",
    )
    _inside(svg)
    assert "&lt;b&gt;" in svg and "<b>" not in svg
    assert svg.count("<rect") == 6  # the None and NaN draw nothing


def _report(evil: str) -> dict[str, Any]:
    rate = {"value": 0.1, "se": 0.01, "ci_low": 0.08, "ci_high": 0.12}
    hours = [{"t": 1_800_000_000 + 3600 * i, "rates": {m: rate for m in ("ctr", "add_to_cart_rate", "purchase_rate")}}
             for i in range(3)]  # fmt: skip
    feature = {
        "kind": "categorical", "unit": "history item", "labels": [evil, "b"], "reference": [0.5, 0.5],
        "current": [0.9, 0.1], "n": 10, "psi": 0.6, "js": 0.3, "alert": True,
    }  # fmt: skip
    alert = {"feature": evil, "statistic": "psi", "value": 0.6, "threshold": 0.25}
    return {
        "generated_at": evil,
        "window": {"since": evil, "until": "x", "hours": 1},
        "events_path": evil,
        "alpha": 0.05,
        "thresholds": {"psi": 0.25, "js": 0.1, "min_requests": 1},
        "versions": [evil],
        "quality": {
            evil: {"total": {"requests": 3, "users": 2, "impressions": 9, "rates": hours[0]["rates"]}, "hours": hours}
        },
        "drift": {
            evil: {
                "reference": {"source": evil, "model_kind": evil, "split": "validation", "queries": 5},
                "total": {
                    "requests": 3,
                    "status": "alert",
                    "alerts": [alert],
                    "features": {evil: feature},
                    "rates": {evil: {"value": 0.5, "reference": 0.0, "threshold": 0.2, "alert": True}},
                },
                "hours": [{"t": h["t"], "psi": {evil: 0.6}, "js": {evil: 0.3}} for h in hours],
            }
        },
        "no_profile": {evil: evil},
        "skew": {
            "sample": 0.5,
            "max_history": 5,
            "unreadable": 0,
            "overall": {"requests": 1, "exact_share": 0.0, "mean_jaccard": 0.5, "mean_length_diff": 1.0},
            "versions": {evil: {"requests": 1}},
            "examples": [
                {
                    "request_id": evil,
                    "version": evil,
                    "user_id": evil,
                    "time": evil,
                    "served": [evil],
                    "batch": ["b"],
                    "jaccard": 0.5,
                }
            ],
        },
        "server": {"url": evil, "versions": [{"model_name": evil, "version": evil, "status": "ok", "alerts": []}]},
    }


def test_the_page_escapes_data_and_names_no_url() -> None:
    evil = '<script src="https://x.example/a.js">alert("&")</script><img src=x onerror=1>'
    page = render(_report(evil))
    assert "<script" not in page and "<img" not in page
    assert page.count("&lt;script src=&quot;https://x.example/a.js&quot;&gt;") >= 10  # every place it is shown
    # Apart from the escaped data, no URL, link, script, font or image of any kind.
    clean = render(_report("v1"))
    for needle in ("http:", "https:", "//", "<script", "<link", "<img", "@import", "url(", "src=", "href="):
        assert needle not in clean, needle
    assert clean.count("<svg") == 3 + 2 + 1  # quality ×3, PSI and JS, one feature's bars
    assert "no replies in the window" in render({})  # an empty window still makes a page


def test_the_servers_view_keeps_no_earlier_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's GET /v1/monitoring carries the last report.json: kept, every report would
    hold all the earlier ones."""
    import httpx

    from sparktf.stages.monitor import _server_view, key_metrics

    body = {
        "status": "alert",
        "alerts": [{"feature": "top1_score"}],
        "versions": [{"model_name": "m", "version": "2", "status": "alert", "requests": 9, "features": {"x": {}}}],
        "report": {"server": {"report": {}}},
    }

    class Reply:
        def raise_for_status(self) -> None:
            pass

        def json(self) -> Any:
            return body

    seen: dict[str, Any] = {}

    def get(url: str, headers: dict[str, str], timeout: float) -> Reply:
        seen.update(url=url, headers=headers)
        return Reply()

    monkeypatch.setattr(httpx, "get", get)
    view = _server_view("http://127.0.0.1:1/v1/monitoring", "tok")
    assert seen["headers"] == {"Authorization": "Bearer tok"}
    assert "report" not in view and view["versions"] == [
        {"model_name": "m", "version": "2", "status": "alert", "requests": 9}
    ]
    rate = {"value": 0.1, "ci_low": 0.0, "ci_high": 0.2}
    metrics = key_metrics(
        {"quality": {"baseline:popular": {"total": {"requests": 4, "rates": {"ctr": rate}}}}, "skew": {"overall": {}}}
    )
    assert metrics == {"baseline_popular/requests": 4.0, "baseline_popular/ctr": 0.1}
