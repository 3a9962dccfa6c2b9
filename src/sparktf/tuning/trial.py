"""One trial: a single Spark task that trains one model in a fresh process.

A trial is one training process, so it needs one task slot and no gang scheduling: the
driver submits it as a one-partition job (not a barrier stage; the distributed launcher
stays for single large runs on several workers), and Spark runs as many trials at once
as the driver submits and the cluster has slots.

:func:`spark_task` runs in the executor's Python worker. It does not train there: PySpark
reuses its Python workers from one task to the next, so TensorFlow loaded in one would
carry its graphs, memory and thread pools into the next trial, and a TensorFlow crash
would take the worker down. It starts ``python -m sparktf.tuning`` instead (a fresh
process per trial, as the launcher does for its workers), waits for it, and returns a
small JSON-able result. That process runs :func:`~sparktf.training.train_fn.train_worker`
(one worker: no MultiWorkerMirroredStrategy) with :func:`pruning_callback`, which after
every epoch reports validation NDCG@10 to the Optuna study in the shared storage, asks
the median pruner whether to go on, and stops training when pruned or when the study's
time is up. Its output goes to ``<trial dir>/train.log``, not to the terminal.

The process dies with its task (``PR_SET_PDEATHSIG``): a cancelled trial leaves no
training behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sparktf.distributed.ranks import ENV_ATTEMPT, ENV_BACKUP_EVERY_STEPS, ENV_RUN_DIR, ENV_RUN_ID, ENV_SCRATCH_DIR
from sparktf.distributed.tf_config import TF_CONFIG_ENV
from sparktf.errors import ModelError
from sparktf.tfenv import LEGACY_KERAS_ENV
from sparktf.tuning.pruning import PrunerArgs

__all__ = ["TrialTask", "main", "pruning_callback", "run_trial_task", "spark_task", "trial_env"]

#: The validation metric every model's Keras ``test_step`` reports: full-catalogue NDCG@10.
METRIC = "val_ndcg_at_10"

#: Exit code of a trial process whose Spark task went away.
EXIT_ORPHANED = 75


@dataclass(frozen=True)
class TrialTask:
    """What one trial's Spark task gets from the driver (small and picklable).

    Attributes:
        number, trial_id: the Optuna trial's number (shown) and storage id (to report to).
        study_name, storage_url, pruner: where the study is and how it prunes.
        spec: the :class:`~sparktf.training.train_fn.TrainSpec` of this trial.
        trial_dir: where the trial's log goes (``train.log``).
        stop_at: Unix time at which training stops after its current epoch (the study's
            time budget); 0 for none.
        threads: TensorFlow's intra- and inter-op threads; 0 leaves TensorFlow's default.
        hide_gpus: run on the CPU (``CUDA_VISIBLE_DEVICES=""``).
        metric: the Keras log key reported and maximised.
    """

    number: int
    trial_id: int
    study_name: str
    storage_url: str
    pruner: PrunerArgs
    spec: Any
    trial_dir: str
    stop_at: float = 0.0
    threads: int = 0
    hide_gpus: bool = True
    metric: str = METRIC
    log_tail_lines: int = 40


# --------------------------------------------------------------------------- the Spark task


def spark_task(rows: Iterable[TrialTask]) -> Iterator[dict[str, Any]]:
    """The body of a trial's one-partition Spark job (``mapPartitions``)."""
    for task in rows:
        yield run_trial_task(task)


def trial_env(base: Mapping[str, str], task: TrialTask, scratch: str) -> dict[str, str]:
    """The trial process's environment: the executor's, with tf-keras, the thread and GPU
    settings, and a run context of its own (never a launcher's ``TF_CONFIG``)."""
    env = dict(base)
    env.pop(TF_CONFIG_ENV, None)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(
        {
            LEGACY_KERAS_ENV: "1",
            "PYTHONUNBUFFERED": "1",
            # The platform callbacks' run context: one worker, backups every epoch, and
            # their scratch files in a directory the task removes afterwards.
            ENV_RUN_DIR: task.spec.run_dir,
            ENV_RUN_ID: f"trial-{task.number}",
            ENV_ATTEMPT: "1",
            ENV_SCRATCH_DIR: scratch,
            ENV_BACKUP_EVERY_STEPS: "0",
            "TMPDIR": scratch,
        }
    )
    if task.hide_gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
    if task.threads > 0:
        env["OMP_NUM_THREADS"] = str(task.threads)
    return env


