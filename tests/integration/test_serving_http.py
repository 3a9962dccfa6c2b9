"""HTTP behaviour of a real server: slow clients are cut off, HEAD and unknown paths are
answered as HTTP says, /docs exists, and SIGTERM is a clean stop."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparktf.config import ServeConfig

from .serving_support import RunningServer, free_port, save_half_plus, wait_ready

pytestmark = pytest.mark.slow

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("http") / "half"
    root.mkdir()
    save_half_plus(root, 1, 2.0)
    return root


@pytest.fixture(scope="module")
def server(base: Path) -> Iterator[RunningServer]:
    from sparktf.serving.app import create_app
    from sparktf.serving.repository import BasePathSource, ModelRepository, load_version

    repo = ModelRepository(BasePathSource(str(base)), load_version, "half")
    app = create_app(repo, ServeConfig(poll_interval_s=0), body_timeout_s=BODY_TIMEOUT_S)
    with RunningServer(app, header_timeout_s=HEADER_TIMEOUT_S) as running:
        yield running


def trickle(sock: socket.socket, data: bytes, every_s: float, give_up_s: float) -> tuple[bytes, bool, float]:
    """Send ``data`` a byte every ``every_s`` seconds until the server answers and closes
    (or ``give_up_s`` passes). Returns what the server sent, whether it reset the
    connection (a reply can be lost to the reset when it closes as a byte arrives), and
    after how long."""
    start = time.monotonic()
    received = b""
    for i in range(len(data)):
        if time.monotonic() - start > give_up_s:
            return received, False, time.monotonic() - start
        try:
            if select.select([sock], [], [], every_s)[0]:  # the server spoke: read to the end
                sock.settimeout(5)
                while chunk := sock.recv(65536):
                    received += chunk
                return received, False, time.monotonic() - start
            sock.sendall(data[i : i + 1])
        except ConnectionError:
            return received, True, time.monotonic() - start
    raise AssertionError(f"ran out of {len(data)} bytes to send before the server cut the connection")


def test_headers_sent_a_byte_at_a_time_are_cut_off(server: RunningServer) -> None:
    """Slowloris: each byte used to restart uvicorn's keep-alive wait, so the connection
    lived as long as the client kept sending. Now the headers have a deadline."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 400
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        received, reset, took = trickle(sock, request, every_s=0.05, give_up_s=20)
    assert took < HEADER_TIMEOUT_S + 5
    assert reset or received.startswith(b"HTTP/1.1 408 Request Timeout"), received[:200]
    assert reset or b"did not arrive within 1 s" in received


def test_a_body_sent_a_byte_at_a_time_is_cut_off(server: RunningServer) -> None:
    head = (
        b"POST /v1/models/half:predict HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 800\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(head)
        received, reset, took = trickle(sock, b'{"instances": [' + b"1.0, " * 150, every_s=0.05, give_up_s=20)
    assert took < BODY_TIMEOUT_S + 5
    assert reset or received.startswith(b"HTTP/1.1 408"), received[:300]
    assert reset or b"did not arrive within 1 s of its headers" in received
    assert reset or b"connection: close" in received.lower()


def test_requests_sent_at_once_are_not_affected_by_the_deadlines(server: RunningServer) -> None:
    import httpx

    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(3):
            assert client.post("/v1/models/half:predict", json={"instances": [1.0]}).json() == {"predictions": [2.5]}
            time.sleep(0.3)  # idle between requests on one keep-alive connection, under the deadline


def test_head_unknown_paths_and_docs(server: RunningServer) -> None:
    import httpx

    head = httpx.head(f"{server.url}/")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-type"].startswith("text/html")
    assert httpx.head(f"{server.url}/healthz").status_code == 200
    missing = httpx.get(f"{server.url}/no/such/path")
    assert missing.status_code == 404
    assert missing.json()["error"].startswith("Not found: GET /no/such/path is not an endpoint")
    wrong = httpx.delete(f"{server.url}/healthz")
    assert wrong.status_code == 405 and wrong.json()["error"].startswith("Method not allowed")
    docs = httpx.get(f"{server.url}/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "/v1/models/{model_name}:recommend" in docs.text and 'href="/openapi.json"' in docs.text
    assert "cdn" not in docs.text.lower()  # nothing to fetch from outside


def test_sigterm_finishes_in_flight_work_logs_one_line_and_exits_0(base: Path, tmp_path: Path) -> None:
    """`sparktf serve`'s code path (run_serve, from the config): SIGTERM used to end the
    process with 143 and no word."""
    import httpx

    port = free_port()
    code = (
        "import sys; from sparktf.config import load_config; from sparktf.stages.serve import run_serve; "
        "run_serve(load_config(overrides=sys.argv[2:]), sys.argv[1])"
    )
    cmd = [
        sys.executable, "-c", code, str(base),
        f"workdir={str(tmp_path / 'work')!r}", f"serve.port={port}", "serve.poll_interval_s=0",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 180, httpx)
        assert httpx.post(f"{url}/v1/models/half:predict", json={"instances": [1.0]}).json() == {"predictions": [2.5]}
        os.kill(proc.pid, signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        out = proc.communicate(timeout=60)[0].decode(errors="replace")
    assert rc == 0, out[-2000:]
    assert "sparktf serve: stopped on SIGTERM after finishing the requests in flight." in out, out[-2000:]
