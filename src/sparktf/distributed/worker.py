"""One TensorFlow worker: runs ``train_fn`` and reports a :class:`WorkerOutcome`.

Each Spark barrier task starts this module as a fresh child process
(``python -m sparktf.distributed SPEC CONTROL_FD PARENT_PID``), as
TorchDistributor starts ``torchrun``. A fresh process because PySpark reuses
its Python workers: TensorFlow's eager context, collective ops and gRPC server
from a previous run cannot be torn down in-process, and a second
MultiWorkerMirroredStrategy there fails or joins the wrong cluster. It also
makes "a worker died" concrete: the task sees its child's exit status.

Protocol with the task (``sparktf.distributed.task``):

1. the spec file holds a :class:`WorkerSpec` and the cloudpickled ``(train_fn, args, kwargs)``;
2. stdout and stderr are one pipe that the task streams to the driver;
3. when done, the worker writes its outcome file and ``done`` on the control fd,
   then waits: the task releases it (closes stdin) only after every worker is
   done, so no worker exits while a peer may still need it for a collective;
4. if the task goes away, stdin reaches EOF (and, on Linux, the kernel sends
   SIGKILL through ``PR_SET_PDEATHSIG``): the worker exits at once.

The same :func:`execute` runs ``train_fn`` in the driver process for the local mode.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sparktf.distributed.checkpoints import forget_restore, history_path, remove_backup, restore_failure, save_model
from sparktf.distributed.ranks import ENV_CPU_AFFINITY, RunContext, run_context
from sparktf.distributed.result import WorkerOutcome, final_metrics, merge_epoch_logs, summarize_error
from sparktf.errors import LauncherError

__all__ = ["EXIT_ORPHANED", "STRATEGIES", "WorkerSpec", "execute", "main", "pack_value"]

STRATEGIES = ("multi_worker_mirrored", "custom")
EXIT_ORPHANED = 75


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs besides ``train_fn`` (its environment carries the rest)."""

    strategy: str | bytes
    max_value_bytes: int
    outcome_path: str
    cleanup_backup: bool = True


def pack_value(value: Any, max_bytes: int) -> bytes:
    """Cloudpickle the chief's return value, refusing what cannot or should not travel.

    Raises:
        LauncherError: the value does not pickle, or is larger than ``max_bytes``.
    """
    from pyspark import cloudpickle

    kind = type(value).__name__
    try:
        data: bytes = cloudpickle.dumps(value)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same to the user
        raise LauncherError(
            f"train_fn returned a {kind} that cannot be pickled ({type(exc).__name__}: {exc}).",
            hint="Return the Keras model (the launcher saves it), its History, or a small dict of numbers/strings.",
            value_type=kind,
        ) from None
    if len(data) > max_bytes:
        raise LauncherError(
            f"train_fn returned a {kind} of {len(data):,} bytes pickled, over the limit of {max_bytes:,} bytes "
            "for a value sent back to the driver.",
            hint="Write large outputs under run_dir and return their paths, or return the Keras model "
            "(the launcher saves it); max_value_bytes raises the limit.",
            value_type=kind,
            size=len(data),
        )
    return data


def _strategy(strategy: str | bytes) -> Any:
    if isinstance(strategy, bytes):
        factory: Callable[[], Any] = pickle.loads(strategy)  # noqa: S301 - our own driver pickled it
        return factory()
    if strategy == "multi_worker_mirrored":
        from sparktf.tfenv import import_tensorflow

        return import_tensorflow().distribute.MultiWorkerMirroredStrategy()
    return None


def _model_and_history(value: Any) -> tuple[Any, Any]:
    if "tensorflow" not in sys.modules:
        # train_fn never loaded TensorFlow, so it cannot have returned a model.
        return None, None
    from sparktf.tfenv import import_tensorflow

    tf = import_tensorflow()
    if isinstance(value, tf.keras.Model):
        return value, getattr(value, "history", None)
    if isinstance(value, tf.keras.callbacks.History):
        return value.model, value
    return None, None


def _history(ctx: RunContext, history_obj: Any) -> dict[str, list[float]]:
    """All attempts' epoch logs when the platform callbacks wrote them, else Keras's own History."""
    import json

    attempts = []
    if "tensorflow" in sys.modules:  # only a TF job can have written them, through TF's file systems
        from sparktf.tfenv import import_tensorflow

        gfile = import_tensorflow().io.gfile
        for attempt in range(1, ctx.attempt + 1):
            path = history_path(ctx.run_dir, ctx.run_id, attempt)
            if gfile.exists(path):
                with gfile.GFile(path) as f:
                    attempts.append(json.loads(f.read()))
    if attempts:
        return merge_epoch_logs(attempts)
    raw = getattr(history_obj, "history", None) or {}
    return {str(k): [float(x) for x in v] for k, v in raw.items()}


