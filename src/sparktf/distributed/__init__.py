"""Distributed TensorFlow training on Spark.

Run a ``train_fn`` on N TensorFlow workers, one per task of a Spark barrier
stage, under MultiWorkerMirroredStrategy; get back a small
:class:`TrainingResult` (paths, metrics, history). Worker 0 is the chief.

    from sparktf.distributed import SparkRunner, callbacks

    def train_fn(epochs):
        model = build_model()                       # inside the strategy's scope already
        model.fit(dataset, epochs=epochs, callbacks=callbacks())
        return model                                # saved by the launcher; paths come back

    result = SparkRunner(spark).run(train_fn, num_workers=2, kwargs={"epochs": 3}, run_dir="/shared/run")

Code written for spark-tensorflow-distributor runs unchanged with
:class:`MirroredStrategyRunner`. Importing this package is cheap: Spark and
TensorFlow load only when a run starts.
"""

from __future__ import annotations

from sparktf.distributed.checkpoints import callbacks, save_model
from sparktf.distributed.launcher import SparkRunner
from sparktf.distributed.mirrored import MirroredStrategyRunner
from sparktf.distributed.ranks import RunContext, is_chief, num_workers, on_chief, run_context, worker_index
from sparktf.distributed.result import TrainingResult, WorkerTiming
from sparktf.distributed.tf_config import build_tf_config

__all__ = [
    "MirroredStrategyRunner",
    "RunContext",
    "SparkRunner",
    "TrainingResult",
    "WorkerTiming",
    "build_tf_config",
    "callbacks",
    "is_chief",
    "num_workers",
    "on_chief",
    "run_context",
    "save_model",
    "worker_index",
]
