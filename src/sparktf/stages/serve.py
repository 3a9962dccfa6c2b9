"""``sparktf serve``: the configuration turned into :func:`sparktf.serving.server.serve`'s arguments.

:func:`serve_args` is pure (it reads the config and looks whether the workdir's
index exists; it creates nothing), so what a configuration serves can be checked
without starting a server. :func:`run_serve` is what the command runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from sparktf.config import Config, OnlineConfig, ServeConfig
from sparktf.experiments.assignment import Assignment
from sparktf.online.events import EventRules
from sparktf.serving.monitor import ServedMonitoring
from sparktf.stages._online import assignment, event_rules, landing_dir, served_online_path

__all__ = ["ServeArgs", "run_serve", "serve_args"]


@dataclass(frozen=True)
class ServeArgs:
    """The arguments of :func:`sparktf.serving.server.serve`.

    Attributes:
        settings: the ``[serve]`` section.
        model: ``models:/name@alias``, ``models:/name/<version>`` or a TF Serving base path.
        tracking_uri: the MLflow tracking URI for ``models:/`` sources.
        features_path: the features tables ("" for none).
        index_path: a saved ANN index ("" to look in each version directory only).
        cache_dir: where registry versions are downloaded ("": a new temporary directory,
            for a remote workdir).
        events: the rules ``POST /v1/events`` checks (``[data]``, ``stream.max_future_s``).
        landing_dir: where accepted events are made durable ("" for a remote workdir:
            the server then collects no events).
        online: the ``[online]`` section (the live histories :recommend reads).
        online_path: the online store's SQLite file (``online.store = "sqlite"``; "" for a
            remote workdir: the server then reads no live histories).
        experiment: the online experiment (``[experiment]``), None when it has no name.
        experiment_dir: ``<workdir>/experiments/<name>`` (its report, for the page), "" when
            there is no experiment or the workdir is remote.
        monitoring: ``[monitoring]`` as the server applies it (None: ``monitoring.enabled`` off);
            its report is read from ``<workdir>/monitoring``.
    """

    settings: ServeConfig
    model: str
    tracking_uri: str
    features_path: str
    index_path: str
    cache_dir: str
    events: EventRules
    landing_dir: str
    online: OnlineConfig
    online_path: str
    experiment: Assignment | None
    experiment_dir: str
    monitoring: ServedMonitoring | None


def serve_args(cfg: Config, model: str | None) -> ServeArgs:
    """What ``sparktf serve [--model MODEL]`` serves under ``cfg``.

    Without ``model`` the champion is served: ``models:/<tracking.registered_model>@<gate.champion_alias>``,
    the alias the validation gate moves (not a hard-coded ``@champion``). The features
    and the index default to the workdir's when it is local; registry versions are
    cached under ``<workdir>/state/serving-cache``.
    """
    serve = cfg.serve
    paths = cfg.paths
    features_path = serve.features_path or (paths.features if paths.is_local else "")
    index_path = serve.index_path or (paths.index if paths.is_local and os.path.isdir(paths.index) else "")
    cache_dir = os.path.join(paths.state, "serving-cache") if paths.is_local else ""
    return ServeArgs(
        settings=serve,
        model=model or f"models:/{cfg.tracking.registered_model}@{cfg.gate.champion_alias}",
        tracking_uri=cfg.tracking_uri,
        features_path=features_path,
        index_path=index_path,
        cache_dir=cache_dir,
        events=event_rules(cfg),
        landing_dir=landing_dir(cfg),
        online=cfg.online,
        online_path=served_online_path(cfg),
        experiment=assignment(cfg.experiment),
        experiment_dir=(
            os.path.join(paths.experiments, cfg.experiment.name) if cfg.experiment.active and paths.is_local else ""
        ),
        monitoring=(
            ServedMonitoring.from_config(cfg.monitoring, report_dir=paths.monitoring if paths.is_local else "")
            if cfg.monitoring.enabled
            else None
        ),
    )


def run_serve(cfg: Config, model: str | None) -> None:
    """Serve ``model`` (default: the champion) under ``cfg`` until SIGTERM or Ctrl-C."""
    from sparktf.serving.server import serve

    args = serve_args(cfg, model)
    serve(**{f.name: getattr(args, f.name) for f in fields(args)})
