"""``serve(...)``: build the repository and the app from explicit arguments, run uvicorn.

Kept apart from :mod:`sparktf.serving.app` so that tests and benchmarks can make
an app from parts (a repository, a features lookup). This module takes the
``[serve]`` settings and paths as arguments; turning a whole
:class:`~sparktf.config.Config` into them is :mod:`sparktf.stages.serve`'s job.

On SIGTERM or SIGINT the server stops taking connections, lets the requests in
flight finish (up to ``GRACEFUL_SHUTDOWN_S``), says so in one line and returns, so
that the process exits 0: a stop asked for is not a failure.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from sparktf.config import OnlineConfig, ServeConfig
from sparktf.errors import ServingError
from sparktf.registry.uri import is_model_uri
from sparktf.serving.experiment import ServedExperiment, arm_labels
from sparktf.serving.features import load_features
from sparktf.serving.monitor import ServedMonitoring
from sparktf.serving.repository import ModelRepository, load_version, source_for

if TYPE_CHECKING:
    from sparktf.experiments.assignment import Assignment
    from sparktf.online.events import EventRules

__all__ = ["GRACEFUL_SHUTDOWN_S", "build_app", "serve", "uvicorn_config"]

#: How long a stopping server waits for the requests in flight.
GRACEFUL_SHUTDOWN_S = 10
#: How long an idle keep-alive connection stays open.
KEEP_ALIVE_S = 5


def build_app(
    settings: ServeConfig,
    *,
    model: str,
    tracking_uri: str,
    features_path: str,
    index_path: str,
    cache_dir: str,
    events: EventRules | None = None,
    landing_dir: str = "",
    online: OnlineConfig | None = None,
    online_path: str = "",
    experiment: Assignment | None = None,
    experiment_dir: str = "",
    monitoring: ServedMonitoring | None = None,
) -> tuple[Any, ModelRepository]:
    """The app and its repository for ``model`` (registry URI or base path).

    Args:
        settings: the ``[serve]`` section.
        model: ``models:/name@alias``, ``models:/name/<version>`` or a TF Serving base path.
        tracking_uri: the MLflow tracking URI a ``models:/`` source reads.
        features_path: the features tables ("" for none).
        index_path: a saved ANN index ("" to look in each version directory only).
        cache_dir: where registry versions are downloaded ("" for a new temporary directory).
        events: the rules ``POST /v1/events`` checks (None: the server collects no events).
        landing_dir: where accepted events are made durable ("": the server collects no events).
        online: the ``[online]`` section, whose store gives :recommend the live histories
            (None: no live histories).
        online_path: the SQLite file of ``online.store = "sqlite"``.
        experiment: the online experiment's arms (None: no experiment). Model arms become
            labels of the repository (the arm's name → its alias or version), so they load
            and hot-reload beside the followed version; baseline arms are built from the features.
        experiment_dir: where ``sparktf experiment report`` writes the experiment's report and
            chart (``GET /v1/experiment`` and the page show them); "" for none.
        monitoring: each version's traffic against its reference profile (None: off).

    Raises:
        ServingError: ``model`` is neither a ``models:/`` URI the server can follow nor a local
            path, or it names a registry whose SQLite store does not exist; an experiment arm
            that cannot be served (an alias arm on a base path, a label clash, no features for
            a baseline, no landing directory for its impressions).
    """
    from sparktf.serving.app import create_app

    if is_model_uri(model) and tracking_uri.startswith("sqlite:///"):
        store = tracking_uri.removeprefix("sqlite:///")
        if not os.path.exists(store):
            # MLflow would create an empty store here, and the server would wait forever
            # for a champion that is gone with the deleted file.
            raise ServingError(
                f"There is no MLflow store at {store}, so {model} cannot be resolved.",
                hint="Run `sparktf run` (or restore the store), or point --workdir / tracking.tracking_uri "
                "at the run's store, or serve a base path with --model /path/to/base.",
            )
    features = load_features(features_path)
    labels = dict(settings.labels)
    served = None
    if experiment is not None:
        served = _served_experiment(experiment, model, labels, features, settings.exclude_seen)
        labels.update(arm_labels(experiment))
    source = source_for(
        model,
        tracking_uri=tracking_uri,
        cache_dir=cache_dir or tempfile.mkdtemp(prefix="sparktf-serve-"),
        pinned=settings.versions,
        labels=labels,
    )
    loader = partial(load_version, features=features, index_path=index_path, exclude_seen=settings.exclude_seen)
    repository = ModelRepository(source, loader, settings.model_name)
    landing = None
    if events is not None and landing_dir:
        from sparktf.online.landing import LandingWriter

        landing = LandingWriter(landing_dir)
    live_store = None
    if online is not None and settings.live_history and (online.store != "sqlite" or online_path):
        from sparktf.online.store import open_store

        live_store = open_store(online, online_path, readonly=True)
    app = create_app(
        repository,
        settings,
        features,
        events=events,
        landing=landing,
        online=live_store,
        experiment=served,
        monitoring=monitoring,
    )
    app.state.sparktf.experiment_dir = experiment_dir
    return app, repository


def _served_experiment(
    experiment: Assignment, model: str, labels: dict[str, str], features: Any, exclude_seen: bool
) -> ServedExperiment:
    from sparktf.serving.baselines import load_baseline

    for arm in experiment.arms:
        if arm.model.kind == "baseline":
            continue
        if arm.name in labels:
            raise ServingError(
                f"Experiment arm {arm.name!r} would be a label of the served model, and serve.labels already "
                f"has {arm.name!r}.",
                hint="Rename the arm or the label.",
            )
        if arm.model.kind == "alias" and not is_model_uri(model):
            raise ServingError(
                f"Experiment arm {arm.name!r} serves the registry alias @{arm.model.value}, but the server "
                f"serves the base path {model}, which has no aliases.",
                hint="Serve models:/<name>@<alias>, or give the arm a version number.",
            )
    baselines = {
        arm.model.value: load_baseline(arm.model.value, features, exclude_seen=exclude_seen)
        for arm in experiment.arms
        if arm.model.kind == "baseline"
    }
    return ServedExperiment(experiment, baselines)


def uvicorn_config(app: Any, settings: ServeConfig, *, port: int | None = None, log_level: str = "warning") -> Any:
    """uvicorn's settings for ``app``: the address of ``settings`` (or ``port``), the
    request-header deadline (:mod:`~sparktf.serving.connection`), short keep-alive and
    a bounded graceful shutdown. The tests run their servers with these too."""
    import uvicorn

    from sparktf.serving.connection import with_header_timeout

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port if port is None else port,
        http=with_header_timeout(settings.header_timeout_s),
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


def serve(
    settings: ServeConfig,
    *,
    model: str,
    tracking_uri: str,
    features_path: str,
    index_path: str,
    cache_dir: str,
    events: EventRules | None = None,
    landing_dir: str = "",
    online: OnlineConfig | None = None,
    online_path: str = "",
    experiment: Assignment | None = None,
    experiment_dir: str = "",
    monitoring: ServedMonitoring | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT (Ctrl-C), then return after a graceful shutdown.

    Raises:
        ServingError: no model, or one the server cannot serve.
    """
    import uvicorn

    if not model:
        raise ServingError(
            "No model to serve.",
            hint="Pass --model models:/<name>@<alias> or --model /path/to/base.",
        )
    if settings.access_log:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access = logging.getLogger("sparktf.serving.access")
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app, repository = build_app(
        settings,
        model=model,
        tracking_uri=tracking_uri,
        features_path=features_path,
        index_path=index_path,
        cache_dir=cache_dir,
        events=events,
        landing_dir=landing_dir,
        online=online,
        online_path=online_path,
        experiment=experiment,
        experiment_dir=experiment_dir,
        monitoring=monitoring,
    )
    _say(
        f"sparktf serve: {model} as /v1/models/{repository.name} on http://{settings.host}:{settings.port} "
        f"(batch ≤ {settings.max_batch_size} rows, wait ≤ {settings.batch_timeout_micros} µs"
        f"{', bearer token required' if settings.auth_token else ''})"
    )
    _say(_online_line(settings, landing_dir, online, online_path))
    if experiment is not None:
        shares = experiment.shares
        arms = ", ".join(
            f"{a.name} = {a.model.value if a.model.kind == 'baseline' else ('@' if a.model.kind == 'alias' else 'v') + a.model.value}"
            f" ({shares[a.name]:.0%})"
            for a in experiment.arms
        )
        _say(f"sparktf serve: experiment {experiment.experiment!r}: {arms}; control {experiment.control}")
    server = uvicorn.Server(uvicorn_config(app, settings))
    with _stop_signals() as received:
        server.run()
    if received:
        name = signal.Signals(received[0]).name
        _say(f"sparktf serve: stopped on {name} after finishing the requests in flight.")
    elif not server.started:
        raise ServingError(
            f"The server could not start on {settings.host}:{settings.port} (see the log above).",
            hint="Pick another serve.port, or stop what listens there.",
        )


@contextmanager
def _stop_signals() -> Iterator[list[int]]:
    """Record SIGTERM/SIGINT instead of dying of them.

    uvicorn handles both during ``run`` (graceful shutdown), then raises the signal
    again for the handler that was there before, which by default kills the process
    (exit 143 for SIGTERM) with no word of why. The handler installed here only
    records it, so ``serve`` can say what happened and return.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    wanted = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda sig, frame: received.append(sig)) for sig in wanted}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _online_line(settings: ServeConfig, landing_dir: str, online: OnlineConfig | None, online_path: str) -> str:
    """Where POST /v1/events lands and where live histories come from, or why neither."""
    events = f"events land in {landing_dir}" if landing_dir else "no event collection (remote workdir)"
    if not settings.live_history:
        live = "live histories off (serve.live_history = false)"
    elif online is None or (online.store == "sqlite" and not online_path):
        live = "no live histories (remote workdir: set online.sqlite_path or online.store = redis)"
    else:
        live = f"live histories from {online.store}" + (f" {online_path}" if online.store == "sqlite" else "")
    return f"sparktf serve: {events}; {live}"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
