"""The control room at / in headless Chromium: its four sections (recommend, models,
experiments, monitoring) each render their data with no console error, and each writes a
screenshot to ``build/screenshots/<section>.png``.

The module's server serves ``models:/shop@champion`` from a real MLflow registry (two
versions: v1 passed the validation gate and is the champion, v2 failed it), with a reference
profile in the export and monitoring on; the experiment's server is a folder of exports
behind a bearer token.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparktf.config import ServeConfig

from .serving_support import ITEMS, USERS, RunningServer, export_recommender, write_features

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER),
        reason="headless Chromium is not installed (apt-get install -y chromium chromium-driver)",
    ),
]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("web")


#: What the page POSTs to /v1/events, as the stand-in endpoint below received it.
POSTED: list[dict[str, Any]] = []


#: Where the sections' screenshots go (``build/`` is git-ignored).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
#: The run metrics of the two registered versions (as the evaluate stage logs them) and the
#: popular baseline's; v2 is worse than v1 on NDCG@10, so the gate rejects it.
QUALITY = {
    1: {"ndcg@10": 0.3125, "hr@10": 0.5250, "mrr": 0.2011},
    2: {"ndcg@10": 0.2250, "hr@10": 0.4100, "mrr": 0.1502},
}
POPULAR = {"ndcg@10": 0.1180, "hr@10": 0.2400, "mrr": 0.0907}
#: The categories of the items (as write_features has them): c0 holds i0, i4, i8, ...
CATEGORY = {item: f"c{i % 4}" for i, item in enumerate(ITEMS)}


def write_reference_profile(export: str) -> None:
    """A reference profile whose histories are mostly category c0 (the traffic below is not)."""
    from sparktf.monitoring.profile import build_reference, write_reference

    extra = os.path.join(export, "assets.extra")
    item_ids = Path(extra, "item_ids.txt").read_text().split()
    rng = np.random.default_rng(11)
    c0 = [x for x in item_ids if CATEGORY[x] == "c0"]
    histories = [
        [str(rng.choice(c0)) if rng.random() < 0.85 else str(rng.choice(item_ids)) for _ in range(int(n))]
        for n in rng.integers(1, 7, size=400)
    ]
    reference = build_reference(
        model_kind="two_tower",
        split="validation",
        item_ids=item_ids,
        item_counts=[len(ITEMS) - ITEMS.index(x) for x in item_ids],
        item_category=CATEGORY,
        item_price_bucket={x: ITEMS.index(x) % 5 for x in item_ids},
        histories=histories,
        top1_scores=rng.normal(0.5, 0.2, size=len(histories)),
        history_cap=20,
    )
    write_reference(extra, reference)


def register_versions(root: Path, export: str) -> str:
    """Log the export to MLflow, register it twice (runs with the quality metrics of QUALITY
    and the popular baseline), and run both through the validation gate: v1 is promoted to
    champion, v2 is rejected. Returns the tracking URI."""
    from sparktf.config import GateConfig, MetricThreshold
    from sparktf.registry.promote import promote_version
    from sparktf.registry.registry import ModelRegistry
    from sparktf.training.tracking import RunTracker, metric_key

    uri = f"sqlite:///{root}/mlflow.db"
    tracker = RunTracker(uri, "web", artifact_root=str(root / "mlartifacts"))
    registry = ModelRegistry(uri, "shop")
    model_uri = ""
    for version, metrics in QUALITY.items():
        run_id = tracker.start(f"train-{version}")
        if not model_uri:
            model_uri = tracker.log_model(export, "recommender")
        # As the evaluate stage names them: <split>/<protocol>/..., baseline/<name>/<protocol>/...
        tracker.log_metrics({metric_key(k): v for k, v in metrics.items()}, prefix="test/product/")
        tracker.log_metrics({metric_key(k): v / 2 for k, v in metrics.items()}, prefix="test/literature/")
        tracker.log_metrics({metric_key(k): v for k, v in POPULAR.items()}, prefix="baseline/popular/product/")
        tracker.end()
        info = registry.register(model_uri, run_id=run_id, metrics=metrics, description=f"seed 5, run {version}")
        assert info.version == version
    gate = GateConfig(thresholds=(MetricThreshold(metric="ndcg@10", min_value=0.1, min_absolute_change=0.0),))
    for version in QUALITY:
        result = promote_version(registry, version, lambda u: QUALITY[int(u.rsplit("/", 1)[1])], gate)
        assert result.outcome == ("promoted" if version == 1 else "rejected"), result.message()
    return uri


#: `sparktf monitor report`'s online quality of version 1 over four hours.
REPORT = {
    "generated_at": "2026-12-07T05:00:00Z",
    "quality": {
        "1": {
            "total": {},
            "hours": [
                {
                    "t": 1_796_529_600 + 3600 * i,
                    "hour": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(1_796_529_600 + 3600 * i)),
                    "requests": 40,
                    "impressions": 400,
                    "rates": {
                        name: {"value": v, "se": v / 10, "ci_low": v * 0.8, "ci_high": v * 1.2}
                        for name, v in (("ctr", 0.05 + 0.01 * i), ("add_to_cart_rate", 0.01), ("purchase_rate", 0.004))
                    },
                }
                for i in range(4)
            ],
        }
    },
}


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[RunningServer]:
    from functools import partial

    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from sparktf.config import MonitoringConfig
    from sparktf.online.store import SQLiteStore
    from sparktf.serving.app import create_app
    from sparktf.serving.features import load_features
    from sparktf.serving.monitor import REPORT_FILE, ServedMonitoring
    from sparktf.serving.repository import ModelRepository, load_version, source_for

    export = export_recommender(root / "shop", 1, seed=5)
    write_reference_profile(export)
    write_features(root / "features")
    uri = register_versions(root, export)
    features = load_features(str(root / "features"))
    source = source_for("models:/shop@champion", tracking_uri=uri, cache_dir=str(root / "cache"))
    repo = ModelRepository(source, partial(load_version, features=features))
    # The store of live histories: the tests write it as the stream does (it need not exist yet).
    online = SQLiteStore(str(root / "online.db"), readonly=True)
    (root / "monitor").mkdir()
    (root / "monitor" / REPORT_FILE).write_text(json.dumps(REPORT))
    monitoring = ServedMonitoring.from_config(
        MonitoringConfig(min_requests=100, window_s=600.0, window_slots=10), report_dir=str(root / "monitor")
    )
    app = create_app(repo, ServeConfig(poll_interval_s=0), features, online=online, monitoring=monitoring)

    async def events(request: Any) -> JSONResponse:
        """A stand-in for POST /v1/events that records what the page sends (the endpoint
        and the stream have tests of their own)."""
        body = await request.json()
        POSTED.extend(body["events"])
        ids = [f"e{len(POSTED)}-{i}" for i in range(len(body["events"]))]
        return JSONResponse({"accepted": len(ids), "event_ids": ids, "rejected": []})

    app.router.routes.insert(0, Route("/v1/events", events, methods=["POST"]))
    with RunningServer(app) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for console_errors()
    # The Debian driver, so Selenium never tries to download one.
    driver = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def rows(driver: Any, table: str) -> list[list[str]]:
    """The cell texts of a table (its id or a CSS selector), read in one script call (the page
    may re-render meanwhile)."""
    script = (
        "return Array.from(document.querySelectorAll(arguments[0])).map("
        "tr => Array.from(tr.cells).map(td => td.textContent));"
    )
    css = table if " " in table else f"#{table}"  # a table's id, or a CSS selector
    return list(driver.execute_script(script, f"{css} tbody tr"))


def console_errors(driver: Any) -> list[str]:
    """The console's errors since the last call (failed requests included)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def show(driver: Any, section: str) -> None:
    """Click a section's tab and wait until it has rendered its data."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("document.getElementById(arguments[0]).dataset.state = '';", f"section-{section}")
    driver.find_element(By.ID, f"tab-{section}").click()
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.ID, f"section-{section}").get_attribute("data-state") in ("ready", "error")
    )
    state = driver.find_element(By.ID, f"section-{section}").get_attribute("data-state")
    assert state == "ready", driver.find_element(By.ID, f"{section}-message").text


def screenshot(driver: Any, section: str) -> Path:
    """The whole page as it shows ``section`` now, in build/screenshots/<section>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.set_window_size(1280, 900)  # measured at the usual size: a page is never shorter than its window
    height = driver.execute_script("document.activeElement.blur(); return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(int(height) + 140, 900), 5000))
    path = SCREENSHOTS / f"{section}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 10_000
    return path


def svg_titles(driver: Any, css: str) -> list[str]:
    script = "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent);"
    return list(driver.execute_script(script, f"{css} svg > text.chart-title"))


def test_pick_a_user_then_type_items(server: RunningServer, browser: Any) -> None:
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(server.url + "/")
    wait.until(lambda d: "version 1" in d.find_element(By.ID, "model").text)
    select = Select(browser.find_element(By.ID, "user-select"))
    wait.until(lambda d: len(select.options) > 1)
    user = USERS[2]
    select.select_by_value(user)
    browser.find_element(By.ID, "k-input").clear()
    browser.find_element(By.ID, "k-input").send_keys("4")
    browser.find_element(By.ID, "go").click()
    wait.until(lambda d: len(rows(d, "recs")) == 4)

    expected = httpx.post(
        f"{server.url}/v1/models/shop:recommend", json={"user_id": user, "k": 4, "attributes": True}
    ).json()
    shown = rows(browser, "recs")
    assert [r[1] for r in shown] == [it["item_id"] for it in expected["items"]]
    assert [r[3] for r in shown] == [it["category"] for it in expected["items"]]  # attributes from items/
    recent = rows(browser, "recent")
    assert [r[0] for r in recent] == list(reversed(expected["history"]))  # most recent first
    assert all(r[1].startswith("c") and r[2].startswith("b") for r in recent)
    assert "model version 1" in browser.find_element(By.ID, "version").text
    assert console_errors(browser) == []
    screenshot(browser, "recommend")

    select.select_by_value("")
    box = browser.find_element(By.ID, "history-input")
    box.send_keys("i3, i4")
    browser.find_element(By.ID, "go").click()
    wait.until(lambda d: [r[0] for r in rows(d, "recent")] == ["i4", "i3"])
    typed = httpx.post(f"{server.url}/v1/models/shop:recommend", json={"history": ["i3", "i4"], "k": 4}).json()
    wait.until(lambda d: [r[1] for r in rows(d, "recs")] == [it["item_id"] for it in typed["items"]])

    box.clear()
    browser.find_element(By.ID, "go").click()  # no user, no items: the popular fallback, said on the page
    wait.until(lambda d: "popular items" in d.find_element(By.ID, "message").text)


def test_k_zero_is_refused_with_a_message_not_turned_into_ten(server: RunningServer, browser: Any) -> None:
    """The page used parseInt(k) || 10, so k = 0 silently asked for 10 items."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(server.url + "/")
    wait.until(lambda d: "version 1" in d.find_element(By.ID, "model").text)
    browser.find_element(By.ID, "history-input").send_keys("i3")
    box = browser.find_element(By.ID, "k-input")
    box.clear()
    box.send_keys("0")
    browser.find_element(By.ID, "go").click()
    wait.until(lambda d: "k must be a whole number of 1 or more" in d.find_element(By.ID, "message").text)
    assert rows(browser, "recs") == []


def live_state(user: str, items: list[str], batch_id: int) -> Any:
    from sparktf.online.store import UserState

    return UserState(
        user_id=user,
        items=tuple(items),
        session_id=f"{user}:live-0",
        session_start=1_767_225_600.0,
        last_event_time=1_767_225_600.0 + len(items),
        last_ack_time=1_767_225_601.0 + len(items),
        events=len(items),
        batch_id=batch_id,
    )


def test_the_page_shows_the_live_history_and_a_click_updates_it(
    server: RunningServer, browser: Any, root: Path
) -> None:
    """The live history (online store) replaces the features' recent items on the page; a
    click on a recommendation is POSTed as a view event with the reply's request_id, and
    once the store has it (here written as the stream would) the page shows it and asks
    for new recommendations."""
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from sparktf.config import Config
    from sparktf.online.events import check_event
    from sparktf.online.store import SQLiteStore
    from sparktf.stages._online import event_rules

    user = USERS[4]
    writer = SQLiteStore(str(root / "online.db"))
    try:
        assert writer.apply(0, [live_state(user, ["i7", "i8", "i9"], 0), live_state("walk-in", ["i2"], 0)])
        wait = WebDriverWait(browser, 30)
        browser.get(server.url + "/")
        wait.until(lambda d: "version 1" in d.find_element(By.ID, "model").text)
        select = Select(browser.find_element(By.ID, "user-select"))
        wait.until(lambda d: len(select.options) > 1)
        select.select_by_value(user)
        browser.find_element(By.ID, "go").click()
        wait.until(lambda d: [r[0] for r in rows(d, "recent")] == ["i9", "i8", "i7"])  # most recent first
        label = browser.find_element(By.ID, "history-source")
        assert "live history: 3 event(s)" in label.text and label.get_attribute("class") == "live"
        assert rows(browser, "recent")[0][1] == "c1"  # attributes of the live items
        expected = httpx.post(f"{server.url}/v1/models/shop:recommend", json={"user_id": user, "k": 10}).json()
        assert expected["history_source"] == "live"
        wait.until(lambda d: [r[1] for r in rows(d, "recs")] == [it["item_id"] for it in expected["items"]])

        # A click: POST /v1/events, then the page waits for the live history to have it.
        POSTED.clear()
        clicked = expected["items"][1]["item_id"]
        browser.find_element(By.CSS_SELECTOR, "#recs tbody tr:nth-child(2) button.item").click()
        wait.until(lambda d: d.find_element(By.ID, "message").get_attribute("data-click") == "waiting")
        assert [e["event_type"] for e in POSTED] == ["click", "view"]  # the click, then the page's view
        for event in POSTED:
            assert {k: event[k] for k in ("user_id", "item_id", "position")} == {
                "user_id": user,
                "item_id": clicked,
                "position": 2,
            }
            assert len(event["request_id"]) == 32 and event["event_time"].endswith("Z")
            verdict = check_event(event, event_rules(Config()), ack_time=time.time())  # what /v1/events checks
            assert verdict.ok and not verdict.ignored, verdict
        assert writer.apply(1, [live_state(user, ["i7", "i8", "i9", clicked], 1)])  # the stream's part
        wait.until(lambda d: d.find_element(By.ID, "message").get_attribute("data-click") == "applied")
        wait.until(lambda d: [r[0] for r in rows(d, "recent")] == [clicked, "i9", "i8", "i7"])
        wait.until(lambda d: "the live history has it" in d.find_element(By.ID, "message").text)
        assert clicked not in [r[1] for r in rows(browser, "recs")]  # seen now, so excluded
        assert "4 event(s)" in browser.find_element(By.ID, "history-source").text

        # A shopper the features do not know, typed in: the live history alone.
        box = browser.find_element(By.ID, "user-input")
        box.send_keys("walk-in")
        browser.find_element(By.ID, "go").click()
        wait.until(lambda d: [r[0] for r in rows(d, "recent")] == ["i2"])
        assert "live history" in browser.find_element(By.ID, "history-source").text
        box.clear()
    finally:
        writer.close()


def test_the_models_section_shows_the_registry_versions_gate_and_quality(server: RunningServer, browser: Any) -> None:
    """GET /v1/registry reads the MLflow registry (aliases, the runs' quality metrics, the
    gate's tags and report), and the Models section shows it: versions with their aliases
    and gate outcome, the quality table and chart, the gate reports."""
    import httpx
    from selenium.webdriver.common.by import By

    from sparktf.serving.registry_view import quality_metrics

    doc = httpx.get(f"{server.url}/v1/registry").json()
    assert (doc["source"], doc["uri"], doc["default_version"]) == ("registry", "models:/shop@champion", 1)
    assert [(v["version"], v["kind"], v["labels"], v["reference_profile"]) for v in doc["loaded"]] == [
        (1, "two_tower", ["champion"], True)
    ]
    reg = doc["registry"]
    assert reg["error"] is None and reg["aliases"] == {"champion": 1} and "mlflow.db" not in json.dumps(doc)
    v2, v1 = reg["versions"]
    assert (v1["version"], v1["aliases"], v1["loaded"], v1["gate"]["status"]) == (1, ["champion"], True, "passed")
    assert (v2["version"], v2["aliases"], v2["loaded"], v2["gate"]["status"]) == (2, [], False, "failed")
    assert v2["gate"]["validated_against"] == "1" and v2["gate"]["failed_checks"][0]["check"] == "min_absolute_change"
    assert v2["gate"]["report"]["champion"] == "shop v1" and "## Validation gate: FAILED" in v2["gate"]["markdown"]
    half = {k: v / 2 for k, v in QUALITY[1].items()}
    assert v1["quality"] == {
        "split": "test",
        "protocol": "product",
        "model": QUALITY[1],
        "baselines": {"popular": POPULAR},
        "literature": {"model": pytest.approx(half), "baselines": {}},
    }
    # Slices, the gate's copies, training curves and NaN stay out of the quality table;
    # a run evaluated before the two protocols (<split>/<metric>) was the product protocol.
    logged = {"test/ndcg_at_10": 0.3, "test/mrr": float("nan"), "test/segment/a/ndcg_at_10": 0.1, "loss": 1.0}
    logged |= {"gate/candidate/ndcg_at_10": 0.3, "baseline/popular/hr_at_10": 0.2, "baseline/popular/seg/a/mrr": 0.1}
    logged |= {"test/product/user_activity/low/hr_at_10": 0.5, "baseline/als/literature/mrr": 0.05}
    assert quality_metrics(logged) == {
        "split": "test",
        "protocol": "product",
        "model": {"ndcg@10": 0.3},
        "baselines": {"popular": {"hr@10": 0.2}},
        "literature": {"model": {}, "baselines": {"als": {"mrr": 0.05}}},
    }

    browser.get(server.url + "/")
    console_errors(browser)
    show(browser, "models")
    assert "models:/shop@champion" in browser.find_element(By.ID, "models-source").text
    versions = {r[0]: r for r in rows(browser, "versions-table")}
    assert versions.keys() == {"1", "2"}
    assert versions["1"][1] == "champion" and versions["1"][2] == "passed" and versions["1"][6] == "yes"
    assert versions["2"][1] == "" and versions["2"][2] == "failed" and versions["2"][3] == "1"
    assert rows(browser, "loaded-table")[0][:2] == ["1 default", "two_tower"]
    quality = {r[0]: r[1:] for r in rows(browser, "quality-table")}
    assert quality.keys() == {"v1 (@champion)", "v2", "popular (baseline)"}
    assert quality["v1 (@champion)"][:2] == ["0.3125", "0.5250"]  # ndcg@10, hr@10 first
    assert quality["popular (baseline)"][:2] == ["0.1180", "0.2400"]
    assert svg_titles(browser, "#quality-chart") == ["NDCG@10 and HR@10 by version and baseline"]
    bars = browser.find_elements(By.CSS_SELECTOR, "#quality-chart rect.bar")
    assert len(bars) == 6  # two metrics of three rows
    report = browser.find_element(By.CSS_SELECTOR, '#gate-reports details[data-version="2"]')
    assert report.get_attribute("open") is not None  # the newest is open
    assert "## Validation gate: FAILED" in report.find_element(By.CSS_SELECTOR, "pre.report").text
    assert console_errors(browser) == []
    screenshot(browser, "models")


def test_the_monitoring_section_shows_drift_alerts_and_online_quality(server: RunningServer, browser: Any) -> None:
    """Traffic unlike the reference (its histories are of other categories) makes
    history_category alert; the Monitoring section lists the alert, charts each feature's
    shares with its PSI, the rates, and the report's online quality by hour."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx
    from selenium.webdriver.common.by import By

    others = [x for x in ITEMS if CATEGORY[x] in ("c1", "c2")]
    rng = np.random.default_rng(3)
    bodies = [
        {"history": [str(x) for x in rng.choice(others, size=int(rng.integers(2, 6)))], "k": 5} for _ in range(240)
    ]
    with httpx.Client(base_url=server.url, timeout=30) as client, ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda b: client.post("/v1/models/shop:recommend", json=b).status_code, bodies))
    assert statuses == [200] * len(bodies)

    doc = httpx.get(f"{server.url}/v1/monitoring").json()
    (version,) = [v for v in doc["versions"] if v["version"] == "1"]
    assert version["requests"] >= len(bodies) and version["status"] == "alert"
    category = version["features"]["history_category"]
    assert category["alert"] and category["psi"] > 0.25
    assert any(a["feature"] == "history_category" and a["statistic"] == "psi" for a in doc["alerts"])

    browser.get(server.url + "/")
    console_errors(browser)
    show(browser, "monitoring")
    assert browser.find_element(By.ID, "monitoring-status").text == "alert"
    alerts = rows(browser, "alerts-table")
    assert ["shop", "1", "history_category", "psi"] in [r[:4] for r in alerts]
    card = '#monitoring-versions .version[data-version="1"]'
    box = browser.find_element(By.CSS_SELECTOR, f'{card} .feature[data-feature="history_category"]')
    assert float(box.get_attribute("data-psi")) == category["psi"] and "alert" in box.get_attribute("class")
    (title,) = svg_titles(browser, f'{card} .feature[data-feature="history_category"]')
    assert title.startswith("history_category — PSI ") and abs(float(title.split()[3]) - category["psi"]) < 1e-3
    titles = svg_titles(browser, card)
    assert all(any(t.startswith(f + " — PSI") for t in titles) for f in version["features"])
    rates = {r[0]: r for r in rows(browser, f"{card} table.rates")}
    assert rates.keys() == set(version["rates"]) and rates["fallback_rate"][3] == "20.0%"
    assert len(browser.find_elements(By.CSS_SELECTOR, f'{card} .feature[data-feature="history_category"] rect.bar')) > 0
    (quality,) = svg_titles(browser, '#monitoring-report .quality[data-version="1"]')
    assert quality == "version 1: online quality by hour (1600 impressions)"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#monitoring-report polygon.band")) == 3  # CTR, cart, purchase
    assert console_errors(browser) == []
    screenshot(browser, "monitoring")


