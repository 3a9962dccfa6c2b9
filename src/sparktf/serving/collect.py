"""``POST /v1/events``: event collection (issue 16).

The body is ``{"events": [{...}, ...]}``. Each event is checked with
:func:`sparktf.online.events.check_event`, the same rules as batch validation plus the live
ones, so the server, the batch validator and the stream agree on what is valid. The
accepted events get an id (the client's ``event_id``, or a fresh one), one ``ack_time``
(the moment before the write), and are made durable by the app's
:class:`~sparktf.online.landing.LandingWriter` (fsynced, renamed into the landing
directory) before the reply; a server killed right after its reply has lost nothing.

Replies:

* 200 ``{"accepted", "event_ids", "rejected": [{"index", "event_id", "reason", "detail"}],
  "ignored_fields", "ack_time"}``, also when every event was rejected (the body was
  well-formed; each event is judged on its own);
* 400 when the body is no JSON object with an ``events`` array;
* 413 above ``serve.max_events`` events (or ``serve.max_body_bytes``);
* 503 when the server collects no events (started without a landing directory), or the
  landing write failed (``Retry-After: 1``: nothing of the request was kept).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from sparktf.errors import ServingError
from sparktf.online.events import EventRules, check_event, json_type, landing_record, with_event_id
from sparktf.online.landing import LandingError
from sparktf.serving import tfserving as tfs
from sparktf.serving.error_handlers import json_response
from sparktf.serving.openapi import ERRORS, EVENTS_BODY, JSON
from sparktf.serving.routes import _read_body
from sparktf.serving.state import ServerState

__all__ = ["add_event_routes"]

#: Up to this many events a request's events are checked on the event loop; more, in a thread.
_INLINE_EVENTS = 64

_REPLY = {
    "description": "Which events were accepted (made durable) and which were rejected, and why",
    "content": {
        JSON: {
            "schema": {
                "type": "object",
                "properties": {
                    "accepted": {"type": "integer"},
                    "event_ids": {"type": "array", "items": {"type": "string"}},
                    "rejected": {"type": "array", "items": {"type": "object"}},
                    "ignored_fields": {"type": "array", "items": {"type": "string"}},
                    "ack_time": {"type": "number"},
                },
            }
        }
    },
}


def add_event_routes(app: FastAPI, state: ServerState) -> None:
    """``POST /v1/events``, bound to ``state`` (its ``events`` rules and ``landing`` writer)."""
    cfg = state.cfg
    metrics = state.metrics

    @app.post(
        "/v1/events",
        summary="Collect events: check each, make the accepted ones durable, say which were rejected and why",
        response_class=Response,
        responses={200: _REPLY, **ERRORS},
        openapi_extra={"requestBody": EVENTS_BODY},
    )
    async def post_events(request: Request) -> Response:
        started = time.perf_counter()
        rules, landing = state.events, state.landing
        if rules is None or landing is None:
            raise ServingError(
                "This server collects no events: it was started without a landing directory "
                "(its workdir is not on a local disk, or it was built without one).",
                hint="Run `sparktf serve` with a local workdir, or post the events to a server that has one.",
                status=503,
            )
        body = tfs.parse_json_body(await _read_body(request, cfg.max_body_bytes))
        events = body.get("events")
        if "events" not in body:
            keys = ", ".join(sorted(map(repr, body))[:10]) or "no keys"
            raise tfs.bad_request(
                f"The request body must be an object with an 'events' array; it has {keys}. "
                'Send {"events": [{"event_time": ..., "user_id": ..., "item_id": ..., "event_type": ...}]}.'
            )
        if not isinstance(events, list):
            raise tfs.bad_request(f"'events' must be a JSON array of event objects; got a JSON {json_type(events)}.")
        if len(events) > cfg.max_events:
            raise ServingError(
                f"The request carries {len(events)} events, more than serve.max_events ({cfg.max_events}); "
                f"send at most {cfg.max_events} per request.",
                status=413,
            )

        ack_time = time.time()
        if len(events) > _INLINE_EVENTS:  # ~60 us an event: a big body is judged off the event loop
            judged = await asyncio.get_running_loop().run_in_executor(None, _judge, events, rules, ack_time)
        else:
            judged = _judge(events, rules, ack_time)
        accepted, rejected, ignored = judged
        for item in rejected:
            metrics.events.labels(item["reason"]).inc()

        if accepted:
            records = [landing_record(e) for e in accepted]
            try:
                await asyncio.get_running_loop().run_in_executor(None, landing.append, records)
            except LandingError as exc:
                metrics.events.labels("landing_error").inc(len(accepted))
                text = f"{exc.message} {exc.hint or ''}".strip()
                return json_response(tfs.encode_error(text), 503, headers={"Retry-After": "1"})
            metrics.events.labels("accepted").inc(len(accepted))
            metrics.event_ack.observe(time.perf_counter() - started)
        doc = {
            "accepted": len(accepted),
            "event_ids": [e["event_id"] for e in accepted],
            "rejected": rejected,
            "ignored_fields": sorted(ignored),
            "ack_time": ack_time,
        }
        return json_response(tfs.encode_json(doc))


def _judge(
    events: list[Any], rules: EventRules, ack_time: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[str]]:
    """The accepted events (normalized, with ids), the rejected ones (index, the client's
    ``event_id``, reason, detail) and the unknown field names of a request's events.
    An ``event_id`` accepted earlier in the request makes a later event a ``duplicate``."""
    accepted: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    ignored: set[str] = set()
    first_index: dict[str, int] = {}
    for index, raw in enumerate(events):
        checked = check_event(raw, rules, ack_time=ack_time)
        ignored.update(checked.ignored)
        client_id = raw.get("event_id") if isinstance(raw, dict) else None
        client_id = client_id if isinstance(client_id, str) else None
        reason, detail = checked.reason, checked.detail
        if checked.event is not None and client_id is not None and client_id in first_index:
            reason = "duplicate"
            detail = (
                f"event_id {client_id[:200]!r} was accepted earlier in this request (index "
                f"{first_index[client_id]}); only the first is kept"
            )
        if reason is not None or checked.event is None:
            rejected.append(
                {"index": index, "event_id": client_id, "reason": reason or "malformed_record", "detail": detail}
            )
            continue
        if client_id is not None:
            first_index[client_id] = index
        accepted.append(with_event_id(checked.event))
    return accepted, rejected, ignored
