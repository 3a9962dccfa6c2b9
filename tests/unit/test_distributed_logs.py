"""Log streaming between tasks and the driver, over loopback sockets (no Spark)."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from sparktf.distributed.logs import LogClient, LogServer, worker_prefix
from sparktf.distributed.result import WorkerFailure
from sparktf.errors import LauncherError


def _server(lines: list[str]) -> LogServer:
    lock = threading.Lock()

    def sink(line: str) -> None:
        with lock:
            lines.append(line)

    return LogServer(advertise_host="127.0.0.1", bind_host="127.0.0.1", sink=sink)


def _client(server: LogServer, rank: int, attempt: int = 1) -> LogClient:
    return LogClient.connect(server.address, token=server.token, rank=rank, attempt=attempt, host="127.0.0.1")


def test_lines_arrive_prefixed_with_rank_and_attempt_in_order() -> None:
    lines: list[str] = []
    server = _server(lines)
    try:
        c0, c1 = _client(server, 0), _client(server, 1, attempt=2)
        for i in range(50):
            c0.line(f"step {i}\n")
        c1.line("hello from 1")
        c0.close()
        c1.close()
        assert server.wait(lambda: len(lines) == 51, 10)
        assert [ln for ln in lines if ln.startswith("[worker 0]")] == [f"[worker 0] step {i}" for i in range(50)]
        assert "[worker 1, attempt 2] hello from 1" in lines
        assert server.started(1) == 1 and server.started(2) == 1
        assert server.wait_closed(1, 10) and server.wait_closed(2, 10)
    finally:
        server.close()


def test_failures_are_recorded_per_attempt() -> None:
    server = _server([])
    try:
        client = _client(server, 1, attempt=3)
        failure = WorkerFailure(1, "127.0.0.1", 3, "died", "killed by SIGKILL", ("a", "b"), -9, "SIGKILL", 12.5)
        assert client.failure(failure)
        assert server.wait(lambda: bool(server.attempt(3).failures), 10)
        assert server.failures(3) == [failure]
        assert server.failures(1) == []
        client.close()
    finally:
        server.close()


def test_abort_reaches_every_connected_task() -> None:
    server = _server([])
    try:
        clients = [_client(server, r) for r in range(2)]
        assert server.wait(lambda: server.attempt(1).open_connections == 2, 10)
        hits: list[int] = []
        for r, c in enumerate(clients):
            c.on_abort(lambda r=r: hits.append(r))
        server.abort(1)
        assert all(c.aborted.wait(10) for c in clients)
        assert sorted(hits) == [0, 1]
        for c in clients:
            c.close()
    finally:
        server.close()


def test_done_is_recorded_and_dump_reaches_only_the_named_worker() -> None:
    server = _server([])
    try:
        clients = [_client(server, r) for r in range(2)]
        dumped: list[int] = []
        got_dump = threading.Event()
        for r, c in enumerate(clients):
            c.on_dump(lambda r=r: (dumped.append(r), got_dump.set()))
        clients[1].done()
        assert server.wait(lambda: 1 in server.attempt(1).done, 10)
        assert list(server.done(1)) == [1]
        server.dump(1, 0)
        assert got_dump.wait(10)
        assert dumped == [0]
        for c in clients:
            c.close()
    finally:
        server.close()


def test_a_connection_without_the_token_is_ignored() -> None:
    lines: list[str] = []
    server = _server(lines)
    try:
        sock = socket.create_connection(server.address, timeout=10)
        hello = {"t": "hello", "token": "wrong", "rank": 0, "attempt": 1, "host": "x"}
        sock.sendall((json.dumps(hello) + "\n" + json.dumps({"t": "line", "s": "injected"}) + "\n").encode())
        assert sock.recv(10) == b""  # the server hung up
        sock.close()
        assert server.started(1) == 0 and lines == []
    finally:
        server.close()


def test_an_unreachable_driver_falls_back_to_the_echo() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    echoed: list[str] = []
    client = LogClient.connect(("127.0.0.1", port), token="t", rank=0, attempt=1, host="h", echo=echoed.append)
    client.line("still visible")
    assert not client.failure(WorkerFailure(0, "h", 1, "died", "x"))
    assert echoed[0].startswith("sparktf: cannot stream logs to the driver")
    assert echoed[-1] == "still visible"


def test_prefix() -> None:
    assert worker_prefix(3, 1) == "[worker 3]"
    assert worker_prefix(3, 2) == "[worker 3, attempt 2]"


# --------------------------------------------------------------------------- where the server listens


def test_the_bind_address_is_never_a_wildcard() -> None:
    from sparktf.distributed.logs import server_bind_host

    assert server_bind_host("10.0.0.5", "driver.example") == "10.0.0.5"
    for wildcard in (None, "", "0.0.0.0", "::", "[::]"):
        assert server_bind_host(wildcard, "10.0.0.7") == "10.0.0.7"
    with pytest.raises(LauncherError, match="spark.driver.host"):
        server_bind_host("0.0.0.0", "0.0.0.0")


def test_log_server_hosts_are_loopback_on_a_local_master_and_the_drivers_otherwise() -> None:
    from sparktf.distributed.logs import log_server_hosts

    for master in ("local", "local[2]", "local[*]", "local-cluster[2,1,1024]"):
        assert log_server_hosts(master, "10.1.2.3", None) == ("127.0.0.1", "127.0.0.1")
    assert log_server_hosts("spark://m:7077", "10.1.2.3", None) == ("10.1.2.3", "10.1.2.3")
    assert log_server_hosts("yarn", "10.1.2.3", "0.0.0.0") == ("10.1.2.3", "10.1.2.3")
    assert log_server_hosts("k8s://https://api:6443", "driver-svc", "10.4.0.9") == ("driver-svc", "10.4.0.9")


def test_a_server_given_a_wildcard_listens_on_the_advertised_address_only() -> None:
    # What the launcher asks for when spark.driver.bindAddress is unset.
    server = LogServer(advertise_host="127.0.0.1", bind_host="0.0.0.0", sink=lambda _line: None)
    try:
        assert server._sock.getsockname()[0] == "127.0.0.1"
        assert server.address[0] == "127.0.0.1"
    finally:
        server.close()
    default = LogServer(advertise_host="127.0.0.1", sink=lambda _line: None)
    try:
        assert default._sock.getsockname()[0] == "127.0.0.1"
    finally:
        default.close()


def test_an_address_that_is_not_this_machines_is_a_clear_launcher_error() -> None:
    with pytest.raises(LauncherError) as info:
        LogServer(advertise_host="192.0.2.1", bind_host="192.0.2.1", sink=lambda _line: None)  # TEST-NET-1
    assert "'192.0.2.1'" in info.value.message and "spark.driver.bindAddress" in (info.value.hint or "")
