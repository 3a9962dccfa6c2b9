"""``sparktf monitor report`` on a small event table whose truth is known (issue 19).

Two model versions serve over two hours: version 1's contexts come from the distribution its
reference profile was built on, version 2's from a shifted one (other categories, higher
scores); version 3 (no profile) serves the two users whose histories the skew compares with
the batch events: one the same, one not. Each reply's clicks, carts and purchases follow a
fixed pattern, so the report's counts, rates and intervals are checked against the same
statistics computed here from the rows, and its drift against the same
:class:`~sparktf.monitoring.profile.Profiler` run over the contexts in memory.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparktf.config import FeatureConfig
from sparktf.monitoring.profile import Thresholds

pytestmark = [pytest.mark.spark]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")

ITEMS = [f"i{i}" for i in range(40)]
CATEGORY = {item: f"c{i % 4}" for i, item in enumerate(ITEMS)}
TYPES = ("view", "click", "add_to_cart", "purchase")
FEATURES = FeatureConfig(max_history=5)
THRESHOLDS = Thresholds(min_requests=100)
#: The first report hour: two hours ago, on the hour. The CLI's window ends when it runs, up to an
#: hour and more of suite time later, so its test asks for 4 hours: all of [T0, T0 + 2 h) is inside.
T0 = (int(time.time()) // 3600 - 2) * 3600
UTC = dt.UTC


def _at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, tz=UTC)


def _history(rng: np.random.Generator, shares: list[float]) -> list[str]:
    n = int(rng.integers(1, 7))
    cats = rng.choice(4, size=n, p=shares)
    return [ITEMS[int(c) + 4 * int(rng.integers(0, 10))] for c in cats]


REFERENCE_SHARES = [0.5, 0.3, 0.15, 0.05]
SHIFTED_SHARES = [0.05, 0.05, 0.3, 0.6]


def _reference() -> Any:
    from sparktf.monitoring.profile import build_reference

    rng = np.random.default_rng(0)
    histories = [_history(rng, REFERENCE_SHARES) for _ in range(1500)]
    return build_reference(
        model_kind="sequential",
        split="validation",
        item_ids=ITEMS,
        item_counts=np.arange(len(ITEMS), 0, -1),
        item_category=CATEGORY,
        item_price_bucket={item: 1 + i % 3 for i, item in enumerate(ITEMS)},
        histories=histories,
        top1_scores=rng.uniform(0.0, 1.0, len(histories)),
        history_cap=FEATURES.max_history,
        score_bins=4,
        length_bins=4,
        top_categories=4,
    )


def _export(base: Path, reference: Any) -> Path:
    from sparktf.monitoring.profile import write_reference

    extra = base / "assets.extra"
    write_reference(str(extra), reference)
    (extra / "item_ids.txt").write_text("\n".join(ITEMS) + "\n", encoding="utf-8")
    return base


class World:
    """The rows written and the truth they hold."""

    def __init__(self) -> None:
        self.live: list[dict[str, Any]] = []
        self.batch: list[dict[str, Any]] = []
        # (version, hour, unit) -> [requests, impressions, clicks, carts, purchases]
        self.cells: dict[tuple[str, int, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        self.replies: dict[str, list[tuple[str, tuple[str, ...], float | None]]] = defaultdict(list)
        self.named = 0

    def reply(
        self, rid: str, version: str, unit: str, t: float, context: list[str], score: float | None, n: int = 3
    ) -> None:
        for pos in range(1, n + 1):
            self.live.append(
                {
                    "event_time": _at(t),
                    "user_id": unit,
                    "item_id": ITEMS[(pos * 7) % len(ITEMS)],
                    "event_type": "impression",
                    "event_id": f"{rid}-{pos}",
                    "request_id": rid,
                    "position": pos,
                    "context": json.dumps(context),
                    "model_version": version,
                    "score": None if score is None else score - 0.01 * pos,
                    "ack_time": float(t),
                }
            )
        hour = int(t // 3600 * 3600)
        self.cells[(version, hour, unit)][0] += 1
        self.cells[(version, hour, unit)][1] += n
        self.replies[version].append((unit, tuple(context), None if score is None else score - 0.01))
        self.named += not unit.startswith("anonymous:")

    def act(self, rid: str, version: str, unit: str, t: float, kind: str) -> None:
        self.live.append(
            {
                "event_time": _at(t + 30),
                "user_id": unit,
                "item_id": ITEMS[7],
                "event_type": kind,
                "event_id": f"{rid}-{kind}",
                "request_id": rid,
                "position": 1,
                "ack_time": float(t + 30),
            }
        )
        hour = int(t // 3600 * 3600)
        self.cells[(version, hour, unit)][{"click": 2, "add_to_cart": 3, "purchase": 4}[kind]] += 1


def _world() -> World:
    w = World()
    rng = np.random.default_rng(1)
    for version, shares, scores, users in (
        ("1", REFERENCE_SHARES, (0.0, 1.0), 30),
        ("2", SHIFTED_SHARES, (0.8, 1.6), 25),
    ):
        for hour in (0, 1):
            for k in range(150):
                rid = f"r{version}-{hour}-{k}"
                unit = f"u{version}-{k % users}" if k % 10 else f"anonymous:s{k}"
                t = T0 + hour * 3600 + 10 * k
                score = None if k % 20 == 7 else float(rng.uniform(*scores))  # 5% popular fallback
                w.reply(rid, version, unit, t, _history(rng, shares), score)
                if k % (4 if version == "1" else 2) == 0:
                    w.act(rid, version, unit, t, "click")
                    if k % 8 == 0:
                        w.act(rid, version, unit, t, "add_to_cart")
                    if k % 16 == 0:
                        w.act(rid, version, unit, t, "purchase")
    # Outside the window, and an action on no known reply: neither counts.
    w.live.append({**w.live[0], "event_time": _at(T0 - 5 * 3600), "request_id": "old", "event_id": "old-1"})
    w.live.append({**w.live[-2], "event_type": "click", "request_id": "nobody", "event_id": "orphan"})
    # Skew: ua's batch history i1 i2 i3 plus a live view of i8 is what the server used; ub's
    # server missed i5, i6 and had an i9 the events never saw (i7 comes after the reply).
    reply_t = T0 + 3600 + 1800
    for user, items, start in (("ua", ["i1", "i2", "i3"], T0 - 3 * 3600), ("ub", ["i4", "i5", "i6"], T0 - 3 * 3600)):
        for j, item in enumerate(items):
            w.batch.append({"event_time": _at(start + 60 * j), "user_id": user, "item_id": item, "event_type": "view"})
    w.batch.append({"event_time": _at(start + 120), "user_id": "ua", "item_id": "i3", "event_type": "add_to_cart"})
    w.batch.append({"event_time": _at(reply_t + 60), "user_id": "ub", "item_id": "i7", "event_type": "view"})
    w.live.append(
        {"event_time": _at(reply_t - 600), "user_id": "ua", "item_id": "i8", "event_type": "view", "event_id": "lv",
         "ack_time": float(reply_t - 599)}
    )  # fmt: skip
    w.reply("rua", "3", "ua", reply_t, ["i1", "i2", "i3", "i8"], 0.5)
    w.reply("rub", "3", "ub", reply_t, ["i4", "i9"], 0.5)
    return w


@pytest.fixture(scope="module")
def built(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The workdir's tables and exports, and the library's report over them."""
    import pandas as pd

    from sparktf.data.features import read_events
    from sparktf.data.schema import EVENT_COLUMNS, EVENTS_DDL, LIVE_EVENT_COLUMNS, LIVE_EVENT_DDL
    from sparktf.monitoring.report import load_profile, monitor_report, read_live_events

    work = tmp_path_factory.mktemp("monitor") / "work"
    world = _world()
    reference = _reference()
    for v in ("1", "2"):
        _export(work / "models" / "sequential" / "export" / v, reference)
    live_path = str(work / "data" / "live" / "events")
    batch_path = str(work / "data" / "events")
    for rows, columns, ddl, path in (
        (world.live, LIVE_EVENT_COLUMNS, LIVE_EVENT_DDL, live_path + "/batch_id=0"),
        (world.batch, EVENT_COLUMNS, EVENTS_DDL, batch_path),
    ):
        frame = pd.DataFrame([[r.get(c) for c in columns] for r in rows], columns=list(columns))
        spark.createDataFrame(frame, ddl).coalesce(1).write.parquet(path)
    profiles = {v: load_profile(str(work / "models" / "sequential" / "export" / v)) for v in ("1", "2")}
    report = monitor_report(
        read_live_events(spark, live_path),
        read_events(spark, batch_path, live_path),
        since=T0 - 3600,
        until=T0 + 3 * 3600,
        profiles=lambda vs: ({v: p for v, p in profiles.items() if v in vs and p}, {"3": "not exported"}),
        thresholds=THRESHOLDS,
        features=FEATURES,
        event_types=TYPES,
        skew_sample=1.0,
    )
    yield {
        "report": report,
        "world": world,
        "reference": reference,
        "work": work,
    }


