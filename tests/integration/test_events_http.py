"""``POST /v1/events`` on a real server: per-event verdicts, malformed bodies, limits, the
landing files (whole, named in write order, holding exactly the accepted events), group
commit under 32 concurrent clients, and a SIGKILL right after acknowledgements losing
nothing. The servers serve no model (an empty base path): events need none."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sparktf.config import ServeConfig
from sparktf.online.events import EventRules

from .serving_support import RunningServer, free_port

pytestmark = pytest.mark.slow

RULES = EventRules(("view", "add_to_cart", "purchase"), "2020-01-01", "2100-01-01", max_future_s=60.0)
MAX_EVENTS = 20


def good(**fields: Any) -> dict[str, Any]:
    event = {"event_time": "2026-01-01T00:00:00Z", "user_id": "u1", "item_id": "i1", "event_type": "view"}
    event.update(fields)
    return event


def landed(directory: Path) -> list[tuple[str, list[dict[str, Any]]]]:
    """Every landing file, in name order, with its records (each line must parse)."""
    out = []
    for path in sorted(directory.glob("*.jsonl")):
        lines = path.read_text(encoding="ascii").splitlines()
        out.append((path.name, [json.loads(line) for line in lines]))
    return out


def make_app(base: Path, landing: Any, **cfg: Any) -> Any:
    from sparktf.serving.app import create_app
    from sparktf.serving.repository import BasePathSource, ModelRepository, load_version

    repo = ModelRepository(BasePathSource(str(base)), load_version, "m")
    settings = ServeConfig(poll_interval_s=0, **{"max_events": MAX_EVENTS, **cfg})
    return create_app(repo, settings, events=RULES, landing=landing)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events")
    (path / "models").mkdir()
    return path


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[tuple[RunningServer, Path]]:
    from sparktf.online.landing import LandingWriter

    landing_dir = root / "landing"
    with RunningServer(make_app(root / "models", LandingWriter(str(landing_dir))), ready_timeout_s=0) as running:
        yield running, landing_dir


def test_each_event_is_accepted_or_rejected_with_its_index_and_reason(server: tuple[RunningServer, Path]) -> None:
    import httpx

    running, landing_dir = server
    before = {name for name, _ in landed(landing_dir)}
    events = [
        good(event_id="a-1", position=2, request_id="r9", colour="red"),
        good(event_time="yesterday"),
        good(user_id=None),
        good(event_time=time.time() + 3600),
        good(event_id="a-1"),  # the same id again in one request
        good(event_type="View"),
        "not an object",
        good(position=0, utm="x"),
        good(price="9.5"),  # no event_id: the server gives one
    ]
    r = httpx.post(f"{running.url}/v1/events", json={"events": events}, timeout=30)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["accepted"] == 2 and doc["event_ids"][0] == "a-1" and len(doc["event_ids"][1]) == 32
    assert [(x["index"], x["reason"]) for x in doc["rejected"]] == [
        (1, "bad_timestamp"),
        (2, "missing_key"),
        (3, "future_dated"),
        (4, "duplicate"),
        (5, "unknown_event_type"),
        (6, "malformed_record"),
        (7, "bad_field"),
    ]
    assert doc["rejected"][3]["event_id"] == "a-1" and "index 0" in doc["rejected"][3]["detail"]
    assert all(x["detail"] for x in doc["rejected"])
    assert doc["ignored_fields"] == ["colour", "utm"]
    # exactly the accepted events landed, in one new file, with their ids and the ack time
    new = [(name, records) for name, records in landed(landing_dir) if name not in before]
    assert len(new) == 1
    records = new[0][1]
    assert [rec["event_id"] for rec in records] == doc["event_ids"]
    assert all(rec["ack_time"] == repr(doc["ack_time"]) for rec in records)
    assert records[0]["position"] == "2" and records[0]["request_id"] == "r9" and records[1]["price"] == "9.5"
    assert records[0]["event_time"] == "2026-01-01T00:00:00.000000Z"
    assert not list(landing_dir.glob(".*"))  # no tmp file left

    # every event rejected: still a well-formed body, so 200 and nothing written
    r = httpx.post(f"{running.url}/v1/events", json={"events": [good(event_type="x")]}, timeout=30)
    assert r.status_code == 200 and r.json()["accepted"] == 0 and r.json()["event_ids"] == []
    assert len(landed(landing_dir)) == len(before) + 1


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "JSON Parse error"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"event": []}', 400, "'events' array; it has 'event'"),
        (b'{"events": {"a": 1}}', 400, "'events' must be a JSON array"),
        (b'{"events": "x"}', 400, "got a JSON string"),
        (json.dumps({"events": [good()] * (MAX_EVENTS + 1)}).encode(), 413, "serve.max_events (20)"),
    ],
)
def test_malformed_bodies_and_too_many_events(
    server: tuple[RunningServer, Path], body: bytes, status: int, says: str
) -> None:
    import httpx

    running, _ = server
    r = httpx.post(f"{running.url}/v1/events", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status and says in r.json()["error"], r.text


def test_files_sort_in_write_order_and_metrics_count_outcomes(server: tuple[RunningServer, Path]) -> None:
    import httpx

    running, landing_dir = server
    ids = [f"order-{i}" for i in range(5)]
    with httpx.Client(base_url=running.url, timeout=30) as client:
        for i in ids:
            assert client.post("/v1/events", json={"events": [good(event_id=i)]}).json()["accepted"] == 1
        metrics = client.get("/metrics").text
    in_order = [rec["event_id"] for _, records in landed(landing_dir) for rec in records]
    assert [i for i in in_order if i.startswith("order-")] == ids
    assert 'sparktf_events_total{outcome="accepted"}' in metrics
    assert 'sparktf_events_total{outcome="future_dated"} 1.0' in metrics
    assert "sparktf_event_ack_seconds_count" in metrics
    assert 'endpoint="/v1/events"' in metrics


def test_group_commit_shares_files_among_concurrent_clients(server: tuple[RunningServer, Path]) -> None:
    import httpx

    running, landing_dir = server
    before = {name for name, _ in landed(landing_dir)}
    acked: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        with httpx.Client(base_url=running.url, timeout=60) as http:
            for n in range(50):
                r = http.post("/v1/events", json={"events": [good(event_id=f"g{c}-{n}")]})
                with lock:
                    if r.status_code == 200 and r.json()["accepted"] == 1:
                        acked.extend(r.json()["event_ids"])
                    else:
                        errors.append(r.text)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    new = [records for name, records in landed(landing_dir) if name not in before]
    found = [rec["event_id"] for records in new for rec in records]
    assert len(acked) == 32 * 50
    assert sorted(found) == sorted(acked)  # every acknowledged id exactly once
    assert len(new) < len(acked) / 2, f"{len(new)} files for {len(acked)} requests: no group commit"


def test_the_bearer_token_guards_the_route_and_a_failed_write_is_a_503(root: Path) -> None:
    from fastapi.testclient import TestClient

    from sparktf.online.landing import LandingError

    class FullDisk:
        def append(self, records: Any) -> None:
            raise LandingError("disk full", hint="free some space")

        def close(self) -> None:
            pass

    with TestClient(make_app(root / "models", FullDisk(), auth_token="s3cret")) as client:
        body = {"events": [good()]}
        assert client.post("/v1/events", json=body).status_code == 401
        r = client.post("/v1/events", json=body, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "disk full" in r.json()["error"]
        # all rejected: no write is tried
        r = client.post("/v1/events", json={"events": [good(user_id="")]}, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and r.json()["accepted"] == 0
    from sparktf.serving.app import create_app
    from sparktf.serving.repository import BasePathSource, ModelRepository, load_version

    repo = ModelRepository(BasePathSource(str(root / "models")), load_version, "m")
    with TestClient(create_app(repo, ServeConfig(poll_interval_s=0))) as client:
        r = client.post("/v1/events", json={"events": [good()]})
        assert r.status_code == 503 and "collects no events" in r.json()["error"]


def test_a_big_body_is_judged_off_the_event_loop_with_the_same_verdicts(root: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from sparktf.online.landing import LandingWriter

    events = [good(event_id=f"b{i}") if i % 3 else good(event_id=f"b{i}", event_type="nope") for i in range(300)]
    with TestClient(make_app(root / "models", LandingWriter(str(tmp_path)), max_events=1000)) as client:
        doc = client.post("/v1/events", json={"events": events}).json()
    assert doc["accepted"] == 200 and [x["index"] for x in doc["rejected"]] == list(range(0, 300, 3))
    assert sorted(rec["event_id"] for _, records in landed(tmp_path) for rec in records) == sorted(doc["event_ids"])


_SERVE = """
import sys, uvicorn
from sparktf.config import ServeConfig
from sparktf.online.events import EventRules
from sparktf.online.landing import LandingWriter
from sparktf.serving.app import create_app
from sparktf.serving.repository import BasePathSource, ModelRepository, load_version
from sparktf.serving.server import uvicorn_config
base, landing, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = ServeConfig(host="127.0.0.1", port=port, poll_interval_s=0)
rules = EventRules(("view",), "2020-01-01", "2100-01-01", 60.0)
repo = ModelRepository(BasePathSource(base), load_version, "m")
app = create_app(repo, cfg, events=rules, landing=LandingWriter(landing))
uvicorn.Server(uvicorn_config(app, cfg, port=port)).run()
"""


def test_sigkill_right_after_acknowledgements_loses_nothing(root: Path, tmp_path: Path) -> None:
    import httpx

    port = free_port()
    landing_dir = tmp_path / "landing"
    cmd = [sys.executable, "-c", _SERVE, str(root / "models"), str(landing_dir), str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def post_forever(c: int) -> None:
        n = 0
        with httpx.Client(base_url=url, timeout=10) as http:
            while not stop.is_set():
                ids = [f"k{c}-{n}-{j}" for j in range(3)]
                n += 1
                try:
                    r = http.post("/v1/events", json={"events": [good(event_id=i) for i in ids]})
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        acked.extend(r.json()["event_ids"])

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "the server did not start"
            time.sleep(0.1)
        threads = [threading.Thread(target=post_forever, args=(c,)) for c in range(8)]
        for t in threads:
            t.start()
        while len(acked) < 600 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)  # mid-stream: requests are in flight
        proc.wait(timeout=30)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        stop.set()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    found = {rec["event_id"] for _, records in landed(landing_dir) for rec in records}  # every line parses
    assert len(acked) >= 600
    missing = set(acked) - found
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged events lost, e.g. {sorted(missing)[:3]}"
