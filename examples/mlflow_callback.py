"""Log Keras training metrics to MLflow from the chief only, whatever the values in ``logs`` are.

What it shows:

* ``RunTracker`` (``sparktf.training.tracking``) opens an experiment and a run in a
  SQLite tracking store inside the work directory, as ``sparktf train`` does
  (``<workdir>/mlflow.db``, artifacts in ``<workdir>/mlartifacts``).
* ``ChiefMetricsCallback(tracking_uri, run_id)`` logs every epoch's metrics to that
  run. Install it on every worker (Keras callbacks must be symmetric under
  MultiWorkerMirroredStrategy); only the chief talks to MLflow, the other workers'
  copies log nothing, which the end of this script shows.
* Keras ``logs`` are not only tensors: other callbacks put Python floats, numpy
  scalars and even strings there. A callback that calls ``.numpy()`` on every value
  (as the seed project's did) crashes on them; this one logs every value that is a
  finite number and names, once, each one it leaves out.
* The metric history read back from MLflow, one value per epoch.

Run it, then look at the run in the MLflow UI if you like:

    python examples/mlflow_callback.py --workdir /tmp/mlflow-example
    mlflow ui --backend-store-uri sqlite:////tmp/mlflow-example/mlflow.db
    python examples/mlflow_callback.py --smoke-test   # 3 epochs, seconds
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from _common import parse_args, workdir

from sparktf.training.tracking import ChiefMetricsCallback, RunTracker


def run_facts_callback(tf: Any) -> Any:
    """A callback that adds values which are *not* tensors to the epoch's ``logs``,
    as learning-rate readers, timers and schedulers do."""

    class RunFacts(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if logs is None:
                return
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)  # a Python float
            logs["weight_norm"] = sum(float(abs(w).sum()) for w in self.model.get_weights())  # another
            logs["phase"] = "warmup" if epoch == 0 else "main"  # a string: not a metric at all

    return RunFacts()


def main() -> None:
    args = parse_args(__doc__)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    epochs, rows = (3, 256) if args.smoke_test else (20, 10_000)
    with workdir(args.workdir, "mlflow") as work:
        import numpy as np

        from sparktf.tfenv import import_tensorflow

        tf = import_tensorflow()
        tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
        tracker = RunTracker(tracking_uri, "examples", artifact_root=str(work / "mlartifacts"))
        run_id = tracker.start("mlflow-callback-example", tags={"example": "mlflow_callback"})
        tracker.log_params({"train": {"epochs": epochs, "rows": rows, "optimizer": "adam"}})

        rng = np.random.default_rng(0)
        x = rng.normal(size=(rows, 4)).astype("float32")
        y = x @ np.array([1.0, -2.0, 0.5, 3.0], dtype="float32") + 1.0
        model = tf.keras.Sequential([tf.keras.layers.Dense(8, activation="relu"), tf.keras.layers.Dense(1)])
        model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
        # RunFacts comes first, so the MLflow callback sees the values it adds.
        model.fit(
            x,
            y,
            validation_split=0.25,
            epochs=epochs,
            batch_size=32,
            verbose=0,
            callbacks=[run_facts_callback(tf), ChiefMetricsCallback(tracking_uri, run_id)],
        )

        # A non-chief worker (index 1 in TF_CONFIG) gets the same callback; it logs nothing.
        previous = os.environ.get("TF_CONFIG")
        os.environ["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": ["host-a:2222", "host-b:2222"]}, "task": {"type": "worker", "index": 1}}
        )
        try:
            ChiefMetricsCallback(tracking_uri, run_id).on_epoch_end(epochs, {"loss": 123.0})
        finally:
            if previous is None:
                del os.environ["TF_CONFIG"]
            else:
                os.environ["TF_CONFIG"] = previous
        tracker.end()

        client = tracker.client
        run = client.get_run(run_id)
        print(f"MLflow run {run_id} in {tracking_uri}: status {run.info.status}, params {run.data.params}")
        print("metric history read back from MLflow (one value per epoch):")
        for key in sorted(run.data.metrics):
            points = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
            values = ", ".join(f"{m.value:.4g}" for m in points)
            print(f"  {key:14s} steps {[m.step for m in points]}: {values}")
        loss_steps = [m.step for m in client.get_metric_history(run_id, "loss")]
        print(
            f"logged {len(run.data.metrics)} metrics over {len(loss_steps)} epochs; "
            f"'phase' logged: {'phase' in run.data.metrics}; "
            f"the non-chief worker's epoch {epochs} logged: {epochs in loss_steps}"
        )


if __name__ == "__main__":
    main()
