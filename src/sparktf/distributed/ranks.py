"""Where this process stands in a training run: rank helpers and the run context.

Inside a ``train_fn`` started by :class:`~sparktf.distributed.SparkRunner`, the
launcher has set ``TF_CONFIG`` (the cluster and this worker's index) and a few
``SPARKTF_*`` variables (run directory, attempt, scratch directory). These
helpers read them, so user code never parses JSON from the environment:

    >>> from sparktf.distributed import is_chief, worker_index, num_workers
    >>> (is_chief(), worker_index(), num_workers())  # outside any launcher
    (True, 0, 1)

Outside a launcher (a notebook, a unit test) the process is a single chief
worker. The values are read on every call, not cached, because the in-process
local mode sets and restores them around ``train_fn``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from sparktf.distributed.tf_config import TF_CONFIG_ENV, parse_tf_config

__all__ = [
    "ENV_ATTEMPT",
    "ENV_BACKUP_EVERY_STEPS",
    "ENV_CPU_AFFINITY",
    "ENV_RUN_DIR",
    "ENV_RUN_ID",
    "ENV_SCRATCH_DIR",
    "RunContext",
    "is_chief",
    "num_workers",
    "on_chief",
    "run_context",
    "worker_index",
]

ENV_RUN_DIR = "SPARKTF_RUN_DIR"
ENV_RUN_ID = "SPARKTF_RUN_ID"
ENV_ATTEMPT = "SPARKTF_ATTEMPT"
ENV_SCRATCH_DIR = "SPARKTF_SCRATCH_DIR"
ENV_BACKUP_EVERY_STEPS = "SPARKTF_BACKUP_EVERY_STEPS"
#: The CPUs a worker pins itself to (comma-separated), set by the launcher with ``pin_cpus``.
ENV_CPU_AFFINITY = "SPARKTF_CPU_AFFINITY"

P = ParamSpec("P")
R = TypeVar("R")


def worker_index() -> int:
    """This worker's rank, 0 for the chief (``TF_CONFIG``'s task index)."""
    return parse_tf_config(os.environ.get(TF_CONFIG_ENV)).rank


def num_workers() -> int:
    """How many TF workers take part in this run (1 outside a launcher)."""
    return max(1, parse_tf_config(os.environ.get(TF_CONFIG_ENV)).num_workers)


def is_chief() -> bool:
    """True on the worker that owns the run's persistent outputs (worker 0)."""
    return parse_tf_config(os.environ.get(TF_CONFIG_ENV)).is_chief


def on_chief(fn: Callable[P, R]) -> Callable[P, R | None]:
    """Run ``fn`` on the chief only; elsewhere the call does nothing and returns ``None``.

    Meant for side effects that involve no TensorFlow collective: printing,
    MLflow logging, writing a summary file. Never use it around anything that
    reads model or metric variables (``model.save``, ``save_weights``,
    ``evaluate``, a Keras callback): under MultiWorkerMirroredStrategy those
    all-reduce across workers, and a call made on the chief alone waits for
    peers that never join, or crashes with "Shape mismatch in the collective".
    Use :func:`sparktf.distributed.callbacks` and
    :func:`sparktf.distributed.save_model` for those; they run on every worker.

    Example:
        >>> @on_chief
        ... def report(msg: str) -> str:
        ...     return msg
        >>> report("hello")  # outside a launcher this process is the chief
        'hello'
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
        if not is_chief():
            return None
        return fn(*args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class RunContext:
    """The launcher's facts about this worker's run.

    Attributes:
        run_dir: the persistent run directory (shared by all workers; the chief writes it).
        run_id: unique id of this ``run()`` call; stays the same across restarts.
        attempt: 1 for the first launch, 2 after the first restart, ...
        rank: this worker's index; 0 is the chief.
        num_workers: workers in the cluster.
        scratch_dir: a directory of this worker's own on its local disk, removed
            when the worker ends; non-chief workers write their throw-away copies here.
        backup_every_steps: the run's backup frequency in steps (0: once per epoch).
    """

    run_dir: str
    run_id: str
    attempt: int
    rank: int
    num_workers: int
    scratch_dir: str
    backup_every_steps: int

    @property
    def is_chief(self) -> bool:
        return self.rank == 0


def run_context() -> RunContext | None:
    """The current run's context, or ``None`` outside :class:`~sparktf.distributed.SparkRunner`."""
    run_dir = os.environ.get(ENV_RUN_DIR)
    if not run_dir:
        return None
    cluster = parse_tf_config(os.environ.get(TF_CONFIG_ENV))
    return RunContext(
        run_dir=run_dir,
        run_id=os.environ.get(ENV_RUN_ID, ""),
        attempt=int(os.environ.get(ENV_ATTEMPT, "1")),
        rank=cluster.rank,
        num_workers=max(1, cluster.num_workers),
        scratch_dir=os.environ.get(ENV_SCRATCH_DIR, ""),
        backup_every_steps=int(os.environ.get(ENV_BACKUP_EVERY_STEPS, "0")),
    )
