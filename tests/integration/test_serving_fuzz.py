"""Schema-based fuzzing of the server's OpenAPI document (schemathesis): whatever a client
sends to any operation, the answer is never a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from sparktf.config import ServeConfig

from .serving_support import RunningServer, export_recommender, write_features

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    from functools import partial

    from sparktf.online.events import EventRules
    from sparktf.online.landing import LandingWriter
    from sparktf.serving.app import create_app
    from sparktf.serving.features import load_features
    from sparktf.serving.repository import BasePathSource, ModelRepository, load_version

    root: Path = tmp_path_factory.mktemp("fuzz")
    export_recommender(root / "recsys", 1, seed=3)
    features = load_features(str(write_features(root / "features") and root / "features"))
    repo = ModelRepository(BasePathSource(str(root / "recsys")), partial(load_version, features=features))
    cfg = ServeConfig(poll_interval_s=0, max_k=50, default_k=5, max_body_bytes=65536, max_events=100)
    # POST /v1/events is fuzzed with a landing directory, as `sparktf serve` of a local workdir has.
    rules = EventRules(("view", "add_to_cart", "purchase"), "1995-01-01", "2100-01-01", max_future_s=60.0)
    landing = LandingWriter(str(root / "landing"))
    with RunningServer(create_app(repo, cfg, features, events=rules, landing=landing)) as running:
        yield running


def test_no_request_to_any_operation_gets_a_server_error(server: RunningServer) -> None:
    from hypothesis import given

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    problems: list[str] = []

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
        )
        def one(case: Any) -> None:
            response = case.call(timeout=30)
            if response.status_code >= 500:
                problems.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")
            elif response.status_code >= 400 and not response.json().get("error"):
                problems.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code} without an error message"
                )

        one()
    assert not problems, problems[:5]
    # The fuzzing really reached the server, with good and bad requests alike (most
    # generated bodies are invalid: derandomized, the same ~11 of ~400 succeed each run).
    import httpx

    counts: dict[str, float] = {}
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        # /readyz answered 503 while the server started up, before the fuzzing.
        if line.startswith("sparktf_serving_requests_total{") and 'endpoint="/readyz"' not in line:
            status = line.split('status="')[1][0] + "xx"
            counts[status] = counts.get(status, 0.0) + float(line.split()[-1])
    assert counts.get("2xx", 0) >= 5 and counts.get("4xx", 0) > 50 and "5xx" not in counts, counts
