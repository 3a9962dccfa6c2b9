"""Worker output streamed to the driver as it happens, and failures reported first-hand.

Spark keeps a task's output in the executor's stderr log, which users find
only after the fact, if at all (tensorflow/ecosystem has no streaming; it is
TorchDistributor's most useful addition). Here each Spark task connects to a
small TCP server on the driver and sends, as JSON lines:

* ``hello``: its rank, attempt and host, with the run's token;
* ``line``: every line its TensorFlow process prints, as it prints it;
* ``failure``: a :class:`~sparktf.distributed.result.WorkerFailure` when that
  process stops abnormally, carrying the worker's own traceback;
* ``done``: its ``train_fn`` has returned (the process waits for the others).

The driver prints the lines prefixed ``[worker N]`` and keeps the failures per
attempt, in arrival order, so the launcher can name the first worker that
failed instead of the py4j/gRPC cascade Spark raises afterwards. The driver
may answer ``abort`` on a connection to make that task stop its TF process at
once when another worker has failed, or ``dump`` to have a worker that is
stuck print its Python stacks before it is stopped.

The channel is plain TCP authenticated by a random per-run token; it carries
log text only, never code or pickles. If a task cannot reach the driver it
still trains, and its output stays in the executor log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sparktf.distributed.result import WorkerFailure
from sparktf.errors import LauncherError

__all__ = [
    "AttemptLog",
    "LogClient",
    "LogServer",
    "is_wildcard",
    "log_server_hosts",
    "print_line",
    "server_bind_host",
    "worker_prefix",
]

MAX_LINE = 8192
_print_lock = threading.Lock()


def print_line(line: str) -> None:
    """Default sink: one line to the driver's stdout (looked up per call, so redirection works)."""
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def worker_prefix(rank: int, attempt: int) -> str:
    return f"[worker {rank}]" if attempt <= 1 else f"[worker {rank}, attempt {attempt}]"


@dataclass
class AttemptLog:
    """What the driver heard from the workers of one attempt (guarded by the server's lock)."""

    hosts: dict[int, str] = field(default_factory=dict)
    failures: list[WorkerFailure] = field(default_factory=list)
    done: dict[int, float] = field(default_factory=dict)
    open_connections: int = 0
    connections: dict[int, socket.socket] = field(default_factory=dict)


_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})  # noqa: S104 - the addresses refused here


def is_wildcard(host: str | None) -> bool:
    """``0.0.0.0``, ``::`` and the like: every interface, not one address."""
    return host is None or host.strip() in _WILDCARDS


def server_bind_host(bind_host: str | None, advertise_host: str) -> str:
    """Where the driver's log server listens: ``bind_host``, or ``advertise_host`` if it is unset or a wildcard.

    Raises:
        LauncherError: both are wildcards, so there is no single address to listen on.
    """
    if not is_wildcard(bind_host):
        assert bind_host is not None
        return bind_host.strip().strip("[]")
    if is_wildcard(advertise_host):
        raise LauncherError(
            f"The driver advertises {advertise_host!r} to the executors, which is no address they can connect to.",
            hint="Set spark.driver.host to this machine's address (127.0.0.1 for a local master).",
        )
    return advertise_host.strip().strip("[]")


def log_server_hosts(master: str, driver_host: str | None, bind_address: str | None) -> tuple[str, str]:
    """``(advertise, bind)`` addresses of the driver's log server, from the session's settings.

    A local master's tasks run on this machine, so both are loopback. Otherwise the
    tasks connect to ``spark.driver.host`` and the server listens on
    ``spark.driver.bindAddress`` (Spark's own rule for the driver), or on the driver
    host when that is unset or a wildcard: never on every interface.
    """
    from sparktf.spark import LOOPBACK, is_local_master

    if is_local_master(master):
        return LOOPBACK, LOOPBACK
    advertise = driver_host if driver_host and not is_wildcard(driver_host) else LOOPBACK
    return advertise, server_bind_host(bind_address, advertise)


