"""MLflow tracking: the driver owns the run, the chief alone adds per-epoch metrics.

Why not ``mlflow.tensorflow.autolog`` or the seed's callback: autolog logs from
every worker under MultiWorkerMirroredStrategy, and the seed's callback crashed
on non-tensor values in Keras ``logs``. :class:`ChiefMetricsCallback` is
installed on every worker (callbacks must be symmetric) but only the chief talks
to MLflow, and it converts each log value it can (tensors, numpy, numbers) and
skips the rest, saying which.

MLflow is imported inside the functions that use it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import subprocess
from collections.abc import Mapping
from typing import Any

from sparktf.errors import TrackingError

__all__ = [
    "ChiefMetricsCallback",
    "RunTracker",
    "flatten_params",
    "git_commit",
    "is_chief_from_env",
    "metric_key",
    "numeric_logs",
]

log = logging.getLogger(__name__)

_BAD_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")


def metric_key(name: str) -> str:
    """An MLflow-safe metric name: ``ndcg@10`` → ``ndcg_at_10``."""
    return _BAD_CHARS.sub("_", name.replace("@", "_at_"))


def numeric_logs(logs: Mapping[str, Any] | None) -> tuple[dict[str, float], list[str]]:
    """Split Keras ``logs`` into finite floats and the keys that are not numbers."""
    out: dict[str, float] = {}
    skipped: list[str] = []
    for key, value in (logs or {}).items():
        try:
            if hasattr(value, "numpy"):
                value = value.numpy()
            if hasattr(value, "item") and getattr(value, "size", 1) == 1:
                value = value.item()
            number = float(value)
        except (TypeError, ValueError):
            skipped.append(key)
            continue
        if math.isfinite(number):
            out[metric_key(key)] = number
        else:
            skipped.append(key)
    return out, skipped


def flatten_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config dict → ``{"train.epochs": "10", ...}`` (MLflow params are strings)."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, name + "."))
        else:
            text = json.dumps(value, default=str) if isinstance(value, list | tuple) else str(value)
            flat[name] = text[:6000]  # MLflow's param value limit
    return flat


def is_chief_from_env() -> bool:
    """True unless TF_CONFIG names this process as a worker other than index 0."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    task = json.loads(raw).get("task", {})
    return task.get("type", "worker") in ("chief", "worker") and (
        task.get("type") == "chief" or int(task.get("index", 0)) == 0
    )


