"""``sparktf live``: the server and the streaming job together, one status line each.

Each runs as its own process (``sparktf serve`` and ``sparktf stream`` with the same
configuration options), so one can die or be killed without taking the other's state
with it, exactly as in production; their own output goes to ``logs/live-serve.log`` and
``logs/live-stream.log`` in the workdir. Ctrl-C (or SIGTERM) stops both with SIGTERM: the
server finishes its requests in flight, the stream its micro-batch. If one exits on its
own, the other is stopped and the command exits 1 with the end of the failed one's log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sparktf.config import Config
from sparktf.errors import ServingError, StreamError
from sparktf.stages._online import server_url

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["run_live"]

#: How long a component gets to stop after SIGTERM before it is killed.
STOP_TIMEOUT_S = 30.0


def run_live(
    cfg: Config, options: Sequence[str], out: Console, *, serve_options: Sequence[str] = (), refresh_s: float = 1.0
) -> None:
    """Run ``sparktf serve`` and ``sparktf stream`` with ``options`` (the configuration
    options this command was given; ``serve_options`` go to the server only, e.g. ``--model``)
    until Ctrl-C/SIGTERM or until one of them exits.

    Raises:
        ServingError, StreamError: a component exited on its own.
    """
    from rich.live import Live

    from sparktf.stages.stream import stream_args

    logs = os.path.dirname(cfg.paths.log_file)
    os.makedirs(logs, exist_ok=True)
    status_file = stream_args(cfg).status_file
    base = server_url(cfg)
    own = {"serve": [*options, *serve_options], "stream": list(options)}
    procs = {name: _start(name, own[name], os.path.join(logs, f"live-{name}.log")) for name in ("serve", "stream")}
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    failed: str | None = None
    try:
        with Live(_lines(base, status_file, procs, cfg), console=out, refresh_per_second=4, transient=False) as live:
            while not stop.is_set():
                dead = [n for n, p in procs.items() if p.poll() is not None]
                if dead:
                    failed = dead[0]
                    break
                live.update(_lines(base, status_file, procs, cfg))
                stop.wait(refresh_s)
            live.update(_lines(base, status_file, procs, cfg, stopping=True))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_all(procs)
    if failed:
        log = os.path.join(logs, f"live-{failed}.log")
        tail = _tail(log, 15)
        err = ServingError if failed == "serve" else StreamError
        raise err(
            f"sparktf {failed} exited with code {procs[failed].returncode}; the other component was stopped. "
            f"The end of {log}:\n{tail}",
            hint=f"Fix what the log says and run `sparktf live` again (or `sparktf {failed}` alone to see it).",
        )
    out.print("sparktf live: stopped the server and the streaming job.")


def _start(name: str, options: Sequence[str], log: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        fh.write(f"\n===== sparktf {name} (sparktf live) at {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n".encode())
        fh.flush()
        return subprocess.Popen(
            [sys.executable, "-m", "sparktf.cli", name, *options],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches this process only; it stops the children in order
            preexec_fn=_term_with_parent,
        )


def _term_with_parent() -> None:
    """In the child: SIGTERM when ``sparktf live`` dies, even of SIGKILL, so a server
    does not keep the port and a stream its checkpoint with nobody to stop them (Linux's
    ``PR_SET_PDEATHSIG``; elsewhere they outlive a killed parent, as before)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for p in procs.values():
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _lines(
    base: str, status_file: str, procs: dict[str, subprocess.Popen[bytes]], cfg: Config, *, stopping: bool = False
) -> str:
    return "\n".join(
        [_server_line(base, procs["serve"], stopping), _stream_line(status_file, procs["stream"], cfg, stopping)]
    )


def _server_line(base: str, proc: subprocess.Popen[bytes], stopping: bool) -> str:
    if stopping:
        return f"server  {base}  stopping"
    if proc.poll() is not None:
        return f"server  exited ({proc.returncode})"
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=0.5) as r:  # noqa: S310 - our own loopback URL
            body = json.loads(r.read() or b"{}")
        state = "ready"
        detail = ", ".join(f"{k} {v}" for k, v in body.items() if k in ("model", "version", "default_version"))
    except urllib.error.HTTPError as e:
        state, detail = ("loading" if e.code == 503 else f"HTTP {e.code}"), ""
    except OSError:
        state, detail = "starting", ""
    return f"server  {base}  {state}{'  ' + detail if detail else ''}  (page: {base}/, events: POST {base}/v1/events)"


def _stream_line(status_file: str, proc: subprocess.Popen[bytes], cfg: Config, stopping: bool) -> str:
    if proc.poll() is not None:
        return f"stream  exited ({proc.returncode})"
    try:
        with open(status_file, encoding="utf-8") as fh:
            st = json.load(fh)
    except (OSError, ValueError):
        st = {}
    if st.get("pid") != proc.pid:
        return "stream  starting (Spark)"
    state = "stopping" if stopping else st.get("state", "starting")
    ago = f", last batch {time.time() - st['last_batch_time']:.0f} s ago" if st.get("last_batch_time") else ""
    return (
        f"stream  {state}  batch {st.get('last_batch_id', -1)}  {st.get('events', 0):,} events applied  "
        f"{st.get('quarantined', 0):,} quarantined{ago}  (trigger {cfg.stream.trigger_interval_s:g} s)"
    )


def _tail(path: str, n: int) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-n:]).rstrip()
    except OSError:
        return "(no log)"