class LogServer:
    """The driver's end: accepts task connections, prints their lines, records failures.

    Args:
        sink: receives each prefixed line (default: the driver's stdout).
        bind_host: the address to listen on (``spark.driver.bindAddress``); when it is
            not given or is a wildcard, ``advertise_host``: never every interface.
        advertise_host: the address tasks connect to (``spark.driver.host``).
    """

    def __init__(
        self,
        *,
        advertise_host: str,
        bind_host: str | None = None,
        sink: Callable[[str], None] | None = None,
    ) -> None:
        self.sink = sink or print_line
        self.token = _token()
        self._cond = threading.Condition()
        self._attempts: dict[int, AttemptLog] = {}
        self._closed = False
        host = server_bind_host(bind_host, advertise_host)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, 0))
        except OSError as exc:
            self._sock.close()
            raise LauncherError(
                f"The driver's log server cannot listen on {host!r}: {exc}.",
                hint="Set spark.driver.bindAddress to an address of this machine that the executors can reach "
                "(and spark.driver.host to the address they connect to).",
                host=host,
            ) from None
        self._sock.listen(64)
        self.address = (advertise_host, int(self._sock.getsockname()[1]))
        self._thread = threading.Thread(target=self._accept_loop, name="sparktf-log-server", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- queries

    def attempt(self, attempt: int) -> AttemptLog:
        with self._cond:
            return self._attempts.setdefault(attempt, AttemptLog())

    def started(self, attempt: int) -> int:
        """How many workers of ``attempt`` have said hello."""
        with self._cond:
            return len(self.attempt(attempt).hosts)

    def failures(self, attempt: int) -> list[WorkerFailure]:
        with self._cond:
            return list(self.attempt(attempt).failures)

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until ``predicate()`` (called under the lock) holds or ``timeout`` passes."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_closed(self, attempt: int, timeout: float) -> bool:
        """Wait until every task of ``attempt`` has hung up (its TF process is gone)."""
        log = self.attempt(attempt)
        return self.wait(lambda: log.open_connections == 0, timeout)

    def done(self, attempt: int) -> dict[int, float]:
        """When each worker of ``attempt`` that has finished ``train_fn`` said so (rank -> time)."""
        with self._cond:
            return dict(self.attempt(attempt).done)

    def abort(self, attempt: int) -> None:
        """Ask every task of ``attempt`` still connected to stop its TF process now."""
        self._send(attempt, None, b"abort\n")

    def dump(self, attempt: int, rank: int) -> None:
        """Ask worker ``rank`` to print its Python stacks, then stop (it is stuck)."""
        self._send(attempt, rank, b"dump\n")

    def _send(self, attempt: int, rank: int | None, data: bytes) -> None:
        with self._cond:
            conns = self.attempt(attempt).connections
            targets = list(conns.values()) if rank is None else [c for r, c in conns.items() if r == rank]
        for conn in targets:
            with contextlib.suppress(OSError):
                conn.sendall(data)

    def add_failure(self, failure: WorkerFailure) -> None:
        with self._cond:
            self.attempt(failure.attempt).failures.append(failure)
            self._cond.notify_all()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.close()

    # ---------------------------------------------------------------- serving

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="sparktf-log-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        attempt_no: int | None = None
        try:
            stream = conn.makefile("r", encoding="utf-8", errors="replace", newline="\n")
            hello = _decode(stream.readline())
            if hello.get("t") != "hello" or not hmac.compare_digest(str(hello.get("token", "")), self.token):
                return
            rank, attempt_no, host = int(hello["rank"]), int(hello["attempt"]), str(hello.get("host", ""))
            prefix = worker_prefix(rank, attempt_no)
            with self._cond:
                log = self.attempt(attempt_no)
                log.hosts[rank] = host
                log.open_connections += 1
                log.connections[rank] = conn
                self._cond.notify_all()
            for raw in stream:
                msg = _decode(raw)
                if msg.get("t") == "line":
                    self.sink(f"{prefix} {msg.get('s', '')}")
                elif msg.get("t") == "done":
                    with self._cond:
                        self.attempt(attempt_no).done[rank] = time.time()
                        self._cond.notify_all()
                elif msg.get("t") == "failure":
                    fields = {f.name for f in dataclasses.fields(WorkerFailure)}
                    data = {k: v for k, v in msg.get("f", {}).items() if k in fields}
                    data["tail"] = tuple(data.get("tail", ()))
                    self.add_failure(WorkerFailure(**data))
        except (OSError, ValueError, KeyError, TypeError):
            # A broken or foreign connection: the task's own failure path still reports through Spark.
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            if attempt_no is not None:
                with self._cond:
                    log = self.attempt(attempt_no)
                    log.open_connections -= 1
                    if log.connections.get(rank) is conn:
                        del log.connections[rank]
                    self._cond.notify_all()


class LogClient:
    """A task's end. Every method is safe to call when the driver was unreachable.

    ``echo`` receives the lines only while the driver is unreachable: on a
    local master the executor's stderr *is* the driver's console, so echoing
    always would print every line twice.
    """

    def __init__(self, sock: socket.socket | None, *, echo: Callable[[str], None] | None = None) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self._echo = echo
        self._on_abort: Callable[[], None] | None = None
        self._on_dump: Callable[[], None] | None = None
        self.aborted = threading.Event()
        if sock is not None:
            threading.Thread(target=self._read_loop, name="sparktf-log-client", daemon=True).start()

    @classmethod
    def connect(
        cls,
        address: tuple[str, int],
        *,
        token: str,
        rank: int,
        attempt: int,
        host: str,
        echo: Callable[[str], None] | None = None,
        timeout: float = 15.0,
    ) -> LogClient:
        try:
            sock = socket.create_connection(address, timeout=timeout)
            sock.settimeout(None)
        except OSError as exc:
            if echo:
                echo(f"sparktf: cannot stream logs to the driver at {address[0]}:{address[1]} ({exc}); "
                     "output stays in this executor's log.")  # fmt: skip
            return cls(None, echo=echo)
        client = cls(sock, echo=echo)
        client._send({"t": "hello", "token": token, "rank": rank, "attempt": attempt, "host": host})
        return client

    def on_abort(self, callback: Callable[[], None]) -> None:
        self._on_abort = callback
        if self.aborted.is_set():
            callback()

    def on_dump(self, callback: Callable[[], None]) -> None:
        self._on_dump = callback

    def done(self) -> None:
        """Tell the driver this worker's ``train_fn`` has returned."""
        self._send({"t": "done"})

    def line(self, text: str) -> None:
        text = text.rstrip("\n")
        if len(text) > MAX_LINE:
            text = text[:MAX_LINE] + f" ... [{len(text) - MAX_LINE} more characters]"
        if not self._send({"t": "line", "s": text}) and self._echo:
            self._echo(text)

    def failure(self, failure: WorkerFailure) -> bool:
        """Report a failure; False when the driver did not get it (then it must travel another way)."""
        return self._send({"t": "failure", "f": dataclasses.asdict(failure)})

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def _send(self, msg: dict[str, Any]) -> bool:
        """Send one message; False when the driver is not (or no longer) listening."""
        data = (json.dumps(msg) + "\n").encode("utf-8")
        with self._lock:
            if self._sock is None:
                return False
            try:
                self._sock.sendall(data)
            except OSError:
                self._sock = None
                return False
            return True

    def _read_loop(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            for raw in sock.makefile("r", encoding="utf-8", errors="replace"):
                command = raw.strip()
                if command == "abort":
                    self.aborted.set()
                    if self._on_abort:
                        self._on_abort()
                elif command == "dump" and self._on_dump:
                    self._on_dump()
        except (OSError, ValueError):
            return


def _decode(raw: str) -> dict[str, Any]:
    if not raw:
        return {}
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}


def _token() -> str:
    import secrets

    return secrets.token_hex(16)