def git_commit(cwd: str | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=cwd, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def _keras_callback_base() -> Any:
    from sparktf.tfenv import import_tensorflow

    return import_tensorflow().keras.callbacks.Callback


def ChiefMetricsCallback(tracking_uri: str, run_id: str, prefix: str = "") -> Any:
    """A Keras callback that logs every epoch's metrics to ``run_id``, from the chief only.

    Built lazily so that defining it does not import TensorFlow.
    """
    base = _keras_callback_base()

    class _ChiefMetrics(base):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            super().__init__()
            self.chief = is_chief_from_env()
            self._client: Any = None
            self._warned: set[str] = set()

        def _mlflow(self) -> Any:
            if self._client is None:
                from mlflow.tracking import MlflowClient

                self._client = MlflowClient(tracking_uri=tracking_uri)
            return self._client

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            if not self.chief:
                return
            from mlflow.entities import Metric

            values, skipped = numeric_logs(logs)
            for key in set(skipped) - self._warned:
                log.warning("metric %r is not a finite number; not logged to MLflow", key)
                self._warned.add(key)
            import time

            now = int(time.time() * 1000)
            metrics = [Metric(f"{prefix}{k}", v, now, epoch) for k, v in values.items()]
            if metrics:
                self._mlflow().log_batch(run_id, metrics=metrics)

    return _ChiefMetrics()


#: The driver that started a run, ``<host>:<pid>``: a RUNNING run whose driver is gone
#: was abandoned (see :meth:`RunTracker.fail_abandoned_runs`).
DRIVER_TAG = "sparktf.driver"


def driver_tag() -> dict[str, str]:
    """The tag that names this process as a run's driver."""
    return {DRIVER_TAG: f"{socket.gethostname()}:{os.getpid()}"}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (ended, not yet reaped by its parent) still answers; it runs nothing.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


#: MLflow 3's UI opens an experiment without this tag on its (empty) GenAI overview
#: instead of the training runs; "custom_model_development" shows the runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def open_experiment(client: Any, experiment: str, artifact_root: str | None, tracking_uri: str) -> str:
    """The id of MLflow experiment ``experiment``, created with its artifacts under
    ``artifact_root`` when it does not exist yet. Without a location MLflow would put them
    in ``./mlruns`` of whatever directory the command ran in."""
    try:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            location = None
            if artifact_root:
                os.makedirs(artifact_root, exist_ok=True) if "://" not in artifact_root else None
                location = artifact_root if "://" in artifact_root else "file://" + os.path.abspath(artifact_root)
            return str(
                client.create_experiment(
                    experiment, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
                )
            )
        if (exp.tags or {}).get(EXPERIMENT_KIND_TAG) is None:
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return str(exp.experiment_id)
    except Exception as exc:
        raise TrackingError(
            f"Cannot open MLflow experiment {experiment!r} at {tracking_uri}: {exc}",
            hint="Check tracking.tracking_uri (is the server up? is the workdir writable?).",
        ) from exc


class RunTracker:
    """Driver-side handle on one MLflow run.

    Args:
        tracking_uri: e.g. ``sqlite:///<workdir>/mlflow.db`` or ``http://host:5000``.
        experiment: experiment name; created with its artifacts under ``artifact_root``
            when it does not exist yet.
        artifact_root: where a new experiment stores artifacts (``<workdir>/mlartifacts``).
    """

    def __init__(self, tracking_uri: str, experiment: str, artifact_root: str | None = None) -> None:
        import mlflow

        self.tracking_uri = tracking_uri
        mlflow.set_tracking_uri(tracking_uri)
        self.client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
        self.experiment_id = open_experiment(self.client, experiment, artifact_root, tracking_uri)
        self.run_id: str | None = None

    def start(self, run_name: str, tags: Mapping[str, str] | None = None) -> str:
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags or {}))
        self.run_id = run.info.run_id
        return self.run_id

    def _rid(self) -> str:
        if self.run_id is None:
            raise TrackingError("No MLflow run started.", hint="Call RunTracker.start() first.")
        return self.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        flat = flatten_params(params)
        items = [Param(k, v) for k, v in flat.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self._rid(), params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0, prefix: str = "") -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values, _ = numeric_logs(metrics)
        batch = [Metric(f"{prefix}{k}", v, now, step) for k, v in values.items()]
        for i in range(0, len(batch), 500):
            self.client.log_batch(self._rid(), metrics=batch[i : i + 500])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self._rid(), key, str(value))

    def log_dict(self, data: Any, artifact_file: str) -> None:
        self.client.log_dict(self._rid(), data, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self._rid(), text, artifact_file)

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        if os.path.isdir(path):
            self.client.log_artifacts(self._rid(), path, artifact_path)
        else:
            self.client.log_artifact(self._rid(), path, artifact_path)

    def log_history_plot(self, history: Mapping[str, list[float]], artifact_file: str, title: str = "") -> None:
        """Training curves (one panel per metric, val_* beside its train twin) as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = sorted({k.removeprefix("val_") for k in history})
        if not names:
            return
        fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
        for ax, name in zip(axes[0], names, strict=True):
            for key in (name, f"val_{name}"):
                if key in history:
                    ax.plot(range(1, len(history[key]) + 1), history[key], marker="o", label=key)
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        self.client.log_figure(self._rid(), fig, artifact_file)
        plt.close(fig)

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status=status)

    def fail_abandoned_runs(self, **tags: str) -> list[str]:
        """Mark FAILED the runs of this experiment, with these tags, that are still RUNNING
        although the driver that started them is gone (killed, or its machine lost power).

        A run records its driver as ``sparktf.driver = <host>:<pid>`` (see
        :func:`driver_tag`); one whose process no longer exists on this host is
        abandoned. Runs of a driver on another host are left alone: from here there is
        no telling whether it still runs.

        Returns:
            The ids of the runs marked FAILED.
        """
        conditions = ["attributes.status = 'RUNNING'", *(f"tags.`{k}` = '{v}'" for k, v in tags.items())]
        failed = []
        for run in self.client.search_runs([self.experiment_id], filter_string=" and ".join(conditions)):
            driver = run.data.tags.get(DRIVER_TAG, "")
            host, _, pid = driver.rpartition(":")
            if host != socket.gethostname() or not pid.isdigit() or _alive(int(pid)):
                continue
            self.client.set_tag(run.info.run_id, "sparktf.failure", f"driver {driver} ended without finishing the run")
            self.client.set_terminated(run.info.run_id, status="FAILED")
            failed.append(run.info.run_id)
        return failed

    def log_model(self, export_path: str, name: str, input_example: Any = None) -> str:
        """Log an export as an MLflow logged model (pyfunc flavour) of this run; returns its URI."""
        import mlflow

        from sparktf.training.mlflow_model import RecommenderPyfunc, pip_requirements

        with mlflow.start_run(run_id=self._rid()):
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=RecommenderPyfunc(),
                artifacts={"savedmodel": export_path},
                pip_requirements=pip_requirements(),
                input_example=input_example,
            )
        return str(info.model_uri)
