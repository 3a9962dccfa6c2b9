"""What comes home from a training run, and how a failed run is explained.

The driver never receives an arbitrary object through ``collect()``: each TF
worker reports a small :class:`WorkerOutcome` (plain values, paths, the chief's
history), the launcher folds them into one frozen, picklable
:class:`TrainingResult`, and the model itself stays in the run directory as a
SavedModel plus weights.

A failed attempt is a set of :class:`WorkerFailure` records, one per worker
that stopped. :func:`primary_failure` picks the one to show: the first worker
that failed for a reason of its own, not the workers that then failed because
a peer vanished (gRPC "Socket closed", collective aborts, heartbeats). All of
this is pure so the rules are unit-tested without Spark or TensorFlow.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "FailureKind",
    "TrainingResult",
    "WorkerFailure",
    "WorkerOutcome",
    "WorkerTiming",
    "final_metrics",
    "is_cascade",
    "is_restore_failure",
    "merge_epoch_logs",
    "primary_failure",
    "should_restart",
    "summarize_error",
]

FailureKind = Literal["raised", "died", "lost", "stuck", "aborted"]

# Errors a worker sees because *another* worker went away; never the root cause.
_CASCADE = re.compile(
    r"UnavailableError|CancelledError|DeadlineExceededError|AbortedError|Socket closed|Connection reset"
    r"|Connection refused|failed to connect|Broken pipe|heartbeat|leader|coordination service"
    r"|peer.*(lost|gone|unavailable)|tasks are unhealthy|is unavailable|Stream removed",
    re.IGNORECASE,
)
# A collective whose members disagree: asymmetric code, deterministic, not a lost peer.
_ASYMMETRIC = re.compile(r"Shape mismatch in the collective|expected shape .* but another member", re.IGNORECASE)


# Lines of TensorFlow's error text that are context, not the error itself.
_NOISE = ("Detected at node", "File ", "[[", "The error could be", "Additional GRPC", ":UNKNOWN", "^")


def summarize_error(type_name: str, message: str, *, limit: int = 400) -> str:
    """``"Type: message"`` on one line, for a headline.

    TensorFlow's messages start with a bare "Graph execution error:" and a stack
    of graph frames; the sentence that says what went wrong comes after them,
    so that sentence is appended to the first line.
    """
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    if not lines:
        return type_name
    text = lines[0]
    if text.endswith(":"):
        detail = next((ln for ln in lines[1:] if not ln.startswith(_NOISE)), "")
        text = f"{text} {detail}".strip()
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type_name}: {text}"


def is_cascade(text: str) -> bool:
    """Does an error text look like the echo of a lost peer rather than a cause of its own?"""
    if _ASYMMETRIC.search(text):
        return False
    return bool(_CASCADE.search(text))


@dataclass(frozen=True)
class WorkerTiming:
    """Wall-clock marks of one worker (seconds since the epoch)."""

    rank: int
    host: str
    task_started: float
    process_started: float
    train_started: float
    train_finished: float
    task_finished: float

    @property
    def seconds(self) -> float:
        return self.task_finished - self.task_started


@dataclass(frozen=True)
class WorkerOutcome:
    """What one TF worker process reports when ``train_fn`` has returned or raised.

    Attributes:
        value: the chief's return value, cloudpickled (``None`` on other workers,
            or when ``train_fn`` returned a model or a History).
        value_type: the type name of what ``train_fn`` returned.
        history: per-epoch metrics of the whole run (all attempts merged), chief only.
        error: ``"Type: message"`` when ``train_fn`` raised, else ``None``.
        traceback: the worker's own formatted Python traceback when it raised.
    """

    rank: int
    ok: bool
    train_started: float
    train_finished: float
    value: bytes | None = None
    value_type: str = "NoneType"
    history: dict[str, list[float]] = field(default_factory=dict)
    saved_model_path: str | None = None
    weights_path: str | None = None
    error: str | None = None
    traceback: str | None = None


@dataclass(frozen=True)
class WorkerFailure:
    """Why one worker of one attempt stopped.

    Attributes:
        kind: ``raised`` (``train_fn`` or the platform raised a Python exception),
            ``died`` (the TF process exited without one: a signal, ``os._exit``,
            a TensorFlow abort), ``lost`` (its Spark task or executor vanished),
            ``stuck`` (it did not finish long after the others had; the launcher
            dumped its stacks and stopped it) or ``aborted`` (the launcher stopped
            it because another worker failed).
        error: one line: ``"ValueError: boom"`` or ``"killed by SIGKILL"``.
        tail: the worker's own traceback, or the last lines of its output.
        at: when the launcher learned of it (seconds since the epoch).
    """

    rank: int
    host: str
    attempt: int
    kind: FailureKind
    error: str
    tail: tuple[str, ...] = ()
    exit_code: int | None = None
    signal: str | None = None
    at: float = 0.0

    @property
    def cascade(self) -> bool:
        """True when this failure is most likely the echo of another worker's."""
        if self.kind == "aborted":
            return True
        # Killed from outside, its whole executor gone, or blocked on its own: a cause of its own.
        if self.kind in ("lost", "stuck") or self.signal == "SIGKILL":
            return False
        return is_cascade(self.error + "\n" + "\n".join(self.tail[-30:]))

    def summary(self) -> str:
        where = f"worker {self.rank} ({self.host})" if self.host else f"worker {self.rank}"
        return f"attempt {self.attempt}: {where} {_verb(self)}"


