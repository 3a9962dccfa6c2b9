"""Exceptions to TF Serving's error replies: ``{"error": "..."}`` with its status codes.

A 4xx says what was wrong with the request and what to send instead. A 500 says
only that the server failed and which log line has the details (an error id):
exception texts can hold paths, tensors or other clients' data, and are for the
operator, not the client.
"""

from __future__ import annotations

import logging
import traceback
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sparktf.errors import ServingError, SparkTFError
from sparktf.serving import tfserving as tfs
from sparktf.serving.openapi import JSON

__all__ = ["install_error_handlers", "json_response"]

log = logging.getLogger("sparktf.serving.app")


def json_response(payload: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(payload, status_code=status, media_type=JSON, headers=headers)


def _internal(request: Request, detail: str) -> Response:
    """A 500 whose body names an error id; the detail goes to the log under that id."""
    error_id = uuid.uuid4().hex[:12]
    log.error("error %s on %s %s: %s", error_id, request.method, request.url.path, detail)
    text = (
        f"Internal error while handling {request.method} {request.url.path}; the server's log has "
        f"the details under error id {error_id}."
    )
    return json_response(tfs.encode_error(text), 500)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every exception a handler raises as a JSON error reply."""

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, exc: ServingError) -> Response:
        status = int(exc.context.get("status", 500))
        if status == 500:
            cause = exc.__cause__
            detail = str(exc) + (f"\ncaused by {type(cause).__name__}: {cause}" if cause is not None else "")
            return _internal(request, detail)
        text = exc.message + (f" {exc.hint}" if exc.hint else "")
        headers = {"Connection": "close"} if status == 408 else None
        return json_response(tfs.encode_error(text), status, headers)

    @app.exception_handler(SparkTFError)
    async def sparktf_error(request: Request, exc: SparkTFError) -> Response:
        return _internal(request, exc.render())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            text = f"Not found: {request.method} {request.url.path} is not an endpoint of this server (see /docs)."
        elif exc.status_code == 405:
            text = f"Method not allowed: {request.method} is not allowed on {request.url.path} (see /docs)."
        else:
            text = str(exc.detail)
        return json_response(tfs.encode_error(text), exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return json_response(tfs.encode_error(f"Malformed request: {where}: {first.get('msg', 'invalid')}."), 400)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        return _internal(request, traceback.format_exc())
