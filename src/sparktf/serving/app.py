"""The REST server: TF Serving's API, ``:recommend``, operations endpoints and the web page.

``create_app(repository, cfg)`` returns a FastAPI app (run it with uvicorn;
``sparktf serve`` does). Endpoints:

* TF Serving: ``GET /v1/models/{name}[/versions/{v}|/labels/{l}]`` (status),
  ``.../metadata``, ``POST ...:predict``, ``POST ...:regress`` / ``...:classify``
  (examples mapped onto a predict signature's named inputs).
* ``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:recommend``.
* ``GET /healthz`` (alive), ``GET /readyz`` (a version is loaded and warmed up),
  ``GET /metrics`` (Prometheus), ``POST /v1/admin/reload`` (poll the source now),
  ``GET /v1/users`` and ``/v1/users/{id}`` (for the page), ``GET /`` (the page),
  ``GET /openapi.json``.

Every error is ``{"error": "..."}`` with TF Serving's status codes. The body is
read by the handlers themselves (never by FastAPI's models) so that the JSON
rules are TF Serving's (``NaN`` allowed) and a bad body is a 400 that says what
is wrong; the OpenAPI schema still documents each body.

Why FastAPI: it gives routing, the OpenAPI document and uvicorn's HTTP handling;
the wire format, batching and versions are ours (see the sibling modules).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from importlib import resources
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sparktf.config import ServeConfig
from sparktf.errors import ServingError, SparkTFError
from sparktf.serving import tfserving as tfs
from sparktf.serving.batching import MicroBatcher
from sparktf.serving.features import FeatureLookup
from sparktf.serving.metrics import ServerMetrics
from sparktf.serving.recommend import parse_recommend_request
from sparktf.serving.repository import LoadedVersion, ModelRepository, Snapshot

__all__ = ["create_app"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("sparktf.serving.access")

_OPEN_PATHS = frozenset({"/healthz", "/readyz", "/"})
_JSON = "application/json"

# OpenAPI fragments: the bodies are parsed by hand (TF Serving's JSON rules), so they
# are described here for clients and for schema-based fuzzing.
_PREDICT_BODY = {
    "required": True,
    "content": {
        _JSON: {
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
_EXAMPLES_BODY = {
    "required": True,
    "content": {
        _JSON: {
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
_RECOMMEND_BODY = {
    "required": True,
    "content": {
        _JSON: {
            "schema": {
                "type": "object",
                "properties": {
                    "user_id": {"type": "string"},
                    "history": {"type": "array", "items": {"type": "string"}},
                    "k": {"type": "integer", "minimum": 1},
                    "exclude": {"type": "array", "items": {"type": "string"}},
                    "exclude_seen": {"type": "boolean"},
                    "attributes": {"type": "boolean"},
                },
            },
            "example": {"user_id": "u1", "history": ["i3", "i7"], "k": 10},
        }
    },
}
_ERROR = {"content": {_JSON: {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, **_ERROR}
    for code, text in (
        (400, "Malformed request"),
        (401, "Missing or wrong bearer token"),
        (404, "No such model, version, label or path"),
        (413, "Body too large"),
        (503, "No version loaded yet"),
    )
}


def create_app(repository: ModelRepository, cfg: ServeConfig, features: FeatureLookup | None = None) -> FastAPI:
    """The FastAPI app serving ``repository`` under the settings ``cfg``.

    The repository is refreshed once in the background when the app starts (so
    ``/healthz`` answers at once and ``/readyz`` turns 200 when a version is warm),
    then polled every ``cfg.poll_interval_s``.
    """
    features = features or FeatureLookup()
    metrics = ServerMetrics()
    state = _State(repository, cfg, features, metrics)

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        state.batcher = MicroBatcher(
            cfg.max_batch_size,
            cfg.batch_timeout_micros / 1e6,
            cfg.batch_threads,
            on_batch=metrics.observe_batch,
            in_flight=lambda: state.in_flight,
        )
        from threadpoolctl import threadpool_limits

        # The index search is a small matrix product per batch, run in parallel with other
        # batches and TensorFlow's own threads: a multi-threaded BLAS spends more time
        # handing work between threads than computing (10.7 ms vs 0.7 ms measured for 8
        # queries over 5,000 items on 2 busy cores).
        blas = threadpool_limits(limits=1, user_api="blas")
        loop = asyncio.get_running_loop()
        initial = loop.run_in_executor(None, _initial_load, repository, cfg.poll_interval_s)
        try:
            yield
        finally:
            blas.restore_original_limits()
            repository.stop()
            await asyncio.wait([initial], timeout=60) if not initial.done() else None
            state.batcher.shutdown()

    app = FastAPI(
        title="sparktf serving",
        version="1",
        description="TensorFlow Serving's REST API, plus :recommend over an ANN index.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )

    def on_repo_event(snap: Snapshot, event: str) -> None:
        metrics.model_event(snap.name, event)
        metrics.set_versions(snap.name, sorted(snap.versions), snap.default)

    repository.listeners.append(on_repo_event)

    def json_response(payload: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(payload, status_code=status, media_type=_JSON, headers=headers)

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, exc: ServingError) -> Response:
        status = int(exc.context.get("status", 500))
        text = exc.message + (f" {exc.hint}" if exc.hint else "")
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, text)
        return json_response(tfs.encode_error(text), status)

    @app.exception_handler(SparkTFError)
    async def sparktf_error(request: Request, exc: SparkTFError) -> Response:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return json_response(tfs.encode_error(f"{exc.headline}: {exc}"), 500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            text = f"Malformed request: {request.method} {request.url.path} is not an endpoint of this server (see /openapi.json)."
        elif exc.status_code == 405:
            text = f"Malformed request: {request.method} is not allowed on {request.url.path}."
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
        log.error("internal error on %s %s:\n%s", request.method, request.url.path, traceback.format_exc())
        return json_response(tfs.encode_error(f"Internal error: {type(exc).__name__}: {exc}"), 500)

    # ------------------------------------------------------------------ TF Serving API

    def selector_routes(
        method: str, suffix: str, handler: Callable[..., Awaitable[Response]], summary: str, **extra: Any
    ) -> None:
        base = "/v1/models/{model_name}"
        variants: list[tuple[str, Callable[..., Awaitable[Response]]]] = [
            (base + suffix, _bind(handler, None, None)),
            (base + "/versions/{version}" + suffix, _bind(handler, "version", None)),
            (base + "/labels/{label}" + suffix, _bind(handler, None, "label")),
        ]
        for path, endpoint in variants:
            app.add_api_route(
                path,
                endpoint,
                methods=[method],
                summary=summary,
                response_class=Response,
                responses={200: {"description": "OK", "content": {_JSON: {}}}, **_ERRORS},
                **extra,
            )

    async def status(request: Request, model_name: str, version: str | None, label: str | None) -> Response:
        snap = repository.snapshot
        if model_name != snap.name:
            raise tfs.not_found(f"Servable not found for request: Latest({model_name})")
        if label is not None:
            v: int | None = snap.resolve(model_name, label=label).version
        else:
            v = tfs.parse_version(version) if version is not None else None
        return json_response(tfs.encode_json(tfs.status_document(repository.status(v))))

    async def metadata(request: Request, model_name: str, version: str | None, label: str | None) -> Response:
        lv = _resolve(repository.snapshot, model_name, version, label)
        doc = tfs.metadata_document(model_name, lv.version, lv.servable.signatures)
        return json_response(tfs.encode_json(doc))

    async def predict(request: Request, model_name: str, version: str | None, label: str | None) -> Response:
        lv = _resolve(repository.snapshot, model_name, version, label)
        with _Use(lv):
            body = tfs.parse_json_body(await _read_body(request, cfg.max_body_bytes))
            req = tfs.decode_predict_request(body, lv.servable.signatures, model_name)
            outputs = await state.run_predict(lv, req.signature, req.inputs, req.rows)
            payload = tfs.encode_predict_response(outputs, req.signature, req.row_format)
        return json_response(payload, headers={"X-Model-Version": str(lv.version)})

    async def examples_api(
        method: str, request: Request, model_name: str, version: str | None, label: str | None
    ) -> Response:
        lv = _resolve(repository.snapshot, model_name, version, label)
        with _Use(lv):
            body = tfs.parse_json_body(await _read_body(request, cfg.max_body_bytes))
            req = tfs.decode_examples_request(body, lv.servable.signatures, model_name)
            outputs = await state.run_predict(lv, req.signature, req.inputs, req.rows)
            payload = tfs.encode_examples_response(outputs, req.signature, method)
        return json_response(payload, headers={"X-Model-Version": str(lv.version)})

    async def recommend(request: Request, model_name: str, version: str | None, label: str | None) -> Response:
        lv = _resolve(repository.snapshot, model_name, version, label)
        with _Use(lv):
            if lv.recommender is None:
                raise tfs.bad_request(
                    f"Model {model_name!r} version {lv.version} is not a sparktf recommender export "
                    "(no assets.extra/sparktf.json with item embeddings), so it cannot answer :recommend; "
                    "use :predict."
                )
            body = tfs.parse_json_body(await _read_body(request, cfg.max_body_bytes))
            query = parse_recommend_request(body, default_k=cfg.default_k, max_k=cfg.max_k)
            assert state.batcher is not None
            reply = await state.batcher.submit(("recommend", id(lv)), query, 1, lv.recommender.recommend)
        out = {"model_name": model_name, "model_version": str(lv.version), "k": query.k, **reply}
        return json_response(tfs.encode_json(out), headers={"X-Model-Version": str(lv.version)})

    selector_routes("GET", "", status, "Model version status (TF Serving GetModelStatus)")
    selector_routes("GET", "/metadata", metadata, "Signatures of a version (TF Serving GetModelMetadata)")
    selector_routes(
        "POST",
        ":predict",
        predict,
        "Run a signature (row or columnar format)",
        openapi_extra={"requestBody": _PREDICT_BODY},
    )
    for verb in ("regress", "classify"):
        selector_routes(
            "POST",
            f":{verb}",
            partial(examples_api, verb),
            f"{verb.title()} examples with a signature whose inputs are named like their features",
            openapi_extra={"requestBody": _EXAMPLES_BODY},
        )
    selector_routes(
        "POST",
        ":recommend",
        recommend,
        "Top-K items for a user and/or recent items, via the ANN index",
        openapi_extra={"requestBody": _RECOMMEND_BODY},
    )

    # ------------------------------------------------------------------ operations

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> Response:
        return json_response(b'{"status":"ok"}')

    @app.get("/readyz", summary="Readiness: a model version is loaded and warmed up", responses={503: _ERRORS[503]})
    async def readyz() -> Response:
        snap = repository.snapshot
        if not repository.ready:
            why = repository.last_error or "the first version is still loading"
            return json_response(tfs.encode_error(f"Not ready: {why}."), 503)
        default = snap.versions[snap.default] if snap.default is not None else None
        doc = {
            "status": "ready",
            "model": snap.name,
            "default_version": snap.default,
            "versions": sorted(snap.versions),
            "labels": dict(snap.labels),
            "index": getattr(getattr(default, "recommender", None), "index_kind", None),
        }
        return json_response(tfs.encode_json(doc))

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.post("/v1/admin/reload", summary="Ask the model source for new versions now", responses=_ERRORS)
    async def reload() -> Response:
        changed = await asyncio.get_running_loop().run_in_executor(None, repository.refresh)
        snap = repository.snapshot
        doc: dict[str, Any] = {"changed": changed, "default_version": snap.default, "versions": sorted(snap.versions)}
        if repository.last_error:
            doc["error"] = repository.last_error
        return json_response(tfs.encode_json(doc))

    # ------------------------------------------------------------------ the web page and its data

    @app.get("/v1/users", summary="Users known from the features tables (for the web page)", responses=_ERRORS)
    async def users(prefix: str = "", limit: int = 100) -> Response:
        if not 1 <= limit <= 10_000:
            raise tfs.bad_request(f"'limit' must be from 1 to 10000; got {limit}.")
        doc = {"users": features.users(prefix, limit), "features": features.path or None}
        return json_response(tfs.encode_json(doc))

    @app.get("/v1/users/{user_id}", summary="A user's recent items with their attributes", responses=_ERRORS)
    async def user(user_id: str) -> Response:
        if user_id not in features.recent and user_id not in features.seen:
            where = features.path or "no features tables (set serve.features_path)"
            raise tfs.not_found(f"User {user_id!r} is not in the features tables ({where}).")
        doc = {
            "user_id": user_id,
            "recent": features.attributes(list(features.recent.get(user_id, ()))),
            "seen_count": len(features.seen.get(user_id, ())),
        }
        return json_response(tfs.encode_json(doc))

    @app.get("/", summary="The recommendations web page", response_class=Response)
    async def page() -> Response:
        html = resources.files("sparktf.serving").joinpath("web/index.html").read_bytes()
        return Response(html, media_type="text/html; charset=utf-8")

    app.add_middleware(_Gate, state=state)
    app.state.sparktf = state
    return app


def _bind(handler: Callable[..., Awaitable[Any]], version: str | None, label: str | None) -> Callable[..., Any]:
    """The handler with the selector's path parameter (or None) as FastAPI sees it."""
    if version:

        async def with_version(request: Request, model_name: str, version: str) -> Any:
            return await handler(request, model_name, version, None)

        return with_version
    if label:

        async def with_label(request: Request, model_name: str, label: str) -> Any:
            return await handler(request, model_name, None, label)

        return with_label

    async def plain(request: Request, model_name: str) -> Any:
        return await handler(request, model_name, None, None)

    return plain