def test_online_quality_matches_the_rows(built: dict[str, Any]) -> None:
    from sparktf.experiments.stats import RatioTotals, ratio_estimate

    report, world = built["report"], built["world"]
    assert report["versions"] == ["1", "2", "3"]
    quality = report["quality"]
    for version in ("1", "2"):
        hours = quality[version]["hours"]
        assert [h["t"] for h in hours] == [T0, T0 + 3600]
        for h in [*hours, None]:
            cells = [c for (v, hour, _), c in world.cells.items() if v == version and (h is None or hour == h["t"])]
            if h is None:  # the window: per user over both hours
                per_user: dict[str, list[int]] = defaultdict(lambda: [0] * 5)
                for (v, _, unit), c in world.cells.items():
                    if v == version:
                        per_user[unit] = [a + b for a, b in zip(per_user[unit], c, strict=True)]
                cells = list(per_user.values())
                h = quality[version]["total"]
            arr = np.asarray(cells, dtype=float)
            assert h["users"] == len(cells)
            assert [h[k] for k in ("requests", "impressions", "clicks", "carts", "purchases")] == arr.sum(0).tolist()
            for metric, col in (("ctr", 2), ("add_to_cart_rate", 3), ("purchase_rate", 4)):
                truth = ratio_estimate(RatioTotals.of(arr[:, col], arr[:, 1]))
                got = h["rates"][metric]
                assert got["value"] == pytest.approx(truth.value, abs=1e-12)
                assert got["ci_low"] == pytest.approx(truth.ci_low, abs=1e-12)
                assert got["ci_high"] == pytest.approx(truth.ci_high, abs=1e-12)
    # Version 1 clicks one reply in four, version 2 one in two; the orphan click counts nowhere.
    assert quality["1"]["total"]["clicks"] == 76 and quality["2"]["total"]["clicks"] == 150
    assert quality["1"]["total"]["rates"]["ctr"]["value"] == pytest.approx(76 / 900)


