"""Start ``sparktf serve`` on a model export and call its REST API with httpx.

What it shows:

1. A model exported in TensorFlow Serving's layout: ``<base>/1/`` (numbered version
   folders; the server serves the highest and picks up new ones).
2. ``sparktf serve --model <base>`` started as a separate process on 127.0.0.1 and a
   free port, and ``GET /readyz`` polled until the model is loaded and warmed up.
3. Three calls any TF Serving client already makes, plus sparktf's own:

   * ``GET  /v1/models/<name>``: the version status document;
   * ``POST /v1/models/<name>:predict``: TF Serving's row format,
     ``{"instances": [{"user_id": ..., "history": [...]}, ...]}``, answered with
     ``{"predictions": [...]}`` (query embedding, top-k ids and scores per row);
   * ``POST /v1/models/<name>:recommend``: ``{"user_id", "history", "k"}`` in, the
     top-k items from the ANN index out, the history's own items left out.

4. The server stopped in a ``finally``, whatever happened.

The model learnt that ``i<n>`` is usually followed by ``i<n+1>``, so a history ending
in ``i5`` should put ``i6`` near the top.

Run it:

    python examples/call_the_server.py                # 200 items
    python examples/call_the_server.py --smoke-test   # 30 items, seconds
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from _common import parse_args, tiny_recommender, workdir


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(base: Path, work: Path, port: int, log: Any) -> subprocess.Popen[bytes]:
    """``sparktf serve --model <base>`` in its own process, its output going to ``log``."""
    command = [
        # The CLI module of this very interpreter: the same as the `sparktf` command.
        *(sys.executable, "-m", "sparktf.cli", "serve"),
        *("--model", str(base)),
        *("--workdir", str(work)),
        *("--set", "serve.host=127.0.0.1"),
        *("--set", f"serve.port={port}"),
        # This example serves one version; no need to watch the base path for new ones.
        *("--set", "serve.poll_interval_s=0"),
    ]
    print("$", " ".join(command[2:]).replace("sparktf.cli", "sparktf", 1), f"> {log.name} 2>&1")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(client: httpx.Client, server: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> Any:
    """Poll ``/readyz`` until it says ready; fail early if the server process exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"sparktf serve exited with code {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            reply = client.get("/readyz")
            if reply.status_code == 200:
                return reply.json()
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.5)
    raise SystemExit(f"sparktf serve was not ready after {timeout_s:.0f} s:\n{log_path.read_text()[-3000:]}")


def ok(reply: httpx.Response) -> Any:
    """The reply's JSON; an error reply stops the script with the server's message."""
    if reply.is_error:
        raise SystemExit(f"{reply.request.method} {reply.request.url} -> HTTP {reply.status_code}: {reply.text}")
    return reply.json()


def show(title: str, reply: httpx.Response) -> Any:
    body = ok(reply)
    print(f"{title} -> HTTP {reply.status_code}\n{json.dumps(body, indent=2)}")
    return body


def main() -> None:
    args = parse_args(__doc__)
    with workdir(args.workdir, "serve") as work:
        base = work / "models" / "recommender"
        tiny = tiny_recommender(base, smoke_test=args.smoke_test)
        print(f"exported a sequential model to {tiny.export_path}")

        port = free_port()
        log_path = work / "server.log"
        with log_path.open("wb") as log:
            server = start_server(base, work, port, log)
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                    started = time.monotonic()
                    ready = wait_ready(client, server, log_path, timeout_s=180)
                    print(f"ready after {time.monotonic() - started:.1f} s: {ready}")
                    name = ready["model"]

                    show(f"GET /v1/models/{name}", client.get(f"/v1/models/{name}"))

                    # Row format: one object per row; rows are stacked, so histories are
                    # right-padded with "" to one length (the model ignores the padding).
                    instances = [
                        {"user_id": "u0", "history": ["i3", "i4", "i5"]},
                        {"user_id": "someone-new", "history": ["i10", "i11", ""]},
                    ]
                    predicted = ok(client.post(f"/v1/models/{name}:predict", json={"instances": instances}))
                    for row, prediction in zip(instances, predicted["predictions"], strict=True):
                        top = ", ".join(
                            f"{i} ({s:.3f})"
                            for i, s in zip(prediction["top_k_ids"], prediction["top_k_scores"], strict=True)
                        )
                        dim = len(prediction["query_embedding"])
                        print(f"POST :predict {row} -> top_k: {top}; query_embedding: {dim} floats")

                    body = {"user_id": "u0", "history": ["i3", "i4", "i5"], "k": 3}
                    reply = show(
                        f"POST /v1/models/{name}:recommend {body}",
                        client.post(f"/v1/models/{name}:recommend", json=body),
                    )
                    items = [item["item_id"] for item in reply["items"]]
                    print(f"recommended after {body['history']}: {items} (model version {reply['model_version']})")
            finally:
                server.terminate()  # SIGTERM: uvicorn finishes the requests in flight, then exits
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
                # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught: exit code -15.
                print(f"server stopped (exit code {server.returncode})")


if __name__ == "__main__":
    main()
