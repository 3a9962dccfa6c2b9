"""The API's description: OpenAPI fragments of the hand-parsed bodies, and the ``/docs`` page.

The bodies are parsed by hand (TF Serving's JSON rules: ``NaN`` allowed, a 400
that says what is wrong), so FastAPI cannot derive their schemas; these fragments
describe them for clients and for schema-based fuzzing.

``/docs`` is a plain page rendered on the server from the OpenAPI document: every
operation with its summary, and a link to ``/openapi.json``. FastAPI's Swagger UI
loads its scripts from a CDN, which a server on an offline network cannot reach.
"""

from __future__ import annotations

import html
from typing import Any

__all__ = [
    "ERRORS",
    "EVENTS_BODY",
    "EXAMPLES_BODY",
    "JSON",
    "PREDICT_BODY",
    "RECOMMEND_BODY",
    "docs_page",
]

JSON = "application/json"

PREDICT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        JSON: {
            "schema": {
                "type": "object",
                "properties": {
                    "signature_name": {"type": "string"},
                    "instances": {"type": "array", "description": "Row format: one entry per row."},
                    "inputs": {"description": "Columnar format: a tensor, or an object keyed by input name."},
                },
            },
            "example": {"instances": [1.0, 2.0, 5.0]},
        }
    },
}

EXAMPLES_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        JSON: {
            "schema": {
                "type": "object",
                "required": ["examples"],
                "properties": {
                    "signature_name": {"type": "string"},
                    "context": {"type": "object"},
                    "examples": {"type": "array", "items": {"type": "object"}},
                },
            }
        }
    },
}

RECOMMEND_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        JSON: {
            "schema": {
                "type": "object",
                "properties": {
                    "user_id": {"type": "string"},
                    "history": {"type": "array", "items": {"type": "string"}},
                    "k": {"type": "integer", "minimum": 1},
                    "exclude": {"type": "array", "items": {"type": "string"}},
                    "exclude_seen": {"type": "boolean"},
                    "attributes": {"type": "boolean"},
                    "session_id": {
                        "type": "string",
                        "description": "The client's session: assigns anonymous traffic to an experiment arm.",
                    },
                },
            },
            "example": {"user_id": "u1", "history": ["i3", "i7"], "k": 10},
        }
    },
}

EVENTS_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        JSON: {
            "schema": {
                "type": "object",
                "required": ["events"],
                "properties": {
                    "events": {
                        "type": "array",
                        "description": "At most serve.max_events events; each is accepted or rejected on its own.",
                        "items": {
                            "type": "object",
                            "required": ["event_time", "user_id", "item_id", "event_type"],
                            "properties": {
                                "event_time": {
                                    "description": "ISO-8601 text (UTC unless it names a zone) or epoch seconds.",
                                    "oneOf": [{"type": "string"}, {"type": "number"}],
                                },
                                "user_id": {"type": "string"},
                                "item_id": {"type": "string"},
                                "event_type": {"type": "string", "description": "One of data.event_types."},
                                "session_id": {"type": "string"},
                                "category": {"type": "string"},
                                "brand": {"type": "string"},
                                "price": {"type": "number", "minimum": 0},
                                "sale_id": {"type": "string"},
                                "event_id": {
                                    "type": "string",
                                    "maxLength": 200,
                                    "description": "The client's unique id of the event (a retry sends the same); "
                                    "the server gives one when it is missing.",
                                },
                                "request_id": {"type": "string", "description": "The :recommend reply's request_id."},
                                "position": {"type": "integer", "minimum": 1, "description": "1-based rank in it."},
                            },
                        },
                    }
                },
            },
            "example": {
                "events": [
                    {
                        "event_time": "2026-01-31T12:00:00Z",
                        "user_id": "u1",
                        "item_id": "i3",
                        "event_type": "view",
                        "event_id": "c0ffee-1",
                    }
                ]
            },
        }
    },
}

_ERROR = {"content": {JSON: {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}}

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, **_ERROR}
    for code, text in (
        (400, "Malformed request"),
        (401, "Missing or wrong bearer token"),
        (404, "No such model, version, label or path"),
        (408, "The request body did not arrive in time"),
        (413, "Body too large"),
        (503, "No version loaded yet"),
    )
}

_METHODS = ("get", "head", "post", "put", "patch", "delete")


def docs_page(schema: dict[str, Any]) -> bytes:
    """An HTML page listing every operation of ``schema`` (an OpenAPI document)."""
    rows = []
    for path, item in schema.get("paths", {}).items():
        for method in _METHODS:
            op = item.get(method)
            if op is None:
                continue
            rows.append(
                f"<tr><td>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(str(op.get('summary', '')))}</td></tr>"
            )
    info = schema.get("info", {})
    title = html.escape(f"{info.get('title', 'API')} {info.get('version', '')}".strip())
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem}}
td{{padding:.2rem .6rem;border-bottom:1px solid #eee;vertical-align:top}}</style></head>
<body><h1>{title}</h1>
<p>{html.escape(str(info.get("description", "")))}</p>
<p>The machine-readable description is <a href="/openapi.json">/openapi.json</a>
(load it into any OpenAPI viewer or client generator). Errors are <code>{{"error": "..."}}</code>
with TensorFlow Serving's status codes; when the server has a bearer token, send
<code>Authorization: Bearer &lt;token&gt;</code>.</p>
<table><thead><tr><th>method</th><th>path</th><th>what it does</th></tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
    return text.encode("utf-8")
