"""The web page at / in headless Chromium: pick a user, see recent items and recommendations."""

from __future__ import annotations

import shutil
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
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    from functools import partial

    from sparktf.serving.app import create_app
    from sparktf.serving.features import load_features
    from sparktf.serving.repository import BasePathSource, ModelRepository, load_version

    root: Path = tmp_path_factory.mktemp("web")
    export_recommender(root / "shop", 1, seed=5)
    write_features(root / "features")
    features = load_features(str(root / "features"))
    repo = ModelRepository(BasePathSource(str(root / "shop")), partial(load_version, features=features))
    with RunningServer(create_app(repo, ServeConfig(poll_interval_s=0), features)) as running:
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