def test_drift_is_the_profilers_count_of_the_contexts(built: dict[str, Any]) -> None:
    from sparktf.monitoring.profile import Profiler, compare

    report, world, reference = built["report"], built["world"], built["reference"]
    drift = report["drift"]
    assert set(drift) == {"1", "2"} and report["no_profile"] == {"3": "not exported"}
    for version in ("1", "2"):
        profiler = Profiler(reference, ITEMS)
        counts = profiler.new_counts()
        for unit, context, score in world.replies[version]:
            named = not unit.startswith("anonymous:")
            profiler.observe(counts, context, top1=score, fallback=score is None, unknown_user=False if named else None)
        assert drift[version]["total"] == compare(reference, counts, THRESHOLDS)
        assert [h["requests"] for h in drift[version]["hours"]] == [150, 150]
    assert drift["1"]["total"]["status"] == "ok", drift["1"]["total"]["alerts"]
    alerting = {(a["feature"], a["statistic"]) for a in drift["2"]["total"]["alerts"]}
    assert {("history_category", "psi"), ("top1_score", "psi")} <= alerting
    assert drift["2"]["total"]["rates"]["fallback_rate"]["value"] == pytest.approx(16 / 300, abs=1e-6)  # k % 20 == 7
    assert all(h["status"] == "alert" for h in drift["2"]["hours"])


