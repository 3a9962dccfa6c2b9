"""`:recommend` request checks, the serve config and the version repository (no model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sparktf.config import load_config
from sparktf.errors import ConfigError, ServingError
from sparktf.serving.recommend import RecommendQuery, parse_recommend_request
from sparktf.serving.repository import BasePathSource, LoadedVersion, ModelRepository, Snapshot, source_for


def parse(body: dict[str, Any]) -> RecommendQuery:
    return parse_recommend_request(body, default_k=10, max_k=100)


def test_recommend_request_fields() -> None:
    q = parse({"user_id": "u1", "history": ["a", "b"], "k": 3, "exclude": ["c"], "exclude_seen": False})
    assert q == RecommendQuery("u1", ("a", "b"), 3, ("c",), False, False)
    assert parse({}) == RecommendQuery(None, (), 10)
    assert parse({"user_id": 42, "history": [7]}).history == ("7",)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"k": 0}, "'k' must be an integer from 1 to 100"),
        ({"k": 101}, "serve.max_k"),
        ({"k": True}, "'k'"),
        ({"k": "3"}, "'k'"),
        ({"user_id": ""}, "'user_id' must have 1 to"),
        ({"user_id": ["u"]}, "'user_id' must be a string"),
        ({"history": "a,b"}, "'history' must be a list"),
        ({"history": ["a", None]}, "history[1]"),
        ({"history": ["x"] * 1001}, "at most 1000"),
        ({"exclude": [{"b64": "x"}]}, "exclude[0]"),
        ({"attributes": "yes"}, "'attributes' must be true or false"),
        ({"users": ["u"]}, "Unknown field 'users'"),
        # JSON's "\ud800" escape is no character: each id is refused by name at parse
        # time, before it could fail a micro-batch shared with other requests.
        ({"user_id": "u\ud800"}, "'user_id' is not valid Unicode text: character 1 is a lone surrogate"),
        ({"history": ["i1", "\udfff"]}, "history[1] is not valid Unicode text"),
        ({"exclude": ["\ud800x"]}, "exclude[0] is not valid Unicode text"),
        ({"history": ["x" * 513]}, "history[0] must have 1 to 512 characters"),
    ],
)
def test_bad_recommend_requests_are_400(body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ServingError) as exc:
        parse(body)
    assert exc.value.context["status"] == 400 and fragment in exc.value.message


def test_serve_config_checks_its_fields() -> None:
    cfg = load_config(overrides=['serve.labels={stable = "3", canary = "challenger"}', "serve.versions=[1, 2]"])
    assert cfg.serve.labels == {"stable": "3", "canary": "challenger"} and cfg.serve.versions == (1, 2)
    for override, fragment in [
        ('serve.labels={"bad-label" = "1"}', "[a-zA-Z0-9_]+"),
        ("serve.default_k=5000", "serve.max_k (1000)"),
        ("serve.batch_threads=0", "between 1 and 256"),
        ("serve.poll_interval_s=-1", "0 (off)"),
        ("serve.model_name='a b'", "letters, digits"),
    ]:
        with pytest.raises(ConfigError, match="serve") as exc:
            load_config(overrides=[override])
        assert fragment in str(exc.value)


class FakeServable:
    """Stands in for a SavedModel version in repository bookkeeping tests."""

    def __init__(self, version: int, path: str) -> None:
        self.version, self.path, self.signatures = version, path, {}

    def run(self, signature: str, inputs: Any) -> dict[str, Any]:
        return {}


def make_versions(base: Path, versions: list[int]) -> None:
    for v in versions:
        (base / str(v)).mkdir(parents=True, exist_ok=True)
        (base / str(v) / "saved_model.pb").write_bytes(b"")


def test_base_path_follows_the_highest_version_and_keeps_pinned_and_labelled_ones(tmp_path: Path) -> None:
    make_versions(tmp_path, [1, 2, 5])
    (tmp_path / "7").mkdir()  # no SavedModel yet: an export in progress is not a version
    (tmp_path / "tmp").mkdir()
    res = BasePathSource(str(tmp_path), pinned=(1,), labels={"stable": "2"}).resolve()
    assert sorted(res.paths) == [1, 2, 5] and res.default == 5 and res.labels == {"stable": 2}


def test_repository_swaps_only_after_the_new_version_loaded(tmp_path: Path) -> None:
    make_versions(tmp_path, [1])
    loads: list[int] = []

    def loader(version: int, path: str) -> LoadedVersion:
        loads.append(version)
        if version == 3:
            raise RuntimeError("corrupt variables")
        return LoadedVersion(version, FakeServable(version, path))

    repo = ModelRepository(BasePathSource(str(tmp_path)), loader, "m")
    assert repo.refresh() and repo.snapshot.default == 1
    before = repo.snapshot
    held = before.resolve("m")
    held.acquire()  # a request in flight on version 1
    make_versions(tmp_path, [2])
    assert repo.refresh()
    assert repo.snapshot.default == 2 and sorted(repo.snapshot.versions) == [2]
    assert before.resolve("m") is held  # the old snapshot still answers the old request
    held.release()
    make_versions(tmp_path, [3])
    assert not repo.refresh()  # version 3 fails to load: 2 keeps serving, the failure is reported
    assert repo.snapshot.default == 2
    assert (3, "END", "UNKNOWN", "RuntimeError: corrupt variables") in repo.status()
    assert loads == [1, 2, 3]


def test_a_retired_version_is_freed_by_the_reload_thread_after_two_idle_refreshes(tmp_path: Path) -> None:
    """TF's remove_function is not safe against a concurrent one (tensorflow#59242): a retired
    version must be freed where the versions are loaded, never by a request thread that happens
    to drop the last reference. The repository lets go of it only after two idle refreshes."""
    import weakref

    make_versions(tmp_path, [1])
    repo = ModelRepository(BasePathSource(str(tmp_path)), lambda v, path: LoadedVersion(v, FakeServable(v, path)), "m")
    repo.refresh()
    old = weakref.ref(repo.snapshot.resolve("m"))
    make_versions(tmp_path, [2])
    assert repo.refresh() and repo.snapshot.default == 2
    assert old() is not None  # retired, idle once: kept (a request may just have released it)
    repo.refresh()
    assert old() is None  # idle at a second refresh: freed here, and collected


def test_snapshot_answers_in_tf_servings_words() -> None:
    lv = LoadedVersion(4, FakeServable(4, "/x/4"))
    snap = Snapshot("m", {4: lv}, {"stable": 4}, 4)
    assert snap.resolve("m") is lv and snap.resolve("m", label="stable") is lv and snap.resolve("m", 4) is lv
    for kwargs, text in [
        ({"name": "half"}, "Servable not found for request: Latest(half)"),
        ({"name": "m", "version": 3}, "Specific(m, 3)"),
        ({"name": "m", "label": "canary"}, "Unrecognized servable version label: canary"),
    ]:
        with pytest.raises(ServingError) as exc:
            snap.resolve(**kwargs)
        assert exc.value.context["status"] == 404 and text in exc.value.message
    with pytest.raises(ServingError) as exc:
        Snapshot("m", {}, {}, None).resolve("m")
    assert exc.value.context["status"] == 503


def test_model_uris() -> None:
    src = source_for("models:/recsys@champion", tracking_uri="sqlite:///x.db", cache_dir="/tmp/c")
    assert (src.name, getattr(src, "alias")) == ("recsys", "champion")
    assert getattr(source_for("models:/recsys/3", tracking_uri="", cache_dir=""), "fixed_version") == 3
    assert getattr(source_for("models:/recsys/3", tracking_uri="", cache_dir=""), "alias") is None
    assert isinstance(source_for("file:///models/recsys", tracking_uri="", cache_dir=""), BasePathSource)


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        # The registry's own parser speaks (sparktf.registry.uri), with its message.
        ("models:/recsys", "is not of the form models:/name@alias, models:/name/<version>"),
        ("models:/a/b/c", "is not of the form"),
        ("models:/recsys@1st", "is not of the form"),
        # Forms the registry accepts but a server cannot follow.
        ("models:/recsys/latest", "does not follow 'latest'"),
        ("models:/recsys@champion/sparktf/index", "names 'sparktf/index' inside the model"),
        ("models:/m-0123abcd", "is an MLflow logged model"),
        ("s3://bucket/model", "only local base paths and models:/ URIs are served"),
    ],
)
def test_model_uris_the_server_cannot_follow_are_400(uri: str, fragment: str) -> None:
    with pytest.raises(ServingError) as exc:
        source_for(uri, tracking_uri="", cache_dir="")
    assert exc.value.context["status"] == 400 and fragment in exc.value.message, exc.value.message


def test_a_newest_version_that_fails_to_load_does_not_hide_an_older_one_at_start(tmp_path: Path) -> None:
    """A half-written or damaged newest folder at start-up: the newest older version
    that loads serves (before, nothing did and /readyz stayed 503), and the bad one is
    retried on each poll and takes over once it loads."""
    make_versions(tmp_path, [1, 2, 3])
    broken = {3, 2}

    def loader(version: int, path: str) -> LoadedVersion:
        if version in broken:
            raise RuntimeError(f"version {version} is half-written")
        return LoadedVersion(version, FakeServable(version, path))

    repo = ModelRepository(BasePathSource(str(tmp_path)), loader, "m")
    assert repo.refresh() and repo.ready
    assert repo.snapshot.default == 1 and sorted(repo.snapshot.versions) == [1]
    assert "version 3 is half-written" in repo.last_error
    assert (3, "END", "UNKNOWN", "RuntimeError: version 3 is half-written") in repo.status()
    broken.clear()  # the export finished
    assert repo.refresh()
    assert repo.snapshot.default == 3 and sorted(repo.snapshot.versions) == [3] and not repo.last_error


def test_users_are_listed_in_natural_order_with_their_total() -> None:
    """The page's user list: numeric ids as numbers ("9" before "10", "u2" before "u10");
    string order put "10" before "9" and "u10" before "u2"."""
    from sparktf.serving.features import FeatureLookup

    ids = ["10", "9", "100", "u10", "u2", "u1", "b"]
    lookup = FeatureLookup(recent={u: () for u in ids[:4]}, seen={u: frozenset() for u in ids[3:]})
    assert lookup.users() == ["9", "10", "100", "b", "u1", "u2", "u10"]
    assert lookup.users("u", limit=2) == ["u1", "u2"] and lookup.user_count("u") == 3
    assert lookup.user_count() == 7