def test_the_page_shows_the_experiment_and_its_report(root: Path, server: RunningServer, browser: Any) -> None:
    """With an [experiment], the page lists the arms, the latest report's table and decision,
    and its CTR charts; a reply names the arm that answered. This server wants a bearer
    token: the page asks for it and sends it with every request once typed in. (``server``
    writes the export and the features this app serves too.)"""
    from functools import partial

    import pandas as pd
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from sparktf.config import Config
    from sparktf.experiments.assignment import Arm, ArmModel, Assignment
    from sparktf.experiments.exploration import Exploration
    from sparktf.experiments.ope import estimate
    from sparktf.experiments.report import DecisionRule, Moments, arm_results, ctr_chart, decide, to_json
    from sparktf.online.landing import LandingWriter
    from sparktf.serving.app import create_app
    from sparktf.serving.baselines import load_baseline
    from sparktf.serving.experiment import ServedExperiment
    from sparktf.serving.features import load_features
    from sparktf.serving.repository import BasePathSource, ModelRepository, load_version
    from sparktf.stages._online import event_rules
    from sparktf.stages.experiment import off_policy_beside

    features = load_features(str(root / "features"))
    repo = ModelRepository(
        BasePathSource(str(root / "shop"), labels={"treatment": "1"}), partial(load_version, features=features)
    )
    assignment = Assignment(
        "web",
        "web",
        (
            Arm("control", ArmModel("baseline", "popular"), 1.0, Exploration("epsilon_greedy", epsilon=0.2)),
            Arm("treatment", ArmModel("version", "1"), 1.0),
        ),
        "control",
    )
    served = ServedExperiment(assignment, {"popular": load_baseline("popular", features, exclude_seen=True)})
    app = create_app(
        repo,
        ServeConfig(poll_interval_s=0, auth_token="s3cret"),
        features,
        events=event_rules(Config()),
        landing=LandingWriter(str(root / "landing")),
        experiment=served,
    )
    # A report as `sparktf experiment report` writes it, from per-arm sums of two buckets.
    out = root / "experiments" / "web"
    out.mkdir(parents=True)
    app.state.sparktf.experiment_dir = str(out)
    rows_ = []
    for arm, users, imps, clicks in (("control", 300, 9000, 90), ("treatment", 310, 9300, 160)):
        for b, share in ((0, 0.5), (1, 1.0)):
            n, x, y = int(users * share), imps * share, clicks * share
            row = {"arm": arm, "b": b, "users": n, "requests": x / 10, "impressions": x, "impressions_sq": x * x / n}
            for c, v in (("clicks", y), ("carts", y / 5), ("purchases", y / 20)):
                row |= {c: v, f"{c}_sq": v * v / n * 1.5, f"{c}_x": v * x / n}
            rows_.append(row)
    report = arm_results(Moments(pd.DataFrame(rows_), 2, 60.0, 0), assignment, 0.05, {})
    report["arm_models"] = {
        "control": {"model": "popular", "kind": "baseline", "version": None},
        "treatment": {"model": "1", "kind": "version", "version": 1},
    }
    rule = DecisionRule("control", 0.05, 0.001, 100, 0.0, 0.01, 250.0)
    report["decision"] = decide(report, rule, {"control": "popular", "treatment": "1"})
    report["generated_at"] = "2026-12-06T00:00:00Z"
    # An off-policy estimate of version 1, as `sparktf experiment estimate` writes it: the page
    # shows it beside the treatment arm's online CTR.
    est = estimate([0.5, 0.25, 0.5, 1.0], [1, 0, 0, 1], [1, 1, 0, 1])
    op = {
        "policy": "models:/shop/1",
        "model_version": "shop/1",
        "generated_at": "2026-12-06T00:00:00Z",
        "estimates": {n: est[n].to_dict() for n in ("ips", "snips", "dr")},
        "diagnostics": est["diagnostics"],
    }
    (out / "offpolicy.json").write_text(to_json(op))
    report["off_policy"] = off_policy_beside(report, str(out))
    (out / "report.json").write_text(to_json(report))
    ctr_chart(report["curve"], str(out / "ctr.png"), "web")

    with RunningServer(app) as srv:
        import httpx

        # A folder of exports: no registry, the loaded versions with their kind; behind the token.
        assert httpx.get(f"{srv.url}/v1/registry").status_code == 401
        doc = httpx.get(f"{srv.url}/v1/registry", headers={"Authorization": "Bearer s3cret"}).json()
        assert (doc["source"], doc["registry"], doc["loaded"][0]["kind"]) == ("folder", None, "two_tower")

        wait = WebDriverWait(browser, 30)
        browser.get(srv.url + "/#experiments")
        # Without the token the section says what is missing; with it typed in, it loads.
        wait.until(lambda d: "bearer token" in d.find_element(By.ID, "experiments-message").text)
        console_errors(browser)  # the refused requests
        browser.find_element(By.ID, "token-input").send_keys("s3cret", Keys.TAB)
        wait.until(lambda d: d.find_element(By.ID, "experiment").is_displayed())
        assert (
            "control = popular (50%, epsilon_greedy(epsilon=0.2,candidates=50))"
            in browser.find_element(By.ID, "experiment-arms").text
        )
        assert "treatment = 1 (50%)" in browser.find_element(By.ID, "experiment-arms").text
        wait.until(lambda d: len(rows(d, "experiment-table")) == 2)
        table = {r[0]: r for r in rows(browser, "experiment-table")}
        assert table["control"][5].startswith("0.0100 [") and table["control"][6] == "control"
        assert table["treatment"][6].startswith("+72.0% [")  # 160/9300 over 90/9000
        assert "Decision: keep" in browser.find_element(By.ID, "experiment-decision").text  # guardrails unknown
        wait.until(lambda d: d.execute_script("return document.getElementById('experiment-chart').naturalWidth") > 0)
        off = {r[0]: r[1] for r in rows(browser, "offpolicy-table")}
        # IPS: (1/0.5 + 0 + 0 + 1/1) / 4 = 0.75; the treatment arm serves version 1: 160 / 9300.
        assert off["IPS (off-policy)"].startswith("0.7500 [") and "SNIPS (off-policy)" in off
        assert off["online, arm treatment"].startswith("0.0172 [")
        assert "4 logged slots of 4 users" in browser.find_element(By.ID, "offpolicy-notes").text
        # The per-arm CTR with its interval, and the cumulative CTR with its band, as SVG charts.
        wait.until(lambda d: d.find_element(By.ID, "section-experiments").get_attribute("data-state") == "ready")
        intervals = browser.find_elements(By.CSS_SELECTOR, "#experiment-ci-chart g.interval")
        assert [g.get_attribute("data-label") for g in intervals] == ["control", "treatment"]
        assert "0.0172 [" in intervals[1].find_element(By.TAG_NAME, "title").get_attribute("textContent")
        curve = browser.find_elements(By.CSS_SELECTOR, "#experiment-curve-chart g.series")
        assert [g.get_attribute("data-series") for g in curve] == ["control", "treatment"]
        assert browser.find_element(By.ID, "experiment-none").is_displayed() is False
        assert console_errors(browser) == []
        screenshot(browser, "experiments")

        browser.find_element(By.ID, "tab-recommend").click()
        select = Select(browser.find_element(By.ID, "user-select"))
        wait.until(lambda d: len(select.options) > 1)
        select.select_by_value(USERS[1])
        browser.find_element(By.ID, "go").click()
        arm = assignment.arm_for(USERS[1]).name
        wait.until(lambda d: f"arm {arm}" in d.find_element(By.ID, "version").text)