def test_skew_finds_the_user_whose_served_history_differs(built: dict[str, Any]) -> None:
    s = built["report"]["skew"]
    assert s["sampled"] == built["world"].named and s["unreadable"] == 0
    three = s["versions"]["3"]
    assert three["requests"] == 2
    assert three["exact_share"] == pytest.approx(0.5)
    assert three["mean_jaccard"] == pytest.approx((1.0 + 1 / 4) / 2)
    assert three["mean_length_diff"] == pytest.approx((0 - 1) / 2)
    # Users of versions 1 and 2 have no events but their carts and purchases (of i7) on earlier replies.
    assert s["versions"]["1"]["exact_share"] == 0.0 and s["versions"]["1"]["mean_jaccard"] < 0.05
    shown = s["examples"]
    assert 0 < len(shown) <= 5 and all(x["served"] != x["batch"] for x in shown)
    assert all(len(x["served"]) <= FEATURES.max_history for x in shown)


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="headless Chromium is not installed (chromium chromium-driver)")
def test_the_html_report_opens_in_chromium_without_network(built: dict[str, Any], tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from sparktf.monitoring.html import render

    page = render(built["report"])
    assert "http://" not in page and "https://" not in page and "<script" not in page
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1200,2400",
    ):
        options.add_argument(arg)
    # No network: every connection goes to a closed port, every name fails to resolve.
    options.add_argument("--proxy-server=http://127.0.0.1:9")
    options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.get(path.as_uri())
        assert driver.title == "sparktf monitor report"
        drawn = driver.execute_script(
            "return {svg: document.querySelectorAll('svg').length,"
            " lines: document.querySelectorAll('svg polyline').length,"
            " bands: document.querySelectorAll('svg polygon.band').length,"
            " bars: document.querySelectorAll('svg.bars rect').length,"
            " width: Math.max(...Array.from(document.querySelectorAll('svg')).map(s => s.getBBox().width))};"
        )
        assert drawn["svg"] >= 3 + 2 * 2 + 2 * 5, drawn  # quality, PSI and JS per version, bars per feature
        assert drawn["lines"] > 0 and drawn["bands"] > 0 and drawn["bars"] > 0 and drawn["width"] > 0, drawn
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert resources == [], resources
        requested = [
            json.loads(e["message"])["message"]["params"]["request"]["url"]
            for e in driver.get_log("performance")
            if json.loads(e["message"])["message"]["method"] == "Network.requestWillBeSent"
        ]
        assert all(u.startswith("file://") for u in requested), requested
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert errors == [], errors
        shots = Path(__file__).resolve().parents[2] / "build" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(shots / "monitor-report.png"))
    finally:
        driver.quit()


def test_the_cli_writes_and_logs_the_report(built: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow.tracking import MlflowClient

    from sparktf.cli import main
    from sparktf.config import load_config

    work = built["work"]
    # The skew's wiring is one read_events call; its numbers are checked above (and it is the slowest part).
    sets = ["--set", "monitoring.skew_sample=0", "--set", "monitoring.min_requests=100"]
    sets += ["--set", "monitoring.report_hours=4", "--set", "features.max_history=5", "--set", "serve.port=9"]
    assert main(["monitor", "report", "--workdir", str(work), "--master", "local[2]", *sets]) == 0
    out = capsys.readouterr().out
    assert "2: 300 replies" in out and "drift alert (" in out and "skew: not measured" in out, out
    saved = json.loads((work / "monitoring" / "report.json").read_text())
    assert saved["versions"] == ["1", "2", "3"]
    assert saved["drift"]["2"]["total"]["alerts"] == built["report"]["drift"]["2"]["total"]["alerts"]
    assert saved["drift"]["1"]["reference"]["source"].endswith(os.path.join("sequential", "export", "1"))
    assert saved["server"]["error"]  # no server on port 9: the report comes from the events alone
    assert (work / "monitoring" / "report.html").read_text().startswith("<!DOCTYPE html>")
    cfg = load_config(None, [f'workdir="{work}"'])
    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "tags.`sparktf.kind` = 'monitor_report'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name.startswith("monitor-report-")
    assert run.data.metrics["2/drift_alerts"] >= 2 and run.data.metrics["1/ctr"] == pytest.approx(76 / 900)
    assert run.info.artifact_uri.startswith("file://" + str(work / "mlartifacts"))
    files = {f.path for f in client.list_artifacts(run.info.run_id, "monitoring")}
    assert files == {"monitoring/report.html", "monitoring/report.json"}
