"""A drop-in for spark-tensorflow-distributor's ``MirroredStrategyRunner``.

Code written for the seed package keeps working with one changed import::

    from sparktf.distributed import MirroredStrategyRunner
    MirroredStrategyRunner(num_slots=2, use_gpu=False).run(train)

Same constructor, same meaning of ``num_slots`` (GPUs for GPU training, Spark
tasks for CPU training), same default (``train`` runs inside a
MultiWorkerMirroredStrategy scope unless ``use_custom_strategy=True``), same
return value (the chief's). Underneath it is :class:`SparkRunner`, so it also
gets fresh worker processes, race-free ports, streamed logs, clear errors and,
if asked (``max_restarts``), recovery.

Differences, all where the original fails or surprises:

* the return value must pickle to at most 1 MiB; a returned Keras model is
  saved to ``run_dir`` and the :class:`TrainingResult` is returned instead (a
  live model cannot cross processes; the original fails to pickle it);
* errors are sparktf errors (``ConfigError`` for a bad ``num_slots`` where the
  original raised ``ValueError``), and the CPU local-mode message points to
  ``num_slots=1`` rather than the original's impossible ``-1``;
* GPUs are taken in order rather than at random.

We keep the name and signature rather than asking users to port their code to
:class:`SparkRunner`; the seed package itself is unmaintained and pins old TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sparktf._environ import temporary_environ
from sparktf.distributed.gpus import gpu_amount_key, parse_gpu_addresses, tasks_for_slots
from sparktf.distributed.launcher import SparkRunner
from sparktf.distributed.result import TrainingResult
from sparktf.errors import ConfigError, LauncherError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["MirroredStrategyRunner"]


class MirroredStrategyRunner:
    """Run a TensorFlow training function on Spark with MultiWorkerMirroredStrategy.

    Args:
        num_slots: GPUs (with ``use_gpu``) or Spark tasks (CPU) to train on; 1 or more.
        local_mode: run ``train_fn`` in this (the driver) process.
        use_gpu: train on the GPUs Spark assigns (``spark.task.resource.<name>.amount``).
        gpu_resource_name: Spark's name of the GPU resource.
        use_custom_strategy: ``train_fn`` builds its own ``tf.distribute`` strategy.
        spark: the SparkSession (default: the active one). Not in the original.
        run_dir: where the chief writes checkpoints and a returned model. Not in the original.
        max_restarts: relaunches after a lost worker (the original has none: 0). Not in the original.
        log_sink: receives the streamed worker lines. Not in the original.

    Raises:
        ConfigError: ``num_slots`` below 1.
        LauncherError: GPU training without ``spark.task.resource.<name>.amount``.
    """

    def __init__(
        self,
        *,
        num_slots: int,
        local_mode: bool = False,
        use_gpu: bool = True,
        gpu_resource_name: str = "gpu",
        use_custom_strategy: bool = False,
        spark: SparkSession | None = None,
        run_dir: str | None = None,
        max_restarts: int = 0,
        log_sink: Callable[[str], None] | None = None,
    ) -> None:
        if isinstance(num_slots, bool) or not isinstance(num_slots, int) or num_slots < 1:
            raise ConfigError(f"MirroredStrategyRunner: num_slots = {num_slots!r} is not allowed; expected 1 or more.")
        self.num_slots = num_slots
        self.local_mode = local_mode
        self.use_gpu = use_gpu
        self.gpu_resource_name = gpu_resource_name
        self.use_custom_strategy = use_custom_strategy
        self.run_dir = run_dir
        self.max_restarts = max_restarts
        self.last_result: TrainingResult | None = None
        self._runner = SparkRunner(spark, log_sink=log_sink)
        self.num_tasks: int | None = None if local_mode else self._num_tasks()

    def _num_tasks(self) -> int:
        if not self.use_gpu:
            return tasks_for_slots(self.num_slots, None)
        key = gpu_amount_key(self.gpu_resource_name)
        conf = self._runner._session().sparkContext.getConf()
        if not conf.contains(key):
            raise LauncherError(
                f"GPU training (use_gpu=True, the default) needs the Spark conf {key}, which is not set.",
                hint=f"Start Spark with {key}=1 and a GPU discovery script, or pass use_gpu=False for CPU training.",
            )
        amount = float(conf.get(key) or "0")
        return tasks_for_slots(self.num_slots, amount)

    def run(self, train_fn: Callable[..., Any], **kwargs: Any) -> Any:
        """Run ``train_fn(**kwargs)`` on every worker and return the chief's return value.

        Returns:
            The chief's (partition 0's) return value; in local mode ``train_fn``'s
            own. When ``train_fn`` returns a Keras model or ``History``, the
            model is saved and the :class:`TrainingResult` (with its paths) is
            returned instead. The full result is also kept in ``last_result``.
        """
        strategy = "custom" if self.use_custom_strategy else "multi_worker_mirrored"
        if self.local_mode or self.num_tasks is None:
            result = self._run_local(train_fn, kwargs, strategy)
        else:
            result = self._runner.run(
                train_fn,
                num_workers=self.num_tasks,
                use_gpu=self.use_gpu,
                strategy=strategy,
                max_restarts=self.max_restarts,
                run_dir=self.run_dir,
                kwargs=kwargs,
                gpu_resource_name=self.gpu_resource_name,
                gpu_slots=self.num_slots if self.use_gpu else None,
            )
        self.last_result = result
        return result if result.saved_model_path is not None else result.value

    def _run_local(self, train_fn: Callable[..., Any], kwargs: dict[str, Any], strategy: str) -> TrainingResult:
        if not self.use_gpu:
            if self.num_slots > 1:
                raise ConfigError(
                    f"MirroredStrategyRunner: num_slots = {self.num_slots} with local_mode=True and use_gpu=False; "
                    "CPU training in local mode runs one process.",
                    hint="Set num_slots=1, or local_mode=False to train on that many Spark tasks.",
                )
            visible = ""
        else:
            resources = self._runner._session().sparkContext.resources
            if self.gpu_resource_name not in resources:
                raise LauncherError(
                    f"local_mode with use_gpu=True needs driver GPUs, but the driver has no "
                    f"{self.gpu_resource_name!r} resource.",
                    hint=f"Set spark.driver.resource.{self.gpu_resource_name}.amount and its discovery script, "
                    "or use_gpu=False.",
                )
            owned = parse_gpu_addresses(resources[self.gpu_resource_name].addresses)
            if self.num_slots > len(owned):
                raise LauncherError(
                    f"{self.num_slots} slots were requested for local GPU training, but the driver has only "
                    f"{len(owned)} GPUs ({owned}).",
                    hint=f"Lower num_slots to {len(owned)} or fewer.",
                )
            visible = ",".join(owned[: self.num_slots])
        # Takes effect only if TensorFlow has not started in this process yet, as in the original.
        with temporary_environ({"CUDA_VISIBLE_DEVICES": visible}):
            return self._runner.run(
                train_fn, num_workers=0, strategy=strategy, run_dir=self.run_dir, kwargs=kwargs, max_restarts=0
            )
