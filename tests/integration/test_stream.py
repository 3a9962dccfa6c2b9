"""The online loop on real components (issue 16): HTTP → landing files → Structured Streaming
→ live tables and the online store → :recommend.

Every event here is posted to a real uvicorn server's ``POST /v1/events``; the streaming job
runs on real Spark (in this process on the session's ``local[2]``, or as ``sparktf stream``
subprocesses that the test SIGKILLs).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from sparktf.config import Config, ServeConfig
from tests.integration.serving_support import ITEMS, USERS, RunningServer, export_recommender, write_features

T0 = 1_780_000_000.0


def _cfg(work: Path, online: dict[str, str] | None = None, **stream: Any) -> Config:
    from sparktf.config import load_config

    sets = [f'workdir="{work}"', 'spark.master="local[2]"', "spark.ui=false", 'spark.driver_memory="1g"']
    sets += [f"stream.{k}={v}" for k, v in stream.items()]
    sets += [f'online.{k}="{v}"' for k, v in (online or {}).items()]
    return load_config(None, sets)


def _server(cfg: Config, tmp: Path, features: Path | None = None, **serve: Any) -> tuple[Any, str]:
    """The app ``sparktf serve`` would build for ``cfg``, on a tiny model."""
    from sparktf.serving.server import build_app
    from sparktf.stages.serve import serve_args

    base = tmp / "models"
    export_recommender(base, 1, seed=3)
    args = serve_args(cfg, str(base))
    app, _ = build_app(
        ServeConfig(host="127.0.0.1", model_name="recommender", **serve),
        model=str(base),
        tracking_uri="",
        features_path=str(features or ""),
        index_path="",
        cache_dir=str(tmp / "cache"),
        events=args.events,
        landing_dir=args.landing_dir,
        online=args.online,
        online_path=args.online_path,
    )
    return app, str(base)


def _post(url: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    import httpx

    r = httpx.post(f"{url}/v1/events", json={"events": events}, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _run_once(spark: Any, cfg: Config) -> list[Any]:
    """``sparktf stream --once`` in this process, on the test session."""
    from sparktf.online.store import open_store
    from sparktf.online.stream import start_query
    from sparktf.stages.stream import stream_args

    args = stream_args(cfg)
    reports: list[Any] = []
    store = open_store(args.online, args.online_path)
    before = spark.conf.get("spark.sql.shuffle.partitions")
    try:
        q = start_query(
            spark,
            landing=args.landing,
            checkpoint=args.checkpoint,
            events_path=args.events_path,
            quarantine_path=args.quarantine_path,
            rules=args.rules,
            store=store,
            trigger_interval_s=args.settings.trigger_interval_s,
            max_files_per_trigger=args.settings.max_files_per_trigger,
            partitions=args.settings.partitions,
            clean_landing=args.settings.clean_landing,
            available_now=True,
            on_batch=reports.append,
        )
        q.awaitTermination(180)
        assert q.exception() is None, q.exception()
    finally:
        store.close()
        spark.conf.set("spark.sql.shuffle.partitions", before)
    return reports


def _event(user: str, item: str, t: float, **extra: Any) -> dict[str, Any]:
    return {"event_time": t, "user_id": user, "item_id": item, "event_type": "view", **extra}


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_click_posted_over_http_changes_that_users_next_recommendation(
    spark: Any, tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    import httpx

    features = tmp_path / "features"
    write_features(features)
    online = {"store": store}
    if store == "redis":  # the stream writes, the server reads, through a real redis-server
        online |= {"redis_url": request.getfixturevalue("redis_server"), "key_prefix": f"click-{tmp_path.name}"}
    cfg = _cfg(tmp_path / "work", online)
    app, _ = _server(cfg, tmp_path, features)
    user = USERS[0]
    now = time.time()
    with RunningServer(app) as srv:
        before = httpx.post(f"{srv.url}/v1/models/recommender:recommend", json={"user_id": user, "k": 5}).json()
        assert before["history_source"] == "features"
        clicks = [ITEMS[30], ITEMS[31], ITEMS[32]]
        reply = _post(srv.url, [_event(user, item, now - 3 + i) for i, item in enumerate(clicks)])
        assert reply["accepted"] == 3 and not reply["rejected"]
        reports = _run_once(spark, cfg)
        assert sum(r.events for r in reports) == 3
        after = httpx.post(f"{srv.url}/v1/models/recommender:recommend", json={"user_id": user, "k": 5}).json()
    assert after["history_source"] == "live"
    assert after["history"][-3:] == clicks
    assert [i["item_id"] for i in after["items"]] != [i["item_id"] for i in before["items"]]
    assert not set(clicks) & {i["item_id"] for i in after["items"]}  # seen items are excluded
    assert (tmp_path / "work" / "online" / "online.db").exists() == (store == "sqlite")


@pytest.mark.slow
def test_bad_events_are_reported_and_quarantined_never_dropped(spark: Any, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path / "work")
    app, _ = _server(cfg, tmp_path)
    now = time.time()
    with RunningServer(app) as srv:
        reply = _post(
            srv.url,
            [
                _event("u1", "i1", now, event_id="a"),
                _event("u1", "i1", now + 7200),  # future-dated
                {"event_time": now, "user_id": "u1", "event_type": "view"},  # no item
                _event("u1", "i2", now, event_id="a"),  # same id in the request
            ],
        )
        assert reply["accepted"] == 1
        assert sorted(r["reason"] for r in reply["rejected"]) == ["duplicate", "future_dated", "missing_key"]
        # A retry of an acknowledged event is accepted by the server (it cannot know) and
        # dropped by the stream as a duplicate; a late one is quarantined as late.
        _post(srv.url, [_event("u1", "i1", now, event_id="a")])
        _run_once(spark, cfg)
        _post(srv.url, [_event("u1", "i3", now - 3600, event_id="old")])
    # A line that is not JSON in a landing file is quarantined as malformed, with its text.
    landing = Path(cfg.paths.landing)
    (landing / "99999999999999999999-1-00000000.jsonl").write_text('{"broken\n', encoding="utf-8")
    _run_once(spark, cfg)
    q = spark.read.parquet(cfg.paths.live_quarantine).collect()
    by_reason = defaultdict(list)
    for r in q:
        by_reason[r["reason"]].append(r)
    assert sorted(by_reason) == ["duplicate", "late_event", "malformed_record"]
    assert by_reason["malformed_record"][0]["raw_record"] == '{"broken'
    assert spark.read.parquet(cfg.paths.live_events).count() == 1


@pytest.mark.slow
@pytest.mark.parametrize("clean", [True, False])
def test_clean_landing_deletes_the_files_of_committed_batches(spark: Any, tmp_path: Path, clean: bool) -> None:
    """stream.clean_landing reaches Spark's cleanSource: on, a batch's landing files go once
    it is committed (Spark does it when the next batch starts); off, every file stays."""
    cfg = _cfg(tmp_path / "work", clean_landing=str(clean).lower())
    app, _ = _server(cfg, tmp_path)
    landing = Path(cfg.paths.landing)
    now = time.time()
    with RunningServer(app) as srv:
        for i in range(3):
            _post(srv.url, [_event("u-clean", ITEMS[i], now - 10 + i)])
        first = set(landing.glob("*.jsonl"))
        assert len(first) == 3
        _run_once(spark, cfg)
        for i in range(2):
            _post(srv.url, [_event("u-clean", ITEMS[3 + i], now - 5 + i)])
        _run_once(spark, cfg)
    deadline = time.monotonic() + 20
    while clean and first & set(landing.glob("*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.2)  # Spark's cleaner thread deletes in the background
    left = set(landing.glob("*.jsonl"))
    assert (first & left) == (set() if clean else first)
    assert len(left - first) == 2  # the last batch's files stay until a later batch starts
    assert spark.read.parquet(cfg.paths.live_events).count() == 5


def _stream_proc(work: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        *_stream_proc_cmd(work),
        "--set",
        "stream.trigger_interval_s=0.2",
        "--set",
        "stream.max_files_per_trigger=10",
    ]
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=os.getcwd())


def _wait_for_batches(store_path: str, above: int, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> int:
    from sparktf.online.store import SQLiteStore

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"sparktf stream exited with {proc.returncode}"
        store = SQLiteStore(store_path, readonly=True)
        try:
            last = store.last_batch_id()
        finally:
            store.close()
        if last > above:
            return last
        time.sleep(0.1)
    raise AssertionError(f"no batch after {above} within {timeout_s} s")


@pytest.mark.slow
def test_sigkilling_the_stream_twice_loses_no_event_and_applies_none_twice(spark: Any, tmp_path: Path) -> None:
    """Events posted over HTTP while the streaming job is SIGKILLed twice (once right after a
    batch reached the store, once at a random moment of a later one) all land in the live
    table exactly once, and the states equal those of an uninterrupted run."""
    from sparktf.online.store import SQLiteStore
    from sparktf.online.stream import apply_user
    from sparktf.stages.stream import stream_args

    work = tmp_path / "work"
    cfg = _cfg(work, max_files_per_trigger=10)
    app, _ = _server(cfg, tmp_path)
    log = tmp_path / "stream.log"
    rng = random.Random(16)
    users = [f"shopper{u}" for u in range(150)]
    acked: dict[str, dict[str, Any]] = {}
    stop_posting = threading.Event()
    errors: list[BaseException] = []

    def post_all(url: str) -> None:
        # One POST is one landing file; 10 a second for as long as the kills go on, so
        # every run of the job finds new files (and a kill can fall inside a batch).
        try:
            for b in range(600):
                if stop_posting.is_set():
                    return
                batch = []
                for j in range(25):
                    n = b * 25 + j
                    batch.append(_event(rng.choice(users), rng.choice(ITEMS), T0 + n, event_id=f"ev{n}"))
                reply = _post(url, batch)
                for eid in reply["event_ids"]:
                    acked[eid] = batch[int(eid[2:]) - b * 25]
                time.sleep(0.1)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    store_path = stream_args(cfg).online_path
    with RunningServer(app) as srv:
        poster = threading.Thread(target=post_all, args=(srv.url,))
        poster.start()
        proc = _stream_proc(work, log)
        first = _wait_for_batches(store_path, -1, proc)
        proc.send_signal(signal.SIGKILL)  # right after a batch was applied
        proc.wait()
        proc = _stream_proc(work, log)
        _wait_for_batches(store_path, first, proc)
        time.sleep(rng.uniform(0.05, 0.5))  # then at a random moment of a later batch
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stop_posting.set()
        poster.join(timeout=60)
        assert not errors, errors
    # A catch-up run resumes from the killed one's checkpoint and drains the landing files.
    done = subprocess.run([*_stream_proc_cmd(work), "--once"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    n = len(acked)
    assert n >= 25 * 50, n  # the posting spanned the kills
    table = spark.read.parquet(cfg.paths.live_events)
    assert table.count() == n
    assert {r["event_id"] for r in table.select("event_id").collect()} == set(acked)
    assert not Path(cfg.paths.live_quarantine).exists()

    # The uninterrupted run: every user's events in one batch, through the same function.
    rules = stream_args(cfg).rules
    per_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for eid, ev in acked.items():
        per_user[ev["user_id"]].append(
            {"event_id": eid, "event_time": repr(ev["event_time"]), "user_id": ev["user_id"],
             "item_id": ev["item_id"], "event_type": "view", "ack_time": repr(T0 + 10**6)}
        )  # fmt: skip
    store = SQLiteStore(store_path, readonly=True)
    try:
        got = store.get_many(per_user)
    finally:
        store.close()
    assert set(got) == set(per_user)
    for user, events in per_user.items():
        ref = apply_user(user, None, events, rules).state
        assert ref is not None
        s = got[user]
        assert (list(s.items), s.session_id, s.events, s.last_event_time) == (
            ref["items"],
            ref["session_id"],
            ref["events"],
            ref["last_event_time"],
        ), user
    assert sum(s.events for s in got.values()) == n
    assert json.loads(Path(stream_args(cfg).status_file).read_text())["state"] == "stopped"


def _stream_proc_cmd(work: Path) -> list[str]:
    return [
        sys.executable, "-m", "sparktf.cli", "stream", "--workdir", str(work),
        "--set", 'spark.master="local[2]"', "--set", "spark.ui=false", "--set", 'spark.driver_memory="1g"',
    ]  # fmt: skip


@pytest.mark.slow
def test_sparktf_live_runs_both_and_ctrl_c_stops_both(tmp_path: Path) -> None:
    """`sparktf live` as a user types it: the server answers, a posted click reaches that
    user's :recommend through the stream, and SIGINT (Ctrl-C) stops both and exits 0."""
    import httpx

    from tests.integration.serving_support import free_port

    work, base = tmp_path / "work", tmp_path / "recommender"  # served as /v1/models/recommender
    export_recommender(base, 1, seed=3)
    port = free_port()
    cmd = [
        sys.executable, "-m", "sparktf.cli", "live", "--workdir", str(work), "--model", str(base), "--port", str(port),
        "--set", 'spark.master="local[2]"', "--set", "spark.ui=false", "--set", 'spark.driver_memory="1g"',
        "--set", "stream.trigger_interval_s=0.5",
    ]  # fmt: skip
    out = tmp_path / "live.out"
    url = f"http://127.0.0.1:{port}"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        reply: dict[str, Any] = {}
        posted = False
        while time.monotonic() < deadline and reply.get("history_source") != "live":
            assert proc.poll() is None, out.read_text()
            try:
                if not posted:
                    posted = _post(url, [_event("walk-in", ITEMS[5], time.time() - 1)])["accepted"] == 1
                reply = httpx.post(f"{url}/v1/models/recommender:recommend", json={"user_id": "walk-in"}).json()
            except httpx.TransportError:
                pass  # the server is still starting
            time.sleep(0.3)
        assert reply.get("history_source") == "live", (reply, out.read_text())
        assert reply["history"] == [ITEMS[5]]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = out.read_text()
    assert "sparktf live: stopped the server and the streaming job." in text, text
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=2)
    status = json.loads((work / "state" / "stream.json").read_text())
    assert status["state"] == "stopped" and status["events"] == 1
    assert "stopped on SIGTERM" in (work / "logs" / "live-serve.log").read_text()


def _processes_using(path: Path) -> list[int]:
    """Pids whose command line mentions ``path`` (from /proc)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if str(path) in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_sigkilling_sparktf_live_stops_its_server_and_stream(tmp_path: Path) -> None:
    import httpx

    from tests.integration.serving_support import free_port

    work, base = tmp_path / "work", tmp_path / "recommender"
    export_recommender(base, 1, seed=3)
    port = free_port()
    cmd = [
        sys.executable, "-m", "sparktf.cli", "live", "--workdir", str(work), "--model", str(base), "--port", str(port),
        "--set", 'spark.master="local[1]"', "--set", "spark.ui=false", "--set", 'spark.driver_memory="1g"',
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while len(_processes_using(work)) < 3 and time.monotonic() < deadline:  # live, serve, stream
        time.sleep(0.2)
    assert len(_processes_using(work)) >= 3
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 60
    while _processes_using(work) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_using(work) == [], "sparktf serve/stream outlived a SIGKILLed sparktf live"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
