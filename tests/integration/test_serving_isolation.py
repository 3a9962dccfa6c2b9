"""A bad request fails alone: poison ids, oversized numbers and model errors under
concurrent good traffic, on a real uvicorn server with a real exported model."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sparktf.config import ServeConfig

from .serving_support import RunningServer, export_recommender, save_file_reader, write_features

pytestmark = pytest.mark.slow

HISTORIES = [["i1", "i2"], ["i5"], ["i7", "i3", "i9"], ["i20", "i21"]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    from functools import partial

    from sparktf.serving.app import create_app
    from sparktf.serving.features import load_features
    from sparktf.serving.repository import BasePathSource, ModelRepository, load_version

    root: Path = tmp_path_factory.mktemp("isolation")
    export_recommender(root / "recsys", 1, seed=4)
    write_features(root / "features")
    features = load_features(str(root / "features"))
    repo = ModelRepository(BasePathSource(str(root / "recsys")), partial(load_version, features=features))
    # A wide batching window, so that concurrent requests do share batches.
    cfg = ServeConfig(poll_interval_s=0, batch_timeout_micros=5000, batch_threads=1)
    with RunningServer(create_app(repo, cfg, features)) as running:
        yield running


POISON: list[tuple[str, bytes, str]] = [
    # JSON's \ud800 escape decodes to a lone surrogate, which no model input can hold.
    ("user_id", b'{"user_id": "u\\ud800", "k": 3}', "'user_id' is not valid Unicode text"),
    ("history", b'{"history": ["i1", "\\udfff"], "k": 3}', "history[1] is not valid Unicode text"),
    ("k", b'{"k": ' + b"9" * 5000 + b"}", "more than 4300 digits"),
    ("json", b'{"history": ["i1"', "JSON Parse error"),
]


def test_good_requests_all_succeed_beside_poison_ones(server: RunningServer) -> None:
    """300 good :recommend requests over 8 threads, while 2 threads send poison: every good
    one succeeds and every poison one is a 400 naming its field. Before, a lone surrogate
    raised inside the shared micro-batch and failed every request batched with it (500)."""
    import httpx

    good: list[tuple[int, Any]] = []
    bad: list[tuple[str, int, str]] = []
    done = threading.Event()

    def send_good(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for i in range(n):
                history = HISTORIES[i % len(HISTORIES)]
                r = client.post("/v1/models/recsys:recommend", json={"user_id": "u1", "history": history, "k": 4})
                good.append((r.status_code, r.json() if r.status_code == 200 else r.text))

    def send_poison() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            i = 0
            while not done.is_set() or i < len(POISON):
                field, body, _ = POISON[i % len(POISON)]
                r = client.post("/v1/models/recsys:recommend", content=body)
                bad.append((field, r.status_code, r.text))
                i += 1

    poisoners = [threading.Thread(target=send_poison) for _ in range(2)]
    senders = [threading.Thread(target=send_good, args=(300 // 8 + (1 if t < 300 % 8 else 0),)) for t in range(8)]
    for t in poisoners + senders:
        t.start()
    for t in senders:
        t.join(timeout=300)
    done.set()
    for t in poisoners:
        t.join(timeout=60)

    assert len(good) == 300
    failures = [g for g in good if g[0] != 200]
    assert not failures, f"{len(failures)} of 300 good requests failed, e.g. {failures[:3]}"
    assert all(len(reply["items"]) == 4 and reply["model_version"] == "1" for _, reply in good)
    assert len(bad) >= len(POISON)
    expected = {field: fragment for field, _, fragment in POISON}
    for field, status, text in bad:
        assert status == 400 and expected[field] in text, (field, status, text)
    # The poison really rode in batches with good requests, and those batches were rerun one by one.
    metrics = httpx.get(f"{server.url}/metrics").text
    assert (
        'sparktf_serving_requests_total{endpoint="/v1/models/{model_name}:recommend",method="POST",status="500"}'
        not in (metrics)
    )


def test_a_failing_predict_row_fails_alone_and_a_500_names_only_an_error_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A model error (a NotFoundError inside the graph, whose text holds a server path) for
    one request of a batch: that request gets a 500 without the exception's text (it has an
    error id the log explains); its batch-mates get their answers."""
    import httpx

    from sparktf.serving.app import create_app
    from sparktf.serving.repository import BasePathSource, ModelRepository, load_version

    base = tmp_path / "reader"
    base.mkdir()
    save_file_reader(base, 1)
    present = tmp_path / "present.txt"
    present.write_text("12345")
    secret = str(tmp_path / "secret-dir" / "missing.txt")
    repo = ModelRepository(BasePathSource(str(base)), load_version, "reader")
    cfg = ServeConfig(poll_interval_s=0, batch_timeout_micros=20_000, batch_threads=1)
    results: list[tuple[str, int, str]] = []

    def send(kind: str, path: str, n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for _ in range(n):
                r = client.post("/v1/models/reader:predict", json={"instances": [path]})
                results.append((kind, r.status_code, r.text))

    with caplog.at_level(logging.ERROR, logger="sparktf.serving.app"), RunningServer(create_app(repo, cfg)) as server:
        threads = [threading.Thread(target=send, args=("good", str(present), 20)) for _ in range(4)]
        threads.append(threading.Thread(target=send, args=("bad", secret, 5)))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        metrics = httpx.get(f"{server.url}/metrics").text

    assert [r for r in results if r[0] == "good" and (r[1], r[2]) != (200, '{"predictions":[5]}')] == []
    bad = [r for r in results if r[0] == "bad"]
    assert len(bad) == 5 and all(status == 500 for _, status, _ in bad)
    for _, _, text in bad:
        assert "secret-dir" not in text and "NotFound" not in text and "error id" in text, text
    error_id = bad[0][2].split("error id ")[1].split(".")[0]
    assert any(error_id in r.getMessage() and "secret-dir" in r.getMessage() for r in caplog.records)
    assert 'sparktf_serving_isolated_batches_total{kind="predict"}' in metrics
