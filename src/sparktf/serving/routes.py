"""The route handlers: TF Serving's API, ``:recommend``, operations, the web page and ``/docs``.

* TF Serving: ``GET /v1/models/{name}[/versions/{v}|/labels/{l}]`` (status),
  ``.../metadata``, ``POST ...:predict``, ``POST ...:regress`` / ``...:classify``
  (examples mapped onto a predict signature's named inputs).
* ``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:recommend``; with an experiment
  (``[experiment]``), a request without a version or label is answered by its unit's arm
  (:mod:`~sparktf.serving.experiment`), and every reply says ``experiment`` and ``arm``.
* ``GET /healthz`` (alive), ``GET /readyz`` (a version is loaded and warmed up),
  ``GET /metrics`` (Prometheus), ``POST /v1/admin/reload`` (poll the source now),
  ``GET /v1/monitoring`` (each version's drift and alerts, :mod:`~sparktf.serving.monitor`).
* ``GET /v1/users`` and ``/v1/users/{id}`` (for the page: the features' recent items and
  the online store's live history), ``GET /v1/registry`` (the registered versions, aliases,
  gate reports and quality tables, :mod:`~sparktf.serving.registry_view`), ``GET /`` (the
  control-room page, with its chart library inlined),
  ``GET /docs`` (the operations, listed from ``/openapi.json``).

The body is read by the handlers themselves (never by FastAPI's models) so that
the JSON rules are TF Serving's (``NaN`` allowed) and a bad body is a 400 that
says what is wrong; :mod:`~sparktf.serving.openapi` documents each body.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from dataclasses import replace
from functools import partial
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from sparktf.errors import ServingError
from sparktf.experiments.offpolicy import OFFPOLICY_FILE
from sparktf.serving import tfserving as tfs
from sparktf.serving.batch_calls import lookup_live, run_predict, run_recommend
from sparktf.serving.error_handlers import json_response
from sparktf.serving.experiment import ServedExperiment, clock, explore_reply, impression_events, log_impressions
from sparktf.serving.openapi import ERRORS, EXAMPLES_BODY, JSON, PREDICT_BODY, RECOMMEND_BODY, docs_page
from sparktf.serving.recommend import RecommendQuery, live_block, parse_recommend_request
from sparktf.serving.registry_view import add_registry_routes
from sparktf.serving.repository import LoadedVersion, Snapshot
from sparktf.serving.state import ServerState, VersionInUse

if TYPE_CHECKING:
    from sparktf.experiments.assignment import Arm
    from sparktf.online.store import OnlineStore

__all__ = ["add_routes"]

_Handler = Callable[..., Awaitable[Response]]


def add_routes(app: FastAPI, state: ServerState) -> None:
    """Every endpoint of the server, bound to ``state``."""
    _add_tf_serving_api(app, state)
    _add_operations(app, state)
    _add_page(app, state)
    add_registry_routes(app, state)
    from sparktf.serving.collect import add_event_routes  # here, not at the top: collect imports this module

    add_event_routes(app, state)


# --------------------------------------------------------------------------- TF Serving API


def _add_tf_serving_api(app: FastAPI, state: ServerState) -> None:
    repository = state.repository
    cfg = state.cfg

    def selector_routes(method: str, suffix: str, handler: _Handler, summary: str, **extra: Any) -> None:
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
                responses={200: {"description": "OK", "content": {JSON: {}}}, **ERRORS},
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
        with VersionInUse(lv):
            body = tfs.parse_json_body(await _read_body(request, cfg.max_body_bytes))
            req = tfs.decode_predict_request(body, lv.servable.signatures, model_name)
            outputs = await run_predict(state.require_batcher(), lv, req.signature, req.inputs, req.rows)
            payload = tfs.encode_predict_response(outputs, req.signature, req.row_format)
        return json_response(payload, headers={"X-Model-Version": str(lv.version)})

    async def examples_api(
        method: str, request: Request, model_name: str, version: str | None, label: str | None
    ) -> Response:
        lv = _resolve(repository.snapshot, model_name, version, label)
        with VersionInUse(lv):
            body = tfs.parse_json_body(await _read_body(request, cfg.max_body_bytes))
            req = tfs.decode_examples_request(body, lv.servable.signatures, model_name)
            outputs = await run_predict(state.require_batcher(), lv, req.signature, req.inputs, req.rows)
            payload = tfs.encode_examples_response(outputs, req.signature, method)
        return json_response(payload, headers={"X-Model-Version": str(lv.version)})

    async def recommend(request: Request, model_name: str, version: str | None, label: str | None) -> Response:
        experiment = state.experiment
        if experiment is not None and version is None and label is None and model_name == repository.name:
            body = tfs.parse_json_body(await _read_body(request, cfg.max_body_bytes))
            query = parse_recommend_request(body, default_k=cfg.default_k, max_k=cfg.max_k)
            arm = experiment.pick(query)
            if arm is not None:
                return await _recommend_arm(state, experiment, arm, model_name, query)
            lv = _resolve(repository.snapshot, model_name, version, label)
        else:
            lv = _resolve(repository.snapshot, model_name, version, label)
            query = None
        with VersionInUse(lv):
            _require_recommender(lv, model_name)
            if query is None:
                body = tfs.parse_json_body(await _read_body(request, cfg.max_body_bytes))
                query = parse_recommend_request(body, default_k=cfg.default_k, max_k=cfg.max_k)
            reply = await run_recommend(
                state.require_batcher(), lv.recommender, query, _live_store(state), state.metrics
            )
        # The id a client sends back with the events the reply leads to (a click's request_id).
        request_id = uuid.uuid4().hex
        monitoring = state.monitoring
        if monitoring is not None:
            monitoring.observe(model_name, lv, query, reply)
            if monitoring.impressions and state.landing is not None and state.events is not None:
                records = impression_events(
                    experiment=None,
                    arm=None,
                    model_version=str(lv.version),
                    request_id=request_id,
                    query=query,
                    items=reply["items"],
                    propensities=[1.0] * len(reply["items"]),
                    policy="none",  # what a deterministic arm logs (Exploration.describe)
                    context=reply.get("history", ()),
                    features=state.features,
                    rules=state.events,
                    now=clock(),
                )
                reply["impressions_logged"] = await log_impressions(state.landing, records, state.metrics, None, None)
        out = {
            "request_id": request_id,
            "experiment": None,
            "arm": None,
            "model_name": model_name,
            "model_version": str(lv.version),
            "k": query.k,
        }
        out.update(reply)
        headers = {"X-Model-Version": str(lv.version), "X-Request-Id": request_id}
        return json_response(tfs.encode_json(out), headers=headers)

    selector_routes("GET", "", status, "Model version status (TF Serving GetModelStatus)")
    selector_routes("GET", "/metadata", metadata, "Signatures of a version (TF Serving GetModelMetadata)")
    selector_routes(
        "POST",
        ":predict",
        predict,
        "Run a signature (row or columnar format)",
        openapi_extra={"requestBody": PREDICT_BODY},
    )
    for verb in ("regress", "classify"):
        selector_routes(
            "POST",
            f":{verb}",
            partial(examples_api, verb),
            f"{verb.title()} examples with a signature whose inputs are named like their features",
            openapi_extra={"requestBody": EXAMPLES_BODY},
        )
    selector_routes(
        "POST",
        ":recommend",
        recommend,
        "Top-K items for a user and/or recent items, via the ANN index",
        openapi_extra={"requestBody": RECOMMEND_BODY},
    )


def _bind(handler: _Handler, version: str | None, label: str | None) -> Callable[..., Any]:
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


def _require_recommender(lv: LoadedVersion, model_name: str) -> None:
    if lv.recommender is None:
        raise tfs.bad_request(
            f"Model {model_name!r} version {lv.version} is not a sparktf recommender export "
            "(no assets.extra/sparktf.json with item embeddings), so it cannot answer :recommend; "
            "use :predict."
        )


async def _recommend_arm(
    state: ServerState, experiment: ServedExperiment, arm: Arm, model_name: str, query: RecommendQuery
) -> Response:
    """``:recommend`` by an experiment arm: its model or baseline answers, the shown items
    are logged as impressions, and the arm's outcome and latency are counted."""
    started = time.perf_counter()
    metrics = state.metrics
    try:
        lv: LoadedVersion | None = None
        if arm.model.kind == "baseline":
            recommender: Any = experiment.baselines[arm.model.value]
        else:
            snap = state.repository.snapshot
            if arm.name not in snap.labels or snap.labels[arm.name] not in snap.versions:
                raise ServingError(
                    f"Experiment {experiment.name!r}: arm {arm.name!r} serves {model_name} "
                    f"{'@' + arm.model.value if arm.model.kind == 'alias' else 'version ' + arm.model.value}, "
                    "which is not loaded (yet, or it failed to load: see /v1/models/" + model_name + ").",
                    hint="Retry shortly; check the registry alias or version the arm names.",
                    status=503,
                )
            lv = snap.versions[snap.labels[arm.name]]
            recommender = lv.recommender
        with VersionInUse(lv) if lv is not None else nullcontext():
            if lv is not None:
                _require_recommender(lv, model_name)
            # An exploring arm asks its model for its candidates, and its policy picks the shown ones.
            asked = replace(query, k=max(query.k, arm.exploration.pool))
            reply = await run_recommend(state.require_batcher(), recommender, asked, _live_store(state), metrics)
        if lv is not None and state.monitoring is not None:
            # The model's own ranking (before exploration): what its reference profile describes.
            state.monitoring.observe(model_name, lv, query, reply)
        request_id = uuid.uuid4().hex
        if arm.exploration.kind == "plackett_luce":
            # Its exact propensities take milliseconds (3 ms at 50 candidates, 12 ms at 200): off
            # the event loop, so that other requests are not held up behind them.
            propensities = await asyncio.get_running_loop().run_in_executor(
                None, explore_reply, reply, arm.exploration, query.k, request_id
            )
        else:
            propensities = explore_reply(reply, arm.exploration, query.k, request_id)
        now = clock()
        assert state.events is not None and state.landing is not None  # checked when the app was made
        records = impression_events(
            experiment=experiment.name,
            arm=arm.name,
            model_version=str(lv.version) if lv is not None else None,
            request_id=request_id,
            query=query,
            items=reply["items"],
            propensities=propensities,
            policy=arm.exploration.describe(),
            context=reply.get("history", ()),
            features=state.features,
            rules=state.events,
            now=now,
        )
        logged = await log_impressions(state.landing, records, metrics, experiment.name, arm.name)
    except Exception:
        metrics.arm_requests.labels(experiment.name, arm.name, "error").inc()
        raise
    metrics.arm_requests.labels(experiment.name, arm.name, "ok").inc()
    metrics.arm_latency.labels(experiment.name, arm.name).observe(time.perf_counter() - started)
    out: dict[str, Any] = {
        "request_id": request_id,
        "experiment": experiment.name,
        "arm": arm.name,
        "model_name": model_name,
        "model_version": str(lv.version) if lv is not None else None,
        "baseline": arm.model.value if arm.model.kind == "baseline" else None,
        "k": query.k,
        "policy": arm.exploration.describe(),
        "impressions_logged": logged,
    }
    out.update(reply)
    headers = {"X-Request-Id": request_id, "X-Experiment-Arm": arm.name}
    if lv is not None:
        headers["X-Model-Version"] = str(lv.version)
    return json_response(tfs.encode_json(out), headers=headers)