def run_trial_task(task: TrialTask) -> dict[str, Any]:
    """Train the trial in a fresh process and return its result (never raises for a failed
    trial: the result says ``"state": "failed"`` and why)."""
    t0 = time.time()
    os.makedirs(task.trial_dir, exist_ok=True)
    os.makedirs(task.spec.run_dir, exist_ok=True)
    log_path = os.path.join(task.trial_dir, "train.log")
    scratch = tempfile.mkdtemp(prefix=f"sparktf-trial-{task.number}-")
    task_path = os.path.join(scratch, "task.pkl")
    result_path = os.path.join(scratch, "result.json")
    returncode: int | None = None
    try:
        with open(task_path, "wb") as fh:
            pickle.dump(task, fh)
        cmd = [sys.executable, "-m", "sparktf.tuning", task_path, result_path, str(os.getpid())]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=trial_env(os.environ, task, scratch),
                cwd=task.trial_dir,
            )
            returncode = proc.wait()
        result = _read_result(result_path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        # Trials are not resumed or exported: their per-epoch weights would only fill the disk.
        shutil.rmtree(os.path.join(task.spec.run_dir, "checkpoints"), ignore_errors=True)
    if result is None:
        how = (
            f"was killed by {_signal_name(-returncode)}"
            if returncode and returncode < 0
            else f"exited with code {returncode}"
        )
        result = {
            "state": "failed",
            "error": f"the training process {how} without a result (out of memory, or its task was cancelled?)",
        }
    if result.get("state") == "failed":
        result["log_tail"] = _tail(log_path, task.log_tail_lines)
    result.update(
        task_pid=os.getpid(),
        host=socket.gethostname(),
        seconds=time.time() - t0,
        log_path=log_path,
        returncode=returncode,
    )
    return result


def _read_result(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _tail(path: str, lines: int) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return [line.rstrip("\n") for line in deque(fh, maxlen=lines)]
    except OSError:
        return []


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# --------------------------------------------------------------------------- the trial process


def pruning_callback(task: TrialTask) -> Any:
    """A Keras callback that reports ``task.metric`` after every epoch to the study and stops
    training when the pruner says so, or when ``task.stop_at`` has passed.

    After ``fit``, ``pruned_at`` is the epoch (0-based) it pruned at, or ``None``, and
    ``budget_cut`` whether the study's time stopped it.
    """
    import optuna

    from sparktf.tfenv import import_tensorflow
    from sparktf.tuning.pruning import make_pruner, make_storage, quiet_optuna

    quiet_optuna()
    base = import_tensorflow().keras.callbacks.Callback
    study = optuna.load_study(
        study_name=task.study_name,
        storage=make_storage(task.storage_url),
        pruner=make_pruner(task.pruner),
        # Not used to sample (the driver does): the cheapest one to build.
        sampler=optuna.samplers.RandomSampler(),
    )
    # The driver's trial, by its storage id: Optuna's way to report from another process.
    trial = optuna.trial.Trial(study, task.trial_id)

    class _Pruning(base):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            super().__init__()
            self.pruned_at: int | None = None
            self.budget_cut = False

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            logs = logs or {}
            if task.metric not in logs:
                raise ModelError(
                    f"The {task.spec.params.kind} model's Keras logs have no {task.metric!r} after epoch "
                    f"{epoch + 1} (they have: {', '.join(sorted(logs)) or 'nothing'}).",
                    hint="Every model's test_step must report ndcg_at_10 (see sparktf.models); "
                    "tune a model kind that does.",
                )
            value = float(logs[task.metric])
            trial.report(value, epoch)
            if trial.should_prune():
                self.pruned_at = epoch
                self.model.stop_training = True
            elif task.stop_at and time.time() >= task.stop_at:
                self.budget_cut = True
                self.model.stop_training = True

    return _Pruning()


def train_trial(task: TrialTask) -> dict[str, Any]:
    """Train one trial in this process; the JSON-able result."""
    from sparktf.tfenv import import_tensorflow
    from sparktf.training.train_fn import train_worker

    tf = import_tensorflow()
    if task.threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(task.threads)
        tf.config.threading.set_inter_op_parallelism_threads(task.threads)
    callback = pruning_callback(task)
    t0 = time.perf_counter()
    summary = train_worker(task.spec, callbacks=[callback])
    history = {k: [float(x) for x in v] for k, v in summary.get("history", {}).items()}
    curve = history.get(task.metric, [])
    finite = [v for v in curve if math.isfinite(v)]
    result: dict[str, Any] = {
        "history": history,
        "epochs_run": int(summary.get("epochs_run") or 0),
        "train_seconds": time.perf_counter() - t0,
        "pruned_at": callback.pruned_at,
        "budget_cut": callback.budget_cut,
        "pid": os.getpid(),
    }
    if not finite:
        return {
            **result,
            "state": "failed",
            "error": f"{task.metric} was never a finite number ({curve}): the training diverged",
        }
    state = "pruned" if callback.pruned_at is not None else "complete"
    return {**result, "state": state, "value": max(finite)}


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    if os.getppid() != parent_pid:  # the task ended before prctl took effect
        os._exit(EXIT_ORPHANED)


def main(argv: list[str]) -> None:
    """``python -m sparktf.tuning TASK RESULT PARENT_PID``: train one trial, write its result."""
    task_path, result_path, parent_pid = argv[0], argv[1], int(argv[2])
    _die_with_parent(parent_pid)
    with open(task_path, "rb") as fh:
        task: TrialTask = pickle.load(fh)  # noqa: S301 - written by our own Spark task a moment ago
    try:
        result = train_trial(task)
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the driver as a result
        message = getattr(exc, "message", None) or str(exc)
        result = {
            "state": "failed",
            "error": f"{type(exc).__name__}: {message}",
            "hint": getattr(exc, "hint", None) or "",
            "traceback": traceback.format_exc(),
            "pid": os.getpid(),
        }
    tmp = result_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    os.replace(tmp, result_path)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    # os._exit: TensorFlow's threads can hang a normal interpreter shutdown.
    os._exit(0)
