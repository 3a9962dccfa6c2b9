"""The web page at / in headless Chromium: pick a user, see recent items and recommendations."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sparktf.config import ServeConfig

from .serving_support import USERS, RunningServer, export_recommender, write_features

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


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[RunningServer]:
    from functools import partial

    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from sparktf.online.store import SQLiteStore
    from sparktf.serving.app import create_app
    from sparktf.serving.features import load_features
    from sparktf.serving.repository import BasePathSource, ModelRepository, load_version

    export_recommender(root / "shop", 1, seed=5)
    write_features(root / "features")
    features = load_features(str(root / "features"))
    repo = ModelRepository(BasePathSource(str(root / "shop")), partial(load_version, features=features))
    # The store of live histories: the tests write it as the stream does (it need not exist yet).
    online = SQLiteStore(str(root / "online.db"), readonly=True)
    app = create_app(repo, ServeConfig(poll_interval_s=0), features, online=online)

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
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    # The Debian driver, so Selenium never tries to download one.
    driver = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def rows(driver: Any, table: str) -> list[list[str]]:
    """The table's cell texts, read in one script call (the page may re-render meanwhile)."""
    script = (
        "return Array.from(document.querySelectorAll(arguments[0])).map("
        "tr => Array.from(tr.cells).map(td => td.textContent));"
    )
    return list(driver.execute_script(script, f"#{table} tbody tr"))


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


def test_the_page_shows_the_experiment_and_its_report(root: Path, server: RunningServer, browser: Any) -> None:
    """With an [experiment], the page lists the arms, the latest report's table and decision,
    and its CTR chart; a reply names the arm that answered. (``server`` writes the export and
    the features this app serves too.)"""
    from functools import partial

    import pandas as pd
    from selenium.webdriver.common.by import By
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
        ServeConfig(poll_interval_s=0),
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
        wait = WebDriverWait(browser, 30)
        browser.get(srv.url + "/")
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

        select = Select(browser.find_element(By.ID, "user-select"))
        wait.until(lambda d: len(select.options) > 1)
        select.select_by_value(USERS[1])
        browser.find_element(By.ID, "go").click()
        arm = assignment.arm_for(USERS[1]).name
        wait.until(lambda d: f"arm {arm}" in d.find_element(By.ID, "version").text)
