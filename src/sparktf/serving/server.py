"""``sparktf serve``: build the repository and the app from the config, run uvicorn.

Kept apart from :mod:`sparktf.serving.app` so that tests and benchmarks can make
an app from parts (a repository, a features lookup) without a whole config.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from functools import partial
from typing import Any

from sparktf.config import Config
from sparktf.errors import ServingError
from sparktf.serving.features import load_features
from sparktf.serving.repository import ModelRepository, load_version, source_for

__all__ = ["build_app", "serve"]


def build_app(cfg: Config, model: str) -> tuple[Any, ModelRepository]:
    """The app and its repository for ``--model`` (registry URI or base path) under ``cfg``.

    Raises:
        ServingError: ``--model`` is neither a ``models:/`` URI nor a local path.
    """
    from sparktf.serving.app import create_app

    serve_cfg = cfg.serve
    paths = cfg.paths
    features_path = serve_cfg.features_path or (paths.features if paths.is_local else "")
    features = load_features(features_path)
    index_path = serve_cfg.index_path or (paths.index if paths.is_local and os.path.isdir(paths.index) else "")
    cache_dir = (
        os.path.join(paths.state, "serving-cache") if paths.is_local else tempfile.mkdtemp(prefix="sparktf-serve-")
    )
    source = source_for(
        model,
        tracking_uri=cfg.tracking_uri,
        cache_dir=cache_dir,
        pinned=serve_cfg.versions,
        labels=serve_cfg.labels,
    )
    loader = partial(load_version, features=features, index_path=index_path, exclude_seen=serve_cfg.exclude_seen)
    repository = ModelRepository(source, loader, serve_cfg.model_name)
    return create_app(repository, serve_cfg, features), repository


def serve(cfg: Config, model: str) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM)."""
    import uvicorn

    if not model:
        raise ServingError(
            "No model to serve.",
            hint=f"Pass --model models:/{cfg.tracking.registered_model}@champion or --model /path/to/base.",
        )
    if cfg.serve.access_log:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access = logging.getLogger("sparktf.serving.access")
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app, repository = build_app(cfg, model)
    print(
        f"sparktf serve: {model} as /v1/models/{repository.name} on http://{cfg.serve.host}:{cfg.serve.port} "
        f"(batch ≤ {cfg.serve.max_batch_size} rows, wait ≤ {cfg.serve.batch_timeout_micros} µs"
        f"{', bearer token required' if cfg.serve.auth_token else ''})",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        app,
        host=cfg.serve.host,
        port=cfg.serve.port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
    )