def _experiment_file(state: ServerState, name: str, *, binary: bool = False) -> Any:
    """A file the report wrote in the experiment's folder (a fixed name, never a path from the
    request): the JSON decoded, or the bytes; None when there is none yet."""
    import json
    import os

    if not state.experiment_dir:
        return None
    path = os.path.join(state.experiment_dir, name)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    if binary:
        return data
    try:
        return json.loads(data)
    except ValueError:
        return None


def _live_store(state: ServerState) -> OnlineStore | None:
    """The store of live histories, unless ``serve.live_history`` is off."""
    return state.online if state.cfg.live_history else None


def _resolve(snap: Snapshot, name: str, version: str | None, label: str | None) -> LoadedVersion:
    return snap.resolve(name, tfs.parse_version(version) if version is not None else None, label)


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


def _get_and_head(app: FastAPI, path: str, **kwargs: Any) -> Callable[[_Handler], _Handler]:
    """Register a GET route that answers HEAD too (HTTP requires it of every GET; FastAPI's
    routes do not add it). The HEAD twin stays out of the OpenAPI document."""

    def register(endpoint: _Handler) -> _Handler:
        app.add_api_route(path, endpoint, methods=["GET"], **kwargs)
        app.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False, **kwargs)
        return endpoint

    return register


# --------------------------------------------------------------------------- operations