def _resolve(snap: Snapshot, name: str, version: str | None, label: str | None) -> LoadedVersion:
    return snap.resolve(name, tfs.parse_version(version) if version is not None else None, label)


class _Use:
    """Marks a version busy for the length of a request (it is not dropped meanwhile)."""

    def __init__(self, lv: LoadedVersion) -> None:
        self.lv = lv

    def __enter__(self) -> LoadedVersion:
        self.lv.acquire()
        return self.lv

    def __exit__(self, *exc: object) -> None:
        self.lv.release()


async def _read_body(request: Any, limit: int) -> bytes:
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServingError(
                f"The request body is larger than serve.max_body_bytes ({limit} bytes); send fewer rows per request.",
                status=413,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _initial_load(repository: ModelRepository, interval_s: float) -> None:
    try:
        repository.refresh()
    finally:
        repository.start(interval_s)


class _State:
    """What the handlers and the middleware share."""

    def __init__(
        self, repository: ModelRepository, cfg: ServeConfig, features: FeatureLookup, metrics: ServerMetrics
    ) -> None:
        self.repository = repository
        self.cfg = cfg
        self.features = features
        self.metrics = metrics
        self.batcher: MicroBatcher[Any, Any] | None = None
        self.in_flight = 0

    async def run_predict(
        self, lv: LoadedVersion, sig: tfs.SignatureInfo, inputs: dict[str, np.ndarray], rows: int
    ) -> dict[str, np.ndarray]:
        """One signature call, batched with concurrent requests when the signature allows."""
        assert self.batcher is not None
        limit = self.cfg.max_batch_size
        if rows > limit:
            raise tfs.bad_request(
                f"The request has {rows} rows, more than serve.max_batch_size ({limit}); "
                "split it, or start the server with a larger serve.max_batch_size."
            )
        if sig.batchable and rows >= 1:
            run = partial(_run_predict_batch, lv.servable, sig.name)
            key = ("predict", id(lv), sig.name, tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(inputs.items())))
            result = await self.batcher.submit(key, inputs, rows, run)
            if isinstance(result, _Failed):
                raise result.exc
            return dict(result)
        alone: dict[str, np.ndarray] = await self.batcher.run_alone(partial(lv.servable.run, sig.name, inputs))
        return alone