def _verb(f: WorkerFailure) -> str:
    if f.kind == "raised":
        return f"raised {f.error}"
    if f.kind == "lost":
        return f"was lost: {f.error}"
    if f.kind == "aborted":
        return "was stopped by the launcher"
    if f.kind == "stuck":
        return f"was stuck: {f.error}"
    return f"died: {f.error}"


def primary_failure(failures: Iterable[WorkerFailure]) -> WorkerFailure | None:
    """The failure to report: the earliest with a cause of its own, else the earliest.

    Workers the launcher itself stopped (``aborted``) never count.
    """
    real = sorted((f for f in failures if f.kind != "aborted"), key=lambda f: (f.at, f.rank))
    if not real:
        return None
    for f in real:
        if not f.cascade:
            return f
    return real[0]


# tf-keras's lazy restore of an unbuilt model's variables, inside the first traced step.
_LAZY_RESTORE = re.compile(r"You must feed a value for placeholder tensor", re.IGNORECASE)


def is_restore_failure(failure: WorkerFailure) -> bool:
    """Did a worker fail restoring the run's backup, rather than in ``train_fn``'s own code?

    The worker reports it as a ``BackupRestoreError`` (the platform's callback was
    restoring a backup when it failed). A relaunched attempt that fails with
    tf-keras's lazy-restore symptom counts too, for a ``train_fn`` that uses plain
    ``BackupAndRestore``: attempt 1 ran the same code without that error.
    """
    if failure.kind != "raised":
        return False
    if failure.error.startswith("BackupRestoreError"):
        return True
    return failure.attempt > 1 and bool(_LAZY_RESTORE.search(failure.error))


def should_restart(primary: WorkerFailure | None) -> bool:
    """Relaunch for lost or killed workers; an exception or a hang of ``train_fn``'s own is a bug, not retried.

    A failure to restore the backup in a relaunched attempt is recovery's, not a bug
    of ``train_fn``: it is relaunched too (up to ``max_restarts``), and its error says
    which backup and what to do when it keeps failing.
    """
    if primary is None:
        return True
    if primary.kind == "stuck":
        return False
    if is_restore_failure(primary):
        return True
    return primary.kind != "raised" or primary.cascade


def merge_epoch_logs(attempts: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, list[float]]:
    """One history from the per-epoch logs of successive attempts.

    Args:
        attempts: for each attempt in order, its records ``{"epoch": int, "logs": {name: value}}``.
            A later attempt's record of an epoch replaces an earlier one (the
            epoch was re-run after a restart).

    Returns:
        ``{metric: [value per epoch, in epoch order]}``; a metric missing from an
        epoch is ``nan`` there, so every list has one value per epoch.
    """
    by_epoch: dict[int, Mapping[str, Any]] = {}
    for records in attempts:
        for rec in records:
            by_epoch[int(rec["epoch"])] = rec.get("logs", {})
    epochs = sorted(by_epoch)
    names = sorted({k for logs in by_epoch.values() for k in logs})
    return {k: [_to_float(by_epoch[e].get(k, math.nan)) for e in epochs] for k in names}


def final_metrics(history: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """The last epoch's value of each metric."""
    return {k: float(v[-1]) for k, v in history.items() if len(v) > 0}


def _to_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


@dataclass(frozen=True)
class TrainingResult:
    """The small, picklable account of a finished training run.

    Attributes:
        run_id: unique id of the run (also names its history files).
        run_dir: the persistent run directory the chief wrote.
        num_workers: TF workers per attempt (0 for the in-process local mode).
        saved_model_path: the chief's SavedModel, when ``train_fn`` returned a model.
        weights_path: the chief's weights (TensorFlow checkpoint prefix; ``model.load_weights(path)``).
        history: ``{metric: [value per epoch]}`` over the whole run, restarts included.
        final_metrics: the last epoch's value of each metric.
        value: the chief's own return value when it is small and picklable
            (see :class:`~sparktf.distributed.SparkRunner`); ``None`` otherwise.
        attempts: launches it took (1 when no worker was lost).
        failures: one line per failed attempt, naming the first worker that failed.
        workers: timings of each worker of the successful attempt.
        started_at, finished_at: wall clock of the driver call (seconds since the epoch).
    """

    run_id: str
    run_dir: str
    num_workers: int
    saved_model_path: str | None
    weights_path: str | None
    history: dict[str, list[float]]
    final_metrics: dict[str, float]
    value: Any
    attempts: int
    failures: tuple[str, ...]
    workers: tuple[WorkerTiming, ...]
    started_at: float
    finished_at: float

    @property
    def restarts(self) -> int:
        return self.attempts - 1

    @property
    def seconds(self) -> float:
        return self.finished_at - self.started_at
