"""A real Redis server for the tests (registered in ``tests/conftest.py`` as a plugin).

``redis_server`` starts, once per test session and only when a test asks for it, Debian's
``redis-server`` on 127.0.0.1 and a free port, with an append-only file synced at every
write (``--appendfsync always``), so that what Redis acknowledged survives, as in
production. It yields the server's ``redis://`` URL and shuts the server down at the end.
Without ``redis-server`` on PATH the tests that ask for it skip, saying how to install it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT_S = 30.0


@dataclass
class RedisServer:
    """A running ``redis-server`` child process."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: Redis flushes the AOF and exits
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))  # up (NOAUTH: with --requirepass)
    except OSError:
        return False


def start_redis(tmp_dir: Path, *extra_args: str) -> RedisServer:
    """Start ``redis-server`` with its data and log under ``tmp_dir``; wait for PING."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise FileNotFoundError("redis-server is not on PATH (apt-get install redis-server)")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    log = tmp_dir / "redis.log"
    for _ in range(3):  # another process may take the free port between probe and bind
        port = _free_port()
        args = [
            exe,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--dir", str(tmp_dir),
            "--logfile", str(log),
            "--daemonize", "no",
            *extra_args,
        ]  # fmt: skip
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        server = RedisServer(process=process, port=port, log=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            if _pings(port):
                return server
            time.sleep(0.05)
        server.stop()
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"redis-server did not answer PING within {START_TIMEOUT_S:.0f} s; its log ends:\n{tail}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a Redis server shared by the test session (tests use distinct key prefixes)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server.url
    finally:
        server.stop()
