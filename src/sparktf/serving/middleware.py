"""The ASGI layer in front of every route: bearer token, body limits, metrics, access log.

Pure ASGI (no ``BaseHTTPMiddleware``) so that it costs one function call per
request and sees every reply, refusals and errors included. It:

* refuses a missing or wrong bearer token with 401 (``/healthz``, ``/readyz`` and the
  page's HTML stay open, for probes and browsers);
* refuses a ``Content-Length`` above ``serve.max_body_bytes`` with 413 before reading
  the body (a body without one is counted while the handler reads it);
* bounds the time a request's body may take to arrive (408 and the connection
  closed), so that a client sending a byte now and then cannot hold a request slot
  forever (the headers' deadline is the HTTP protocol's, :mod:`~sparktf.serving.connection`);
* counts requests in flight (the batcher's hint that no one else will join a batch),
  and records each request's endpoint, status and latency in the metrics and in one
  JSON access-log line.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any

from sparktf.errors import ServingError
from sparktf.serving import tfserving as tfs
from sparktf.serving.openapi import JSON
from sparktf.serving.state import ServerState

__all__ = ["OPEN_PATHS", "Gate"]

access_log = logging.getLogger("sparktf.serving.access")

# On a refusal before the body is read: the body that may follow is not worth receiving.
_CLOSE = [(b"connection", b"close")]

#: Paths answered without the bearer token.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/"})


class Gate:
    """The middleware; see the module docstring."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state
        self.token = state.cfg.auth_token.encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_holder = {"status": 500, "bytes": 0}
        path = scope.get("path", "")

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = int(message["status"])
            elif message["type"] == "http.response.body":
                status_holder["bytes"] += len(message.get("body", b""))
            await send(message)

        refusal = self._refuse(scope, path)
        self.state.in_flight += 1
        self.state.metrics.in_flight.inc()
        try:
            if refusal is not None:
                status, text, headers = refusal
                await _send_json(send_wrapper, status, tfs.encode_error(text), headers)
            else:
                await self.app(scope, _timed_receive(receive, self.state.body_timeout_s), send_wrapper)
        finally:
            self.state.in_flight -= 1
            self.state.metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or ("unmatched" if refusal is None else "refused")
            self.state.metrics.observe_request(endpoint, scope.get("method", ""), status_holder["status"], elapsed)
            if self.state.cfg.access_log and access_log.isEnabledFor(logging.INFO):
                client = scope.get("client") or ("", 0)
                access_log.info(
                    json.dumps(
                        {
                            "ts": round(time.time(), 3),
                            "client": f"{client[0]}:{client[1]}",
                            "method": scope.get("method"),
                            "path": path,
                            "endpoint": endpoint,
                            "status": status_holder["status"],
                            "bytes": status_holder["bytes"],
                            "ms": round(elapsed * 1000, 3),
                        }
                    )
                )

    def _refuse(self, scope: dict[str, Any], path: str) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        headers = dict(scope.get("headers") or [])
        if self.token and path not in OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.token):
                what = "no Authorization header" if not given else "a wrong bearer token"
                return (
                    401,
                    f"Unauthorized: the request has {what}; send 'Authorization: Bearer <serve.auth_token>'.",
                    [(b"www-authenticate", b'Bearer realm="sparktf"')],
                )
        length = headers.get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return 400, f"Malformed request: Content-Length {length[:40]!r} is not a number.", _CLOSE
            if size > self.state.cfg.max_body_bytes:
                return (
                    413,
                    f"The request body ({size} bytes) is larger than serve.max_body_bytes "
                    f"({self.state.cfg.max_body_bytes} bytes); send fewer rows per request.",
                    _CLOSE,
                )
        return None


def _timed_receive(receive: Any, timeout_s: float) -> Any:
    """``receive`` that raises a 408 when the body is not complete ``timeout_s`` after the
    request's headers arrived; once the body is complete it waits without a limit (the
    app may listen for the client going away)."""
    deadline = time.monotonic() + timeout_s
    body_done = False

    async def receive_in_time() -> Any:
        nonlocal body_done
        if body_done:
            return await receive()
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                message = await receive()
        except TimeoutError:
            raise ServingError(
                f"Request Timeout: the request body did not arrive within {timeout_s:g} s of its headers; "
                "send the whole body at once.",
                status=408,
            ) from None
        if message.get("type") != "http.request" or not message.get("more_body", False):
            body_done = True
        return message

    return receive_in_time


async def _send_json(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
