"""The HTTP connection: uvicorn's h11 protocol with a deadline for a request's headers.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but any
byte received restarts that wait, and a new connection has no deadline at all: a
client that sends its headers a byte at a time ("slowloris") holds a connection
for as long as it likes, and a few hundred such clients hold them all. Here a
connection must deliver a request's complete headers within
``header_timeout_s`` of opening (or of the previous response), however they
trickle in; otherwise it gets ``408 Request Timeout`` and is closed. The body's
deadline is the app's (:mod:`~sparktf.serving.middleware`), which can answer in
JSON.

Why a subclass: uvicorn and h11 have no such setting (h11 is sans-I/O; uvicorn's
only limits are the keep-alive wait and the size of an incomplete event).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HEADER_TIMEOUT_S", "HeaderDeadlineProtocol", "with_header_timeout"]

#: How long a connection may take to deliver a request's headers.
HEADER_TIMEOUT_S = 10.0


class HeaderDeadlineProtocol(H11Protocol):
    """:class:`H11Protocol` that closes a connection whose request headers are late."""

    header_timeout_s: ClassVar[float] = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request's headers get a fresh deadline.
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        if not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _cancel_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being handled; the next response re-arms the timer
        if self.conn.their_state in (h11.IDLE, h11.DONE):
            # Between requests, h11 holds any partial request line and headers in its buffer.
            body = json.dumps(
                {
                    "error": f"Request Timeout: the request headers did not arrive within "
                    f"{self.header_timeout_s:g} s of the connection opening or the previous response; "
                    "send the whole request at once."
                }
            ).encode()
            head = (
                "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                f"content-length: {len(body)}\r\n\r\n"
            ).encode()
            self.transport.write(head + body)
        # Else the client is still sending the body of a request already answered: just close.
        self.transport.close()


def with_header_timeout(header_timeout_s: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class (uvicorn's ``http=``) with a header deadline of ``header_timeout_s``."""
    attrs: dict[str, Any] = {"header_timeout_s": float(header_timeout_s)}
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), attrs)