def _add_operations(app: FastAPI, state: ServerState) -> None:
    repository = state.repository

    @_get_and_head(app, "/healthz", summary="Liveness: the process answers")
    async def healthz() -> Response:
        return json_response(b'{"status":"ok"}')

    @_get_and_head(
        app, "/readyz", summary="Readiness: a model version is loaded and warmed up", responses={503: ERRORS[503]}
    )
    async def readyz() -> Response:
        snap = repository.snapshot
        if not repository.ready:
            why = repository.last_error or "the first version is still loading"
            return json_response(tfs.encode_error(f"Not ready: {why}."), 503)
        default = snap.versions[snap.default] if snap.default is not None else None
        recommender = getattr(default, "recommender", None)
        doc: dict[str, Any] = {
            "status": "ready",
            "model": snap.name,
            "default_version": snap.default,
            "versions": sorted(snap.versions),
            "labels": dict(snap.labels),
            "index": getattr(recommender, "index_kind", None),
        }
        index_problem = getattr(recommender, "index_problem", None)
        problems = [f"index: {index_problem}"] if index_problem else []
        if repository.last_error:
            problems.append(repository.last_error)
        if problems:
            # Ready, but degraded: say why, so that an operator sees it without the logs.
            doc["problems"] = problems
        return json_response(tfs.encode_json(doc))

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        if state.monitoring is not None:
            state.metrics.set_monitoring(state.monitoring.gauges(repository.snapshot))
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

    @app.get(
        "/v1/monitoring",
        summary="Drift of each loaded version's traffic against its reference profile, alerts, online quality",
        responses=ERRORS,
    )
    async def monitoring() -> Response:
        if state.monitoring is None:
            doc: dict[str, Any] = {"enabled": False, "status": "disabled", "alerts": [], "versions": [], "report": None}
        else:
            doc = await asyncio.get_running_loop().run_in_executor(None, state.monitoring.status, repository.snapshot)
        return json_response(tfs.encode_json(doc))

    @app.post("/v1/admin/reload", summary="Ask the model source for new versions now", responses=ERRORS)
    async def reload() -> Response:
        changed = await asyncio.get_running_loop().run_in_executor(None, repository.refresh)
        snap = repository.snapshot
        doc: dict[str, Any] = {"changed": changed, "default_version": snap.default, "versions": sorted(snap.versions)}
        if repository.last_error:
            doc["error"] = repository.last_error
        return json_response(tfs.encode_json(doc))

    @_get_and_head(app, "/docs", summary="This list of operations", response_class=Response)
    async def docs() -> Response:
        return Response(docs_page(app.openapi()), media_type="text/html; charset=utf-8")


