""":recommend and /v1/users/{id} read each user's live history from the online store
(issue 16, item 4): live → features → none, said in ``history_source``; a store that
cannot be read falls back to the features and says why, with a 200.

The states are written with ``OnlineStore.apply`` directly, as the stream's sink does.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sparktf.config import OnlineConfig, ServeConfig

from .serving_support import RunningServer, export_recommender, write_features

NEW_SHOPPER = "newbie"  # in the online store only: neither the features nor the model know it


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root: Path = tmp_path_factory.mktemp("live")
    export_recommender(root / "shop", 1, seed=3)
    written = write_features(root / "features")
    return {"root": root, **written}


def _build(world: dict[str, Any], online: OnlineConfig | None, online_path: str = "", **serve: Any) -> Any:
    """The app ``sparktf serve`` makes (build_app opens the store; nothing loads yet)."""
    from sparktf.serving.server import build_app

    app, _ = build_app(
        ServeConfig(poll_interval_s=0, **serve),
        model=str(world["root"] / "shop"),
        tracking_uri="",
        features_path=str(world["root"] / "features"),
        index_path="",
        cache_dir="",
        online=online,
        online_path=online_path,
    )
    return app


def state(user: str, items: list[str], batch_id: int, events: int | None = None) -> Any:
    from sparktf.online.store import UserState

    return UserState(
        user_id=user,
        items=tuple(items),
        session_id=f"{user}:live-0",
        session_start=1_767_225_600.0,
        last_event_time=1_767_225_600.0 + len(items),
        last_ack_time=1_767_225_601.0 + len(items),
        events=len(items) if events is None else events,
        batch_id=batch_id,
    )


def recommend(url: str, **body: Any) -> dict[str, Any]:
    import httpx

    r = httpx.post(f"{url}/v1/models/shop:recommend", json={"k": 5, **body}, timeout=30)
    assert r.status_code == 200, r.text
    reply = dict(r.json())
    assert re.fullmatch(r"[0-9a-f]{32}", reply["request_id"]) and r.headers["X-Request-Id"] == reply["request_id"]
    return reply


def ids(reply: dict[str, Any]) -> list[str]:
    return [it["item_id"] for it in reply["items"]]


class Server:
    """One running app for the module (a model loads in seconds): the tests point its
    store (or ``serve.live_history``) elsewhere with :meth:`using`."""

    def __init__(self, running: RunningServer, app: Any, path: str) -> None:
        self.running, self.url, self.path = running, running.url, path
        self.state = app.state.sparktf

    @contextmanager
    def using(self, store: Any = None, **serve: Any) -> Iterator[None]:
        saved = self.state.online, self.state.cfg
        if store is not None:
            self.state.online = store
        self.state.cfg = dataclasses.replace(self.state.cfg, **serve)
        try:
            yield
        finally:
            self.state.online, self.state.cfg = saved
            if store is not None:
                store.close()


@pytest.fixture(scope="module")
def server(world: dict[str, Any]) -> Iterator[Server]:
    path = str(world["root"] / "online" / "online.db")  # the stream has not made it yet
    app = _build(world, OnlineConfig(store="sqlite"), path)
    with RunningServer(app) as running:
        yield Server(running, app, path)


def test_build_app_opens_the_store_only_with_live_history(world: dict[str, Any], redis_server: str) -> None:
    from sparktf.online.store import RedisStore, SQLiteStore

    path = str(world["root"] / "elsewhere.db")
    assert isinstance(_build(world, OnlineConfig(), path).state.sparktf.online, SQLiteStore)
    assert _build(world, OnlineConfig(), path, live_history=False).state.sparktf.online is None
    assert _build(world, None).state.sparktf.online is None
    redis = _build(world, OnlineConfig(store="redis", redis_url=redis_server)).state.sparktf.online
    assert isinstance(redis, RedisStore)
    redis.close()


def test_live_history_first_then_features_then_none(server: Server, world: dict[str, Any]) -> None:
    import httpx

    from sparktf.online.store import SQLiteStore

    path = server.path
    user, other = "u1", "u2"
    before = recommend(server.url, user_id=user)  # no store file yet: the features, and no error
    assert before["history_source"] == "features" and before["history"] == world["contexts"][user]
    assert "live" not in before and "live_error" not in before

    writer = SQLiteStore(path)
    try:
        assert writer.apply(0, [state(user, ["i1", "i2", "i3"], 0), state(NEW_SHOPPER, ["i5", "i6"], 0)])
        reply = recommend(server.url, user_id=user)
        assert reply["history_source"] == "live" and reply["history"] == ["i1", "i2", "i3"]
        assert reply["live"] == {
            "session_id": f"{user}:live-0",
            "events": 3,
            "last_event_time": 1_767_225_603.0,
            "last_ack_time": 1_767_225_604.0,
            "batch_id": 0,
        }
        assert reply["fallback"] is None
        # The live history is the context and, with exclude_seen, excluded like the features'
        # recent items: the same answer as sending it as the request's history.
        sent = recommend(server.url, user_id=user, history=["i1", "i2", "i3"])
        assert sent["history_source"] == "request" and ids(sent) == ids(reply)
        assert not {"i1", "i2", "i3"} & set(ids(reply))
        assert not set(world["seen"][user]) & set(ids(reply))
        kept = recommend(server.url, user_id=user, exclude_seen=False)
        assert ids(kept) == ids(recommend(server.url, user_id=user, history=["i1", "i2", "i3"], exclude_seen=False))

        # The next micro-batch changes the next reply.
        assert writer.apply(1, [state(user, ["i1", "i2", "i3", "i9"], 1)])
        after = recommend(server.url, user_id=user)
        assert after["history"] == ["i1", "i2", "i3", "i9"] and after["live"]["batch_id"] == 1
        assert after["live"]["events"] == 4 and "i9" not in ids(after)

        # Not in the store: the features; known to neither: none, then the popular items.
        assert recommend(server.url, user_id=other)["history_source"] == "features"
        stranger = recommend(server.url, user_id="stranger")
        assert stranger["history_source"] == "none" and stranger["fallback"] == "popular"
        assert "live history" in stranger["reason"]
        # A brand-new shopper: the model does not know the user, but its live items.
        new = recommend(server.url, user_id=NEW_SHOPPER)
        assert new["history_source"] == "live" and new["fallback"] is None and len(new["items"]) == 5

        # /v1/users/{id}: the live block, with the items' attributes; a store-only user is found.
        doc = httpx.get(f"{server.url}/v1/users/{user}").json()
        assert [it["item_id"] for it in doc["live"]["items"]] == ["i1", "i2", "i3", "i9"]
        assert doc["live"]["items"][0]["category"] == "c1" and doc["live"]["events"] == 4
        assert doc["recent"] and doc["live"]["session_id"] == f"{user}:live-0"
        r = httpx.get(f"{server.url}/v1/users/{NEW_SHOPPER}")
        assert r.status_code == 200 and r.json()["recent"] == [] and r.json()["live"]["batch_id"] == 0
        assert "live" not in httpx.get(f"{server.url}/v1/users/{other}").json()
        missing = httpx.get(f"{server.url}/v1/users/stranger")
        assert missing.status_code == 404 and "nor in the online store" in missing.json()["error"]

        metrics = httpx.get(f"{server.url}/metrics").text
        assert re.search(r'sparktf_serving_live_lookups_total\{outcome="live"\} [1-9]', metrics)
        assert re.search(r'sparktf_serving_live_lookups_total\{outcome="missing"\} [1-9]', metrics)
        assert 'sparktf_serving_live_lookups_total{outcome="error"} 0.0' in metrics
    finally:
        writer.close()


def test_live_history_off_ignores_the_store(server: Server, tmp_path: Path) -> None:
    import httpx

    from sparktf.online.store import SQLiteStore

    path = str(tmp_path / "online.db")
    writer = SQLiteStore(path)
    writer.apply(0, [state("u1", ["i1", "i2"], 0), state(NEW_SHOPPER, ["i5"], 0)])
    writer.close()
    with server.using(SQLiteStore(path, readonly=True)):
        assert recommend(server.url, user_id="u1")["history_source"] == "live"
    with server.using(SQLiteStore(path, readonly=True), live_history=False):
        reply = recommend(server.url, user_id="u1")
        assert reply["history_source"] == "features" and "live" not in reply
        assert httpx.get(f"{server.url}/v1/users/{NEW_SHOPPER}").status_code == 404
        assert "live" not in httpx.get(f"{server.url}/v1/users/u1").json()


def test_a_store_that_is_not_a_database_falls_back_to_the_features(
    server: Server, world: dict[str, Any], tmp_path: Path
) -> None:
    import httpx

    from sparktf.online.store import SQLiteStore

    junk = tmp_path / "online.db"
    junk.write_bytes(b"this is not an SQLite database\n" * 200)
    with server.using(SQLiteStore(str(junk), readonly=True)):
        reply = recommend(server.url, user_id="u1")
        assert reply["history_source"] == "features" and reply["history"] == world["contexts"]["u1"]
        assert "could not be read" in reply["live_error"] and "live" not in reply
        assert "live_error" not in recommend(server.url, user_id="u1", history=["i1"])  # no lookup needed
        assert recommend(server.url, user_id="stranger")["fallback"] == "popular"
        doc = httpx.get(f"{server.url}/v1/users/u1")
        assert doc.status_code == 200 and "could not be read" in doc.json()["live_error"]
        metrics = httpx.get(f"{server.url}/metrics").text
        assert re.search(r'sparktf_serving_live_lookups_total\{outcome="error"\} [1-9]', metrics)


def test_redis_store_live_then_down(server: Server, redis_server: str, tmp_path: Path) -> None:
    from sparktf.online.store import RedisStore
    from tests.redis_support import start_redis

    writer = RedisStore(redis_server, "live-history-test")
    try:
        writer.apply(0, [state("u3", ["i4", "i8"], 0)])
        with server.using(RedisStore(redis_server, "live-history-test")):
            reply = recommend(server.url, user_id="u3")
            assert reply["history_source"] == "live" and reply["history"] == ["i4", "i8"]
            writer.apply(1, [state("u3", ["i4", "i8", "i12"], 1)])
            assert recommend(server.url, user_id="u3")["live"]["batch_id"] == 1
    finally:
        writer.close()

    # Redis goes away while the server runs: :recommend still answers, from the features.
    own = start_redis(tmp_path / "redis", "--requirepass", "s3cret-pw")
    try:
        with server.using(RedisStore(f"redis://:s3cret-pw@127.0.0.1:{own.port}/0", "down")):
            own.stop()
            reply = recommend(server.url, user_id="u3")
            assert (
                reply["history_source"] == "features" and "cannot reach the Redis online store" in reply["live_error"]
            )
            assert "s3cret-pw" not in reply["live_error"]
    finally:
        own.stop()
