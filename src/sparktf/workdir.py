"""The layout of one run's directory (``Config.paths``).

This lives apart from :mod:`sparktf.config` because it is not a setting: it is
the one place that turns the ``workdir`` setting into the paths stages read and
write, so that every stage agrees on where things are and a run stays one
directory that is easy to find and to delete.
"""

from __future__ import annotations

import os
from pathlib import Path

from sparktf.errors import ConfigError

__all__ = ["Workdir"]


class Workdir:
    """The layout of one run's directory. Paths are strings so that URIs
    (``hdfs://``, ``s3a://``) work as well as local directories."""

    def __init__(self, root: str) -> None:
        if "://" in root and not root.startswith("file://"):
            self.root = root.rstrip("/")
        else:
            self.root = str(Path(root.removeprefix("file://")).expanduser().resolve())

    @property
    def is_local(self) -> bool:
        return "://" not in self.root

    def join(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def local(self, *parts: str) -> str:
        """A path that must be on the local disk (the SQLite database, for instance)."""
        if not self.is_local:
            raise ConfigError(
                f"workdir = {self.root!r} is not a local directory, so {'/'.join(parts)} cannot live there.",
                hint="Set tracking.tracking_uri to an MLflow server (http://host:5000) when the workdir is remote.",
            )
        return os.path.join(self.root, *parts)

    # One name per kind of output; stages use these, nothing else.
    raw = property(lambda self: self.join("data", "raw"))
    events = property(lambda self: self.join("data", "events"))
    quarantine = property(lambda self: self.join("data", "quarantine"))
    features = property(lambda self: self.join("data", "features"))
    tfrecords = property(lambda self: self.join("tfrecords"))
    checkpoints = property(lambda self: self.join("checkpoints"))
    models = property(lambda self: self.join("models"))
    mlflow_artifacts = property(lambda self: self.join("mlartifacts"))
    index = property(lambda self: self.join("index"))
    recommendations = property(lambda self: self.join("recommendations"))
    state = property(lambda self: self.join("state"))
    # The online side (issue 16): events acknowledged by the server land as files,
    # the stream validates them into the live tables and the online store.
    landing = property(lambda self: self.join("data", "landing"))
    live_events = property(lambda self: self.join("data", "live", "events"))
    live_quarantine = property(lambda self: self.join("data", "live", "quarantine"))
    stream_checkpoint = property(lambda self: self.join("stream", "checkpoint"))
    online_db = property(lambda self: self.join("online", "online.db"))
    # Online experiments (issue 17): reports, charts and simulator runs, per experiment name.
    experiments = property(lambda self: self.join("experiments"))
    # Watching production (issue 19): ``sparktf monitor report``'s HTML and JSON.
    monitoring = property(lambda self: self.join("monitoring"))
    # issue 20: hyper-parameter search (the Optuna study, each trial's run dir, best.toml)
    tune = property(lambda self: self.join("tune"))

    def state_file(self, *parts: str) -> str:
        """A local file of the run's bookkeeping (stage records, small JSON states).

        Inside the workdir when it is local; for a remote workdir (``hdfs://``,
        ``s3a://``) under ``~/.cache/sparktf/runs/<hash of the workdir>/state``, since
        the driver writes these with plain file I/O.
        """
        return os.path.join(self._driver_local(), "state", *parts)

    @property
    def log_file(self) -> str:
        """The run's log (framework output, see :mod:`sparktf.runlog`): ``logs/sparktf.log``
        inside a local workdir, beside the state files of a remote one."""
        return os.path.join(self._driver_local(), "logs", "sparktf.log")

    def _driver_local(self) -> str:
        if self.is_local:
            return self.root
        import hashlib

        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        key = hashlib.sha256(self.root.encode()).hexdigest()[:16]
        return os.path.join(cache, "sparktf", "runs", key)

    def __repr__(self) -> str:
        return f"Workdir({self.root!r})"
