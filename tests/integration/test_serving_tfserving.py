"""TF Serving's REST API on real SavedModels, from the examples of its REST documentation."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sparktf.config import ServeConfig

from .serving_support import save_half_plus


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models") / "half_plus_three"
    root.mkdir()
    save_half_plus(root, 1, 2.0)  # half_plus_two
    save_half_plus(root, 123, 3.0)  # half_plus_three, as in the docs
    return root


def client_for(base: Path, **serve: Any) -> Any:
    from fastapi.testclient import TestClient

    from sparktf.serving.app import create_app
    from sparktf.serving.repository import BasePathSource, ModelRepository, load_version

    cfg = ServeConfig(poll_interval_s=0, **serve)
    source = BasePathSource(str(base), pinned=cfg.versions, labels=cfg.labels)
    app = create_app(ModelRepository(source, load_version, "half_plus_three"), cfg)
    return TestClient(app)


@pytest.fixture(scope="module")
def client(base: Path) -> Iterator[Any]:
    with client_for(base, versions=(1,), labels={"stable": "1", "canary": "123"}) as c:
        deadline = time.monotonic() + 120
        while c.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        yield c


def test_the_docs_curl_examples(client: Any) -> None:
    status = client.get("/v1/models/half_plus_three/versions/123")
    assert status.status_code == 200
    assert status.json() == {
        "model_version_status": [
            {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    r = client.post("/v1/models/half_plus_three:predict", content=b'{"instances": [1.0,2.0,5.0]}')
    assert r.status_code == 200 and r.json() == {"predictions": [3.5, 4.0, 5.5]}
    r = client.post(
        "/v1/models/half_plus_three:regress",
        json={"signature_name": "tensorflow/serving/regress", "examples": [{"x": 1.0}, {"x": 2.0}]},
    )
    assert r.status_code == 200 and r.json() == {"results": [3.5, 4.0]}
    r = client.post("/v1/models/half:predict", content=b'{"instances": [1.0,5.0]}')
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert r.json() == {"error": "Servable not found for request: Latest(half)"}


def test_status_lists_every_loaded_version_and_selectors_pick_one(client: Any) -> None:
    versions = [s["version"] for s in client.get("/v1/models/half_plus_three").json()["model_version_status"]]
    assert versions == ["123", "1"]
    body = {"instances": [1.0]}
    assert client.post("/v1/models/half_plus_three/versions/1:predict", json=body).json() == {"predictions": [2.5]}
    assert client.post("/v1/models/half_plus_three/labels/stable:predict", json=body).json() == {"predictions": [2.5]}
    assert client.post("/v1/models/half_plus_three/labels/canary:predict", json=body).json() == {"predictions": [3.5]}
    stable = client.get("/v1/models/half_plus_three/labels/stable").json()
    assert [s["version"] for s in stable["model_version_status"]] == ["1"]
    for path, code in [
        ("/v1/models/half_plus_three/versions/7:predict", 404),
        ("/v1/models/half_plus_three/labels/nope:predict", 404),
        ("/v1/models/half_plus_three/versions/x:predict", 400),
    ]:
        r = client.post(path, json=body)
        assert r.status_code == code and r.json()["error"]


def test_metadata_shows_every_signature(client: Any) -> None:
    meta = client.get("/v1/models/half_plus_three/versions/1/metadata").json()
    assert meta["model_spec"] == {"name": "half_plus_three", "signature_name": "", "version": "1"}
    defs = meta["metadata"]["signature_def"]["signature_def"]
    assert set(defs) == {"serving_default", "tensorflow/serving/regress", "multi"}
    assert defs["multi"]["inputs"]["signal"]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""},
        {"size": "3", "name": ""},
    ]
    assert defs["multi"]["inputs"]["tag"]["dtype"] == "DT_STRING"
    assert set(defs["multi"]["outputs"]) == {"sum", "tag_bytes", "upper"}


def test_several_inputs_and_outputs_row_and_columnar_with_b64(client: Any) -> None:
    rows = {
        "signature_name": "multi",
        "instances": [{"tag": "foo", "signal": [1, 2, 3]}, {"tag": {"b64": "YmFy"}, "signal": [3, 4, 1.5]}],
    }
    r = client.post("/v1/models/half_plus_three:predict", json=rows)
    assert r.status_code == 200
    assert r.json() == {
        "predictions": [
            {"sum": 6.0, "tag_bytes": {"b64": "Zm9v"}, "upper": "FOO"},
            {"sum": 8.5, "tag_bytes": {"b64": "YmFy"}, "upper": "BAR"},
        ]
    }
    cols = {"signature_name": "multi", "inputs": {"tag": ["foo", "bar"], "signal": [[1, 2, 3], [3, 4, 1.5]]}}
    r = client.post("/v1/models/half_plus_three:predict", json=cols)
    assert r.json() == {
        "outputs": {"sum": [6.0, 8.5], "tag_bytes": [{"b64": "Zm9v"}, {"b64": "YmFy"}], "upper": ["FOO", "BAR"]}
    }
    r = client.post("/v1/models/half_plus_three:predict", json={"inputs": [1.0, 5.0]})
    assert r.json() == {"outputs": [2.5 + 1.0, 5.5]}


def test_nan_and_infinity_round_trip(client: Any) -> None:
    r = client.post("/v1/models/half_plus_three:predict", content=b'{"instances": [NaN, Infinity, -Infinity]}')
    assert r.status_code == 200 and r.text == '{"predictions":[NaN,Infinity,-Infinity]}'


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"instances": [1.0], "inputs": [1.0]}', 400),
        (b'{"instances": ["a"]}', 400),
        (b'{"signature_name": "multi", "inputs": {"tag": ["a"], "signal": [[1, 2]]}}', 400),
        (b'{"signature_name": "nope", "instances": [1.0]}', 400),
        (b"not json", 400),
        (b"", 400),
        (b'{"instances": [' + b"1.0," * 70 + b"1.0]}", 400),  # more rows than serve.max_batch_size (64)
    ],
)
def test_malformed_predict_requests_get_a_400_with_a_message(client: Any, body: bytes, status: int) -> None:
    r = client.post("/v1/models/half_plus_three:predict", content=body)
    assert r.status_code == status and r.json()["error"]


def test_operations_endpoints(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["default_version"] == 123 and ready["versions"] == [1, 123]
    with caplog.at_level(logging.INFO, logger="sparktf.serving.access"):
        client.post("/v1/models/half_plus_three:predict", json={"instances": [1.0]})
    line = json.loads([r.message for r in caplog.records if r.name == "sparktf.serving.access"][-1])
    assert line["status"] == 200 and line["endpoint"] == "/v1/models/{model_name}:predict" and line["ms"] >= 0
    text = client.get("/metrics").text
    assert (
        'sparktf_serving_requests_total{endpoint="/v1/models/{model_name}:predict",method="POST",status="200"}' in text
    )
    assert 'sparktf_serving_request_latency_seconds_bucket{endpoint="/v1/models/{model_name}:predict"' in text
    assert 'sparktf_serving_batch_size_count{kind="predict"}' in text
    assert 'sparktf_serving_model_version{default="true",model="half_plus_three",version="123"} 1.0' in text
    schema = client.get("/openapi.json").json()
    assert "/v1/models/{model_name}:predict" in schema["paths"]
    assert "/v1/models/{model_name}/labels/{label}:recommend" in schema["paths"]


def test_bearer_token_and_body_limit(base: Path) -> None:
    with client_for(base, auth_token="s3cret", max_body_bytes=2048) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/v1/models/half_plus_three")
        assert r.status_code == 401 and "Authorization: Bearer" in r.json()["error"]
        assert c.get("/v1/models/half_plus_three", headers={"Authorization": "Bearer nope"}).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        deadline = time.monotonic() + 120
        while c.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        ok = c.post("/v1/models/half_plus_three:predict", json={"instances": [1.0]}, headers=auth)
        assert ok.status_code == 200
        big = b'{"instances": [' + b"1.0," * 1000 + b"1.0]}"
        r = c.post("/v1/models/half_plus_three:predict", content=big, headers=auth)
        assert r.status_code == 413 and "serve.max_body_bytes" in r.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted while reading
            yield big[:1000]
            yield big[1000:]

        r = c.post("/v1/models/half_plus_three:predict", content=chunks(), headers=auth)
        assert r.status_code == 413