# --------------------------------------------------------------------------- the web page and its data


def _add_page(app: FastAPI, state: ServerState) -> None:
    features = state.features

    @app.get("/v1/experiment", summary="The online experiment: its arms, and its latest report", responses=ERRORS)
    async def experiment() -> Response:
        exp = state.experiment
        if exp is None:
            return json_response(tfs.encode_json({"experiment": None}))
        shares = exp.assignment.shares
        doc: dict[str, Any] = {
            "experiment": exp.name,
            "control": exp.assignment.control,
            "arms": [
                {
                    "name": a.name,
                    "model": a.model.value,
                    "kind": a.model.kind,
                    "share": shares[a.name],
                    "policy": a.exploration.describe(),
                }
                for a in exp.assignment.arms
            ],
            "report": _experiment_file(state, "report.json"),
            "off_policy": _experiment_file(state, OFFPOLICY_FILE),
        }
        return json_response(tfs.encode_json(doc))

    @_get_and_head(
        app, "/v1/experiment/ctr.png", summary="The experiment's cumulative CTR chart", response_class=Response
    )
    async def experiment_chart() -> Response:
        data = _experiment_file(state, "ctr.png", binary=True)
        if data is None:
            raise ServingError(
                "No experiment chart yet.", hint="Run `sparktf experiment report` to make one.", status=404
            )
        return Response(data, media_type="image/png")

    @app.get("/v1/users", summary="Users known from the features tables (for the web page)", responses=ERRORS)
    async def users(prefix: str = "", limit: int = 100) -> Response:
        if not 1 <= limit <= 10_000:
            raise tfs.bad_request(f"'limit' must be from 1 to 10000; got {limit}.")
        doc = {
            "users": features.users(prefix, limit),
            "total": features.user_count(prefix),
            "features": features.path or None,
        }
        return json_response(tfs.encode_json(doc))

    @app.get(
        "/v1/users/{user_id}",
        summary="A user's recent items (features tables) and live history (online store), with their attributes",
        responses=ERRORS,
    )
    async def user(user_id: str) -> Response:
        live, live_error = None, None
        store = _live_store(state)
        if store is not None:
            loop = asyncio.get_running_loop()
            found, live_error = await loop.run_in_executor(
                None, partial(lookup_live, store, [RecommendQuery(user_id=user_id, history=(), k=1)])
            )
            live = found.get(user_id)
        known = user_id in features.recent or user_id in features.seen
        if not known and live is None:
            where = features.path or "no features tables (set serve.features_path)"
            online = "" if store is None else (f"; {live_error}" if live_error else " nor in the online store")
            raise tfs.not_found(f"User {user_id!r} is not in the features tables ({where}){online}.")
        doc: dict[str, Any] = {
            "user_id": user_id,
            "recent": features.attributes(list(features.recent.get(user_id, ()))),
            "seen_count": len(features.seen.get(user_id, ())),
        }
        if live is not None:
            doc["live"] = {"items": features.attributes(list(live.items)), **live_block(live)}
            doc["live"]["session_start"] = live.session_start
        if live_error is not None:
            doc["live_error"] = live_error
        return json_response(tfs.encode_json(doc))

    @_get_and_head(app, "/", summary="The recommendations web page", response_class=Response)
    async def page() -> Response:
        # The chart library goes inside the page: one document, no second request (a script
        # request could not send the bearer token) and nothing fetched from elsewhere.
        web = resources.files("sparktf.serving").joinpath("web")
        charts = web.joinpath("charts.js").read_text(encoding="utf-8")
        html = web.joinpath("index.html").read_text(encoding="utf-8")
        charts = charts.replace("</script", "<\\/script")  # a string in the code cannot end the element
        html = html.replace("<!-- charts.js -->", f"<script>\n{charts}</script>", 1)
        return Response(html.encode("utf-8"), media_type="text/html; charset=utf-8")