def _run_predict_batch(
    servable: Any, signature: str, items: list[dict[str, np.ndarray]]
) -> list[dict[str, np.ndarray]]:
    """Stack the items' inputs, call the signature once and split the outputs back.

    A batch that TensorFlow rejects is retried one item at a time, so a single bad
    request fails alone instead of taking its batch-mates with it.
    """
    if len(items) == 1:
        return [servable.run(signature, items[0])]
    names = list(items[0])
    sizes = [int(items_[names[0]].shape[0]) for items_ in items]
    stacked = {n: np.concatenate([it[n] for it in items], axis=0) for n in names}
    try:
        out = servable.run(signature, stacked)
    except ServingError as exc:
        if int(exc.context.get("status", 500)) >= 500:
            raise
        return [_run_one(servable, signature, it) for it in items]
    total = sum(sizes)
    if any(v.ndim == 0 or v.shape[0] != total for v in out.values()):
        return [_run_one(servable, signature, it) for it in items]
    bounds = np.cumsum([0, *sizes])
    return [{n: v[bounds[i] : bounds[i + 1]] for n, v in out.items()} for i in range(len(items))]


def _run_one(servable: Any, signature: str, item: dict[str, np.ndarray]) -> Any:
    try:
        return servable.run(signature, item)
    except ServingError as exc:
        return _Failed(exc)


class _Failed:
    """A per-item failure inside a batch, re-raised in that item's request only."""

    def __init__(self, exc: ServingError) -> None:
        self.exc = exc


class _Gate:
    """Pure ASGI middleware: bearer token, body-size pre-check, in-flight count,
    metrics and one JSON access-log line per request."""

    def __init__(self, app: Any, state: _State) -> None:
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
                await self.app(scope, receive, send_wrapper)
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
        if self.token and path not in _OPEN_PATHS:
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
                return 400, f"Malformed request: Content-Length {length[:40]!r} is not a number.", []
            if size > self.state.cfg.max_body_bytes:
                return (
                    413,
                    f"The request body ({size} bytes) is larger than serve.max_body_bytes "
                    f"({self.state.cfg.max_body_bytes} bytes); send fewer rows per request.",
                    [],
                )
        return None


async def _send_json(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", _JSON.encode()), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