def execute(
    train_fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], spec: WorkerSpec
) -> WorkerOutcome:
    """Run ``train_fn(*args, **kwargs)`` under the chosen strategy and save what it returned.

    Runs on every worker. A returned Keras model (or ``History``) is saved with
    :func:`~sparktf.distributed.save_model` on every worker, the chief's copy in
    the run directory. TensorFlow is imported only for the default strategy or
    when ``train_fn`` loaded it. Exceptions propagate; the caller reports them. One
    that escapes while the platform's callback is restoring a backup (before the
    first training step after it) propagates as the
    :class:`~sparktf.distributed.checkpoints.BackupRestoreError` it really is.
    """
    ctx = run_context()
    if ctx is None:
        raise LauncherError("execute() runs only under the launcher, which sets the run context.")
    strategy = _strategy(spec.strategy)
    started = time.time()
    forget_restore()  # the local mode runs train_fn in a process that may have failed a restore before
    try:
        if strategy is None:
            value = train_fn(*args, **kwargs)
        else:
            with strategy.scope():
                value = train_fn(*args, **kwargs)
    except Exception as exc:
        # A failure while a backup is being restored is the restore's, whatever TF called it.
        restore = restore_failure(exc)
        if restore is not None:
            raise restore from exc
        raise
    finished = time.time()
    model, history_obj = _model_and_history(value)
    saved = weights = None
    if model is not None:
        saved, weights = save_model(model, ctx.run_dir)
    if not ctx.is_chief:
        return WorkerOutcome(rank=ctx.rank, ok=True, train_started=started, train_finished=finished)
    history = _history(ctx, history_obj)
    packed = None if model is not None else pack_value(value, spec.max_value_bytes)
    return WorkerOutcome(
        rank=ctx.rank,
        ok=True,
        train_started=started,
        train_finished=finished,
        value=packed,
        value_type=type(value).__name__,
        history=history,
        saved_model_path=saved,
        weights_path=weights,
    )


def finish_run(ctx: RunContext, spec: WorkerSpec) -> None:
    """After every worker has succeeded: the chief drops the backup so a new run starts fresh."""
    # Without TensorFlow loaded, train_fn wrote no Keras backup.
    if ctx.is_chief and spec.cleanup_backup and "tensorflow" in sys.modules:
        remove_backup(ctx.run_dir)


# --------------------------------------------------------------------------- child process


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    # The parent may have died before prctl took effect.
    if os.getppid() != parent_pid:
        os._exit(EXIT_ORPHANED)


def _exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    # os._exit: TF's gRPC threads can hang a normal interpreter shutdown.
    os._exit(code)


def _watch_stdin(done: threading.Event, on_release: Callable[[], None]) -> None:
    """EOF on stdin: released by the task (after ``done``) or orphaned (before)."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    if done.is_set():
        on_release()
        _exit(0)
    print("sparktf: the Spark task that started this worker is gone; stopping.", file=sys.stderr)
    _exit(EXIT_ORPHANED)


def _short_traceback(exc: BaseException, error: str, frames: int = 12) -> str:
    """The innermost frames and a one-line error: what the driver's error message shows."""
    stack = traceback.extract_tb(exc.__traceback__)[-frames:]
    return "Traceback (most recent call last):\n" + "".join(traceback.format_list(stack)) + error + "\n"


def _pin_cpus(cpus: str) -> None:
    """Pin this process (before TensorFlow starts its threads, which inherit it) to the
    CPUs the launcher chose (``pin_cpus``); where the OS refuses, say so and run unpinned."""
    if not cpus:
        return
    try:
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    except (AttributeError, OSError, ValueError) as exc:
        print(f"sparktf: could not pin this worker to CPUs {cpus}: {exc}; running unpinned", file=sys.stderr)


def main(argv: list[str]) -> None:
    import faulthandler

    spec_path, control_fd, parent_pid = argv[0], int(argv[1]), int(argv[2])
    _die_with_parent(parent_pid)
    _pin_cpus(os.environ.get(ENV_CPU_AFFINITY, ""))
    # The launcher sends SIGUSR1 to a stuck worker: every thread's stack goes to the streamed stderr,
    # from C, so it works even while the main thread is blocked inside a TensorFlow op.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    with open(spec_path, "rb") as f:
        spec, payload = pickle.load(f)  # noqa: S301 - written by our own task a moment ago
    done = threading.Event()
    ctx = run_context()

    def on_release() -> None:
        if ctx is not None:
            try:
                finish_run(ctx, spec)
            except Exception as exc:  # noqa: BLE001 - training succeeded; a stale backup is only noted
                print(f"sparktf: could not remove the backup after a successful run: {exc}", file=sys.stderr)

    threading.Thread(target=_watch_stdin, args=(done, on_release), name="sparktf-watchdog", daemon=True).start()
    try:
        train_fn, args, kwargs = pickle.loads(payload)  # noqa: S301 - cloudpickled by our driver
        outcome = execute(train_fn, args, kwargs, spec)
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the driver as a record
        print(traceback.format_exc(), file=sys.stderr, end="")  # the full story, in the streamed log
        error = summarize_error(type(exc).__name__, str(exc))
        outcome = WorkerOutcome(
            rank=ctx.rank if ctx else -1,
            ok=False,
            train_started=0.0,
            train_finished=time.time(),
            error=error,
            traceback=_short_traceback(exc, error),
        )
    tmp = spec.outcome_path + ".tmp"
    with open(tmp, "wb") as out:
        pickle.dump(outcome, out)
    os.replace(tmp, spec.outcome_path)
    if not outcome.ok:
        _exit(1)
    if outcome.history:
        metrics = ", ".join(f"{k}={v:.6g}" for k, v in final_metrics(outcome.history).items())
        print(f"sparktf: training finished; final {metrics}", file=sys.stderr)
    done.set()
    os.write(control_fd, b"done\n")
    # The watchdog thread exits the process when the task releases it.
    while True:
        time.sleep(3600)
