"""Distributed TensorFlow training on Spark: the driver side of :class:`SparkRunner`.

One call, ``SparkRunner(spark).run(train_fn, num_workers=2)``, runs
``train_fn`` on ``num_workers`` TensorFlow workers, one per task of a single
Spark barrier stage, under MultiWorkerMirroredStrategy, and returns a
:class:`~sparktf.distributed.result.TrainingResult`. What it adds over
spark-tensorflow-distributor, whose bugs and gaps are listed in
``docs``' distributed-training reference:

* **Fresh processes.** Each task runs its worker in a child process
  (:mod:`~sparktf.distributed.worker`), so reused PySpark workers never carry
  TensorFlow state from a previous run.
* **Race-free ports** (:mod:`~sparktf.distributed.ports`) and a pure
  ``TF_CONFIG`` (:mod:`~sparktf.distributed.tf_config`).
* **Recovery.** Spark cannot retry a failed barrier *ResultStage*: it aborts
  the job. So the driver relaunches the whole stage, up to ``max_restarts``
  times, and every worker resumes from the chief's backup (when ``train_fn``
  uses :func:`~sparktf.distributed.callbacks`). Only lost or killed workers are
  retried; an exception raised by ``train_fn`` itself is a bug and fails at once.
* **Fail fast on slots.** A barrier stage that cannot get all its slots makes
  Spark retry for ~10 minutes (tensorflow/ecosystem#161). We compare free task
  slots with ``num_workers`` before launching, and give up after
  ``launch_timeout_s`` if the tasks still have not all started.
* **Logs and errors.** Worker output streams to the driver prefixed with its
  rank (:mod:`~sparktf.distributed.logs`); a failure names the first worker
  that failed and shows its own traceback.
* **The result comes home** as paths and numbers, never an arbitrary object.

``num_workers=0`` is the local mode: ``train_fn`` runs in this process, with
the same API and result type, for debugging.

The return-value rule: if ``train_fn`` returns a Keras model (or the
``History`` from ``fit``), every worker saves it (the chief into
``<run_dir>/model``) and the result carries its paths and history. Any other
value is sent back from the chief only, and must pickle to at most
``max_value_bytes`` (1 MiB by default); otherwise the run fails with a
message saying so (the model and checkpoints stay in ``run_dir``).
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparktf._environ import temporary_environ
from sparktf.distributed.gpus import gpu_amount_key
from sparktf.distributed.logs import LogServer, log_server_hosts, print_line
from sparktf.distributed.result import (
    TrainingResult,
    WorkerFailure,
    WorkerOutcome,
    WorkerTiming,
    final_metrics,
    is_restore_failure,
    primary_failure,
    should_restart,
)
from sparktf.distributed.worker import STRATEGIES
from sparktf.errors import ConfigError, LauncherError, NotEnoughSlotsError, TrainingFailedError

if TYPE_CHECKING:
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

__all__ = ["SparkRunner", "check_slots", "executor_cores", "failure_message"]

Strategy = str | Callable[[], Any]
_Call = tuple[tuple[Any, ...], dict[str, Any]]


@dataclass(frozen=True)
class _Launch:
    """The settings of one ``run()`` call, resolved and checked."""

    num_workers: int
    use_gpu: bool
    strategy: str | bytes
    max_restarts: int
    run_dir: str
    run_id: str
    backup_every_steps: int
    launch_timeout_s: float
    gpu_resource_name: str
    gpu_slots: int | None
    max_value_bytes: int
    env: tuple[tuple[str, str], ...]
    finish_timeout_s: float
    worker_threads: int = 0
    pin_cpus: bool = False


def check_slots(requested: int, total: int, busy: int, *, master: str) -> NotEnoughSlotsError | None:
    """The error to raise when ``requested`` workers do not fit in the free task slots, else ``None``.

    Args:
        requested: barrier tasks (TF workers) the run needs.
        total: task slots the cluster's executors offer at once.
        busy: slots taken by tasks running now.
        master: the Spark master URL, named in the message.
    """
    free = max(0, total - busy)
    if requested <= free:
        return None
    if requested > total:
        where = (
            f"use local[N] with N >= {requested}"
            if master.startswith("local")
            else "add executors or cores (spark.executor.instances, spark.executor.cores; each task takes spark.task.cpus cores)"
        )
        return NotEnoughSlotsError(
            f"Training asked for {requested} workers, one Spark task slot each, but the cluster on "
            f"{master} has only {total} task slots in all.",
            hint=f"Lower train.num_workers to {total} or fewer, or {where}.",
            requested=requested,
            total=total,
            free=free,
        )
    return NotEnoughSlotsError(
        f"Training asked for {requested} workers, one Spark task slot each, but only {free} of the "
        f"{total} task slots on {master} are free ({busy} busy with other jobs).",
        hint="Wait for the other jobs to finish, lower train.num_workers, or raise train.launch_timeout_s "
        "to wait longer for free slots.",
        requested=requested,
        total=total,
        free=free,
    )


def failure_message(primary: WorkerFailure, *, attempts: int, max_restarts: int, restartable: bool) -> str:
    """The text of a :class:`TrainingFailedError`: the first failing worker and its own traceback."""
    where = f"Worker {primary.rank}" + (f" (host {primary.host})" if primary.host else "")
    what = {
        "raised": f"raised {primary.error}",
        "died": f"died: {primary.error}",
        "lost": f"was lost: {primary.error}",
        "aborted": "was stopped",
        "stuck": f"got stuck: {primary.error}",
    }[primary.kind]
    if is_restore_failure(primary):
        what = f"could not restore the run's backup (recovery failed, not train_fn): {primary.error}"
    lines = [f"{where} failed first, in attempt {primary.attempt}: it {what}."]
    if primary.tail:
        label = {
            "raised": "Its own traceback",
            "stuck": "Its last output lines, ending with the Python stacks it printed when stopped",
        }.get(primary.kind, "Its last output lines")
        lines.append(f"{label}:")
        lines.extend(f"  {line}" for line in primary.tail)
    if not restartable:
        lines.append(
            "Not retried: an exception raised by train_fn itself is a bug, not a lost worker "
            "(restarts are for workers that die or disappear)."
        )
    elif attempts > max_restarts:
        lines.append(f"Gave up after {max_restarts} restarts (max_restarts={max_restarts}).")
    return "\n".join(lines)


def _hint(primary: WorkerFailure) -> str:
    text = primary.error + "\n" + "\n".join(primary.tail)
    if primary.kind == "stuck":
        return (
            "Every worker must run the same collective operations: do not create variables, save, evaluate or "
            "predict on the chief alone (use sparktf.distributed.save_model() on every worker, or do chief-only "
            "work with plain numpy values). Raise finish_timeout_s if the chief legitimately works longer."
        )
    if re.search(r"Shape mismatch in the collective|another member in the group", text):
        return (
            "The workers ran different collective operations: usually a callback or a save that runs on the "
            "chief only. Use sparktf.distributed.callbacks() and save_model() on every worker; keep "
            "@on_chief for logging."
        )
    if re.search(r"Corrupt TFRecord data|DataLossError|corrupted record", text):
        return (
            "The training data is corrupt (the file and byte offset are above): rewrite it, e.g. "
            "`sparktf run --from tfrecords`, and check what wrote it and the storage under it."
        )
    if is_restore_failure(primary):
        return (
            "The backup was written by other code or model settings, or the model was not built before fit(): "
            "resume with the settings that wrote it (the error above names the backup), or delete the backup "
            "directory to start the run over."
        )
    if primary.kind == "raised":
        return "Fix the error in train_fn; run with num_workers=0 to debug it in this process."
    return (
        "Raise max_restarts to survive more lost workers, and pass sparktf.distributed.callbacks() to fit "
        "so restarts resume from the last backup."
    )


class SparkRunner:
    """Runs a TensorFlow ``train_fn`` on Spark, one TF worker per barrier task.

    Args:
        spark: the SparkSession; defaults to the active one (or
            :func:`sparktf.get_spark`'s default).
        log_sink: receives every streamed worker line (default: stdout).

    Example:
        >>> runner = SparkRunner(spark)                                # doctest: +SKIP
        >>> result = runner.run(train_fn, num_workers=2, run_dir="/shared/run1")  # doctest: +SKIP
        >>> result.final_metrics["loss"], result.saved_model_path      # doctest: +SKIP
    """

    def __init__(
        self,
        spark: SparkSession | None = None,
        *,
        log_sink: Callable[[str], None] | None = None,
    ) -> None:
        self._spark = spark
        self.sink = log_sink or print_line

    # ------------------------------------------------------------------ API

    def run(
        self,
        train_fn: Callable[..., Any],
        *args: Any,
        num_workers: int = 2,
        use_gpu: bool = False,
        strategy: Strategy = "multi_worker_mirrored",
        max_restarts: int = 2,
        run_dir: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        backup_every_steps: int = 0,
        launch_timeout_s: float = 120.0,
        gpu_resource_name: str = "gpu",
        gpu_slots: int | None = None,
        max_value_bytes: int = 1 << 20,
        env: Mapping[str, str] | None = None,
        finish_timeout_s: float = 600.0,
        worker_threads: int = 0,
        pin_cpus: bool = False,
    ) -> TrainingResult:
        """Train, and return a small picklable :class:`TrainingResult`.

        Args:
            train_fn: called as ``train_fn(*args, **kwargs)`` on every worker; must be
                picklable by cloudpickle (its module must be importable on the
                executors, or it is defined in ``__main__``/a notebook).
            *args: positional arguments for ``train_fn`` (picklable).
            num_workers: TF workers (barrier tasks); 0 runs ``train_fn`` in this process.
            use_gpu: give each worker the GPUs Spark assigned its task
                (``spark.task.resource.gpu.amount``); otherwise ``CUDA_VISIBLE_DEVICES=""``.
            strategy: ``"multi_worker_mirrored"`` (the runner builds it and calls
                ``train_fn`` in its scope), ``"custom"`` (``train_fn`` builds its
                own), or a picklable zero-argument factory returning a strategy.
            max_restarts: relaunches after a worker is lost or killed.
            run_dir: the persistent run directory, reachable by every worker
                (a shared mount, ``hdfs://``, ``gs://``); a temporary local
                directory by default, which on a multi-host cluster keeps the
                model only on the chief's host. A directory that still holds the
                backup of a run that did not finish resumes that run (this is how
                to continue a crashed run); the backup is removed when a run
                succeeds, so use a fresh directory for each fresh run.
            kwargs: keyword arguments for ``train_fn``.
            backup_every_steps: default backup frequency of
                :func:`~sparktf.distributed.callbacks` (0: every epoch).
            launch_timeout_s: how long to wait for free slots and for all tasks to start.
            gpu_resource_name: Spark's name of the GPU resource.
            gpu_slots: total GPUs to use, spread over the workers (default: all
                the GPUs each task was given).
            max_value_bytes: the largest pickled return value sent home.
            env: extra environment variables for the TF worker processes.
            finish_timeout_s: once one worker's ``train_fn`` has returned, how long
                the others may take to return too. Under MultiWorkerMirroredStrategy
                workers finish together; one still running long after is blocked in a
                collective only it runs (a chief-only save, variables created on the
                chief alone), which would otherwise hang forever. It is stopped and
                reported with its Python stacks. Raise it for long chief-only work
                after training (exports, uploads).
            worker_threads: TensorFlow's intra-op threads in each worker; 0 sizes them
                to the worker's share of its executor's cores (:func:`~sparktf.distributed.task.thread_env`).
                ``TF_NUM_INTRAOP_THREADS``/``TF_NUM_INTEROP_THREADS`` in ``env`` or in the
                executors' environment win over both.
            pin_cpus: pin each worker to its own CPUs among its executor's
                (:func:`~sparktf.distributed.task.pinned_cpus`; Linux), as many as its
                intra-op threads, so workers sharing a machine do not share cores.

        Raises:
            ConfigError: a setting is out of range.
            NotEnoughSlotsError: the cluster cannot run ``num_workers`` tasks at once.
            TrainingFailedError: a worker failed (and restarts were used up or
                did not apply); names the first failing worker, with its traceback.
            LauncherError: GPU resources are missing or misconfigured, or the
                return value cannot travel.
        """
        started = time.time()
        launch = self._resolve(
            train_fn,
            num_workers=num_workers,
            use_gpu=use_gpu,
            strategy=strategy,
            max_restarts=max_restarts,
            run_dir=run_dir,
            backup_every_steps=backup_every_steps,
            launch_timeout_s=launch_timeout_s,
            gpu_resource_name=gpu_resource_name,
            gpu_slots=gpu_slots,
            max_value_bytes=max_value_bytes,
            env=env,
            finish_timeout_s=finish_timeout_s,
            worker_threads=worker_threads,
            pin_cpus=pin_cpus,
        )
        call = (tuple(args), dict(kwargs or {}))
        if launch.num_workers == 0:
            return self._run_local(train_fn, call, launch, started)
        return self._run_spark(train_fn, call, launch, started)

    # ------------------------------------------------------------------ settings

    def _resolve(self, train_fn: Callable[..., Any], **given: Any) -> _Launch:
        num_workers = int(given["num_workers"])
        max_restarts = int(given["max_restarts"])
        every = int(given["backup_every_steps"])
        timeout = float(given["launch_timeout_s"])
        checks = [
            ("num_workers", num_workers, num_workers >= 0, "0 (in this process) or more"),
            ("max_restarts", max_restarts, max_restarts >= 0, "0 or more"),
            ("backup_every_steps", every, every >= 0, "0 (every epoch) or a positive step count"),
            ("launch_timeout_s", timeout, timeout > 0, "a positive number of seconds"),
            ("max_value_bytes", given["max_value_bytes"], given["max_value_bytes"] > 0, "a positive size"),
            ("worker_threads", given["worker_threads"], given["worker_threads"] >= 0, "0 (the task's share) or more"),
            (
                "finish_timeout_s",
                given["finish_timeout_s"],
                given["finish_timeout_s"] > 0,
                "a positive number of seconds",
            ),
        ]
        if given["gpu_slots"] is not None:
            checks.append(("gpu_slots", given["gpu_slots"], given["gpu_slots"] >= 1, "1 or more"))
        for name, value, ok, allowed in checks:
            if not ok:
                raise ConfigError(f"SparkRunner.run: {name} = {value!r} is not allowed; expected {allowed}.")
        if not callable(train_fn):
            raise ConfigError(f"SparkRunner.run: train_fn = {train_fn!r} is not callable; pass a function.")
        strategy = given["strategy"]
        if isinstance(strategy, str):
            if strategy not in STRATEGIES:
                raise ConfigError(
                    f"SparkRunner.run: strategy = {strategy!r} is not allowed; expected one of "
                    + ", ".join(repr(s) for s in STRATEGIES)
                    + " or a zero-argument function that returns a tf.distribute.Strategy."
                )
            packed: str | bytes = strategy
        elif callable(strategy):
            packed = _cloudpickle(strategy, "strategy")
        else:
            raise ConfigError(f"SparkRunner.run: strategy = {strategy!r} is neither a name nor a function.")
        run_id = uuid.uuid4().hex[:12]
        run_dir = given["run_dir"] or tempfile.mkdtemp(prefix=f"sparktf-run-{run_id}-")
        return _Launch(
            num_workers=num_workers,
            use_gpu=bool(given["use_gpu"]),
            strategy=packed,
            max_restarts=max_restarts,
            run_dir=str(run_dir),
            run_id=run_id,
            backup_every_steps=every,
            launch_timeout_s=timeout,
            gpu_resource_name=given["gpu_resource_name"],
            gpu_slots=given["gpu_slots"],
            max_value_bytes=int(given["max_value_bytes"]),
            env=tuple(sorted((str(k), str(v)) for k, v in (given["env"] or {}).items())),
            finish_timeout_s=float(given["finish_timeout_s"]),
            worker_threads=int(given["worker_threads"]),
            pin_cpus=bool(given["pin_cpus"]),
        )

    def _session(self) -> SparkSession:
        if self._spark is not None:
            return self._spark
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        from sparktf.spark import get_spark

        return get_spark()

    def _say(self, text: str) -> None:
        self.sink(f"[sparktf] {text}")

    # ------------------------------------------------------------------ local mode

    def _run_local(self, train_fn: Callable[..., Any], call: _Call, launch: _Launch, started: float) -> TrainingResult:
        from sparktf.distributed.ranks import (
            ENV_ATTEMPT,
            ENV_BACKUP_EVERY_STEPS,
            ENV_RUN_DIR,
            ENV_RUN_ID,
            ENV_SCRATCH_DIR,
            RunContext,
        )
        from sparktf.distributed.worker import WorkerSpec, execute, finish_run

        self._say(f"local mode: running train_fn in this process; run_dir {launch.run_dir}")
        spec = WorkerSpec(launch.strategy, launch.max_value_bytes, outcome_path="")
        with tempfile.TemporaryDirectory(prefix="sparktf-local-") as scratch:
            # GPU visibility of this process is fixed once TensorFlow has started, so it is left alone here.
            wanted = {
                **dict(launch.env),
                ENV_RUN_DIR: launch.run_dir,
                ENV_RUN_ID: launch.run_id,
                ENV_ATTEMPT: "1",
                ENV_SCRATCH_DIR: scratch,
                ENV_BACKUP_EVERY_STEPS: str(launch.backup_every_steps),
            }
            with temporary_environ(wanted, remove=("TF_CONFIG",)):
                process_started = time.time()
                try:
                    outcome = execute(train_fn, *call, spec)
                except LauncherError:
                    raise
                except Exception as exc:
                    raise TrainingFailedError(
                        f"train_fn raised {type(exc).__name__}: {exc} (local mode, in this process; "
                        "the traceback above is its own).",
                        hint="Fix the error in train_fn.",
                        rank=0,
                        host="local",
                    ) from exc
                finish_run(RunContext(launch.run_dir, launch.run_id, 1, 0, 1, scratch, launch.backup_every_steps), spec)
        timing = WorkerTiming(
            0, "local", process_started, process_started, outcome.train_started, outcome.train_finished, time.time()
        )
        return _result(launch, [outcome], [timing], attempts=1, failures=(), started=started, num_workers=0)

    # ------------------------------------------------------------------ Spark mode

    def _run_spark(self, train_fn: Callable[..., Any], call: _Call, launch: _Launch, started: float) -> TrainingResult:
        sc = self._session().sparkContext
        payload = _cloudpickle((train_fn, *call), "train_fn and its arguments")
        if launch.use_gpu and not sc.getConf().contains(gpu_amount_key(launch.gpu_resource_name)):
            raise LauncherError(
                f"use_gpu=True but the Spark conf {gpu_amount_key(launch.gpu_resource_name)} is not set, "
                "so Spark gives the training tasks no GPUs.",
                hint=f"Start Spark with {gpu_amount_key(launch.gpu_resource_name)}=1 (and the executor GPU "
                "discovery script), or train with use_gpu=False.",
            )
        _wait_for_slots(sc, launch.num_workers, launch.launch_timeout_s)
        conf = sc.getConf()
        # Loopback on a local master; the driver's own addresses otherwise, never every interface.
        advertise, bind = log_server_hosts(
            conf.get("spark.master") or "", conf.get("spark.driver.host"), conf.get("spark.driver.bindAddress")
        )
        server = LogServer(advertise_host=advertise, bind_host=bind, sink=self.sink)
        failures: list[str] = []
        try:
            for attempt in range(1, launch.max_restarts + 2):
                finished, primary = self._attempt(sc, server, launch, payload, attempt)
                if finished is not None:
                    outcomes, timings = finished
                    return _result(
                        launch,
                        outcomes,
                        timings,
                        attempts=attempt,
                        failures=tuple(failures),
                        started=started,
                        num_workers=launch.num_workers,
                    )
                assert primary is not None
                failures.append(primary.summary())
                restartable = should_restart(primary)
                if not restartable or attempt > launch.max_restarts:
                    raise TrainingFailedError(
                        failure_message(
                            primary, attempts=attempt, max_restarts=launch.max_restarts, restartable=restartable
                        ),
                        hint=_hint(primary),
                        rank=primary.rank,
                        host=primary.host,
                        attempt=primary.attempt,
                        kind=primary.kind,
                        failures=tuple(failures),
                        run_dir=launch.run_dir,
                    )
                self._say(
                    f"{primary.summary()}; relaunching all {launch.num_workers} workers "
                    f"(restart {attempt} of {launch.max_restarts}), resuming from the last backup in {launch.run_dir}"
                )
        finally:
            server.close()
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _attempt(
        self, sc: SparkContext, server: LogServer, launch: _Launch, payload: bytes, attempt: int
    ) -> tuple[tuple[list[WorkerOutcome], list[WorkerTiming]] | None, WorkerFailure | None]:
        """One launch of the barrier stage: the workers' outcomes, or the failure to report."""
        from sparktf.distributed.task import TaskPlan, decode_failures, run_barrier_task

        plan = TaskPlan(
            num_workers=launch.num_workers,
            attempt=attempt,
            run_id=launch.run_id,
            run_dir=launch.run_dir,
            payload=payload,
            strategy=launch.strategy,
            max_value_bytes=launch.max_value_bytes,
            backup_every_steps=launch.backup_every_steps,
            use_gpu=launch.use_gpu,
            gpu_resource_name=launch.gpu_resource_name,
            gpu_slots=launch.gpu_slots,
            log_address=server.address,
            log_token=server.token,
            env=launch.env,
            worker_threads=launch.worker_threads,
            pin_cpus=launch.pin_cpus,
            executor_cores=executor_cores(sc.master or "", sc.getConf().get("spark.executor.cores")),
        )
        n = launch.num_workers
        group = f"sparktf-{launch.run_id}-{attempt}"
        box: dict[str, Any] = {}

        def job() -> None:
            sc.setJobGroup(group, f"sparktf training {launch.run_id}, attempt {attempt}", interruptOnCancel=True)
            try:
                rdd = sc.parallelize(range(n), n).barrier().mapPartitions(lambda rows: run_barrier_task(plan, rows))
                box["rows"] = rdd.collect()
            except BaseException as exc:  # noqa: BLE001 - handed to the driver thread below
                box["error"] = exc

        self._say(f"attempt {attempt}: launching {n} TF workers (run {launch.run_id}, run_dir {launch.run_dir})")
        thread = threading.Thread(target=job, name=f"sparktf-{group}", daemon=True)
        thread.start()
        try:
            self._watch(sc, server, launch, attempt, group, thread)
        except BaseException:
            # Interrupted (Ctrl-C in a notebook) or gave up: leave no TF worker running behind us.
            server.abort(attempt)
            sc.cancelJobGroup(group)
            thread.join(60)
            raise
        rows = [_unpickle_row(r) for r in box.get("rows", ())]
        row_failures = [f for _, _, f in rows if f is not None]
        if rows and not row_failures:
            return ([o for o, _, _ in rows if o is not None], [t for _, t, _ in rows if t is not None]), None
        error = box.get("error")
        if error is not None:
            # Spark aborted the stage: let the other workers' reports arrive before choosing.
            server.wait(lambda: False, 1.0)
        server.abort(attempt)
        if not server.wait_closed(attempt, 60.0):
            self._say("some workers of the failed attempt did not hang up within 60 s; relaunching anyway")
        text = str(error) if error is not None else ""
        reported = server.failures(attempt) + row_failures + decode_failures(text)
        primary = primary_failure(reported) or _lost_worker(text, attempt, server.attempt(attempt).hosts)
        return None, primary

    def _watch(
        self, sc: SparkContext, server: LogServer, launch: _Launch, attempt: int, group: str, thread: threading.Thread
    ) -> None:
        """Follow a running attempt until its job ends: slots, first failure, stuck workers."""
        n = launch.num_workers
        deadline = time.monotonic() + launch.launch_timeout_s
        launched = aborted = dumped = False
        while thread.is_alive():
            thread.join(0.2)
            if not launched:
                launched = server.started(attempt) >= n or _running_tasks(sc, group) >= n
                if not launched and time.monotonic() > deadline:
                    raise NotEnoughSlotsError(
                        f"Only {server.started(attempt)} of {n} training tasks started within "
                        f"launch_timeout_s={launch.launch_timeout_s:g}s; Spark is still waiting for free task slots "
                        "for the barrier stage.",
                        hint="Free the cluster, lower num_workers, or raise train.launch_timeout_s.",
                        requested=n,
                        started=server.started(attempt),
                    )
            if not aborted and server.failures(attempt):
                # Stop the survivors now instead of leaving them blocked in a collective until Spark kills them.
                server.abort(attempt)
                aborted = True
            done = server.done(attempt)
            if done and not dumped and time.time() - min(done.values()) > launch.finish_timeout_s:
                for rank in sorted(set(range(n)) - set(done)):
                    server.dump(attempt, rank)
                dumped = True


# --------------------------------------------------------------------------- helpers


def _cloudpickle(obj: Any, what: str) -> bytes:
    from pyspark import cloudpickle

    try:
        data: bytes = cloudpickle.dumps(obj)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same to the user
        raise LauncherError(
            f"The {what} cannot be pickled for the Spark tasks: {type(exc).__name__}: {exc}.",
            hint="Define train_fn at module level or in the notebook/__main__, and capture only picklable "
            "values (paths and numbers, not SparkSessions, open files or TF objects).",
        ) from None
    return data


def _unpickle_row(row: bytes) -> tuple[WorkerOutcome | None, WorkerTiming | None, WorkerFailure | None]:
    import pickle

    outcome, timing, failure = pickle.loads(row)  # noqa: S301 - produced by our own barrier tasks
    return outcome, timing, failure


def _lost_worker(spark_error: str, attempt: int, hosts: Mapping[int, str]) -> WorkerFailure:
    """A failure Spark saw but no worker reported: its task or executor vanished."""
    m = re.search(r"ResultTask\(\d+, (\d+)\)", spark_error) or re.search(r"partition (\d+)", spark_error)
    rank = int(m.group(1)) if m else -1
    first = next((ln.strip() for ln in spark_error.splitlines() if "Exception" in ln or "Error" in ln), "")
    reason = re.sub(r"^.*?(SparkException|Exception):\s*", "", first)[:500] or "its Spark task ended abnormally"
    return WorkerFailure(rank, hosts.get(rank, ""), attempt, "lost", reason, (), None, None, time.time())


def _running_tasks(sc: SparkContext, group: str) -> int:
    tracker = sc.statusTracker()
    running = 0
    for job_id in tracker.getJobIdsForGroup(group):
        job = tracker.getJobInfo(job_id)
        for stage_id in job.stageIds if job else ():
            stage = tracker.getStageInfo(stage_id)
            running += stage.numActiveTasks if stage else 0
    return running


def executor_cores(master: str, configured: str | None) -> int | None:
    """The cores of one executor, where the driver can know them: ``N`` of ``local[N]``
    (``local[*]``: this machine's), ``C`` of ``local-cluster[E,C,M]``, else
    ``spark.executor.cores`` when it is set; None when the cluster decides (a standalone
    executor takes all of its worker's cores)."""
    local = re.fullmatch(r"local(?:\[(\d+|\*)(?:,\d+)?\])?", master)
    if local:
        n = local.group(1)
        return (os.cpu_count() or 1) if n == "*" else int(n or 1)
    cluster = re.fullmatch(r"local-cluster\[\s*\d+\s*,\s*(\d+)\s*,\s*\d+\s*\]", master)
    if cluster:
        return int(cluster.group(1))
    return int(configured) if configured and configured.strip().isdigit() else None


def _slots(sc: SparkContext) -> tuple[int, int]:
    """(total task slots of live executors, slots busy with running tasks)."""
    jsc: Any = sc._jsc.sc()
    try:
        # What Spark's own barrier check uses (DAGScheduler.checkBarrierStageWithNumSlots).
        total = int(jsc.maxNumConcurrentTasks(jsc.resourceProfileManager().defaultResourceProfile()))
    except Exception:  # noqa: BLE001 - a private API; fall back to the public estimate
        total = int(sc.defaultParallelism)
    tracker = sc.statusTracker()
    busy = 0
    for stage_id in tracker.getActiveStageIds():
        stage = tracker.getStageInfo(stage_id)
        busy += stage.numActiveTasks if stage else 0
    return total, busy


def _wait_for_slots(sc: SparkContext, requested: int, timeout_s: float) -> None:
    """Return once ``requested`` slots are free; raise at once on ``local[N]``, else after ``timeout_s``."""
    master = sc.master or "the Spark master"
    deadline = time.monotonic() + timeout_s
    while True:
        total, busy = _slots(sc)
        error = check_slots(requested, total, busy, master=master)
        # Executors of a cluster register after the session starts; a local master never grows.
        if error is None or master.startswith("local") or time.monotonic() > deadline:
            if error is not None:
                raise error
            return
        time.sleep(0.5)


def _result(
    launch: _Launch,
    outcomes: list[WorkerOutcome],
    timings: list[WorkerTiming],
    *,
    attempts: int,
    failures: tuple[str, ...],
    started: float,
    num_workers: int,
) -> TrainingResult:
    chief = min(outcomes, key=lambda o: o.rank)
    value = None
    if chief.value is not None:
        import pickle

        try:
            value = pickle.loads(chief.value)  # noqa: S301 - cloudpickled by our own chief worker
        except Exception as exc:  # noqa: BLE001 - name the type the driver cannot rebuild
            raise LauncherError(
                f"The chief's return value (a {chief.value_type}) cannot be unpickled on the driver: "
                f"{type(exc).__name__}: {exc}.",
                hint="Return plain Python values (numbers, strings, lists, dicts), or install on the driver "
                "the modules that define the returned type.",
                run_dir=launch.run_dir,
            ) from None
    return TrainingResult(
        run_id=launch.run_id,
        run_dir=launch.run_dir,
        num_workers=num_workers,
        saved_model_path=chief.saved_model_path,
        weights_path=chief.weights_path,
        history=chief.history,
        final_metrics=final_metrics(chief.history),
        value=value,
        attempts=attempts,
        failures=failures,
        workers=tuple(sorted(timings, key=lambda t: t.rank)),
        started_at=started,
        finished_at=time.time(),
    )
