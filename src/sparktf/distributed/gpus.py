"""Which GPUs a TensorFlow worker may see: pure functions over Spark's resource addresses.

Spark's GPU-aware scheduling (``spark.task.resource.gpu.amount``) hands each
task a list of GPU addresses (``TaskContext.resources()["gpu"].addresses``). The
TensorFlow child process must see exactly those, through
``CUDA_VISIBLE_DEVICES``; CPU training sets it to the empty string so that a
stray GPU on the host is never touched.

A task given more than one GPU runs one TF worker over all of them:
MultiWorkerMirroredStrategy mirrors the model over a worker's local GPUs and
all-reduces across workers, so no extra code is needed for that case.

Written here rather than taken from spark-tensorflow-distributor because that
code validates with a regex that accepts ``"01"`` and then fails later with
``Found GPU addresses ['']`` (tensorflow/ecosystem#171); these functions name
the bad value and the Spark setting to fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from sparktf.errors import LauncherError

__all__ = [
    "cuda_visible_devices",
    "gpu_amount_key",
    "gpus_for_worker",
    "parse_gpu_addresses",
    "tasks_for_slots",
]

_ADDRESS = re.compile(r"^(0|[1-9][0-9]*)$")


def gpu_amount_key(resource_name: str = "gpu") -> str:
    """The Spark setting that gives each task its GPUs."""
    return f"spark.task.resource.{resource_name}.amount"


def parse_gpu_addresses(addresses: Sequence[str], *, resource_name: str = "gpu") -> list[str]:
    """Check the GPU addresses Spark assigned to a task.

    Raises:
        LauncherError: no addresses, or one that is not a plain device index.
    """
    addrs = [str(a).strip() for a in addresses]
    if not addrs:
        raise LauncherError(
            f"The Spark task was given no {resource_name!r} addresses although use_gpu=True.",
            hint=f"Set {gpu_amount_key(resource_name)} (e.g. 1) and a GPU discovery script "
            f"(spark.executor.resource.{resource_name}.discoveryScript), or train with use_gpu=False.",
        )
    bad = [a for a in addrs if not _ADDRESS.match(a)]
    if bad:
        raise LauncherError(
            f"Spark assigned the GPU addresses {addrs}, but {bad} are not device indices "
            "such as 0, 1, 2 (no zero padding, no UUIDs).",
            hint=f"Make spark.executor.resource.{resource_name}.discoveryScript print indices, "
            'e.g. {"name": "gpu", "addresses": ["0", "1"]}.',
            addresses=addrs,
        )
    return addrs


def cuda_visible_devices(assigned: Sequence[str] | None, parent_visible: str | None = None) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` value for a TF worker.

    Args:
        assigned: GPU addresses Spark gave the task (already checked by
            :func:`parse_gpu_addresses`); ``None`` for CPU training.
        parent_visible: ``CUDA_VISIBLE_DEVICES`` of the executor, if set. When an
            executor is already restricted (``"2,3"``), Spark's addresses are
            indices into that list, as spark-tensorflow-distributor treats them.

    Returns:
        A comma-separated list of device ids, or ``""`` for CPU training.

    Raises:
        LauncherError: an address indexes past the executor's own list.

    Example:
        >>> cuda_visible_devices(["1"], "4,5")
        '5'
    """
    if assigned is None:
        return ""
    parent = [p.strip() for p in (parent_visible or "").split(",") if p.strip()]
    if not parent:
        return ",".join(assigned)
    out = []
    for a in assigned:
        i = int(a)
        if i >= len(parent):
            raise LauncherError(
                f"Spark assigned GPU {a}, but the executor only sees CUDA_VISIBLE_DEVICES={parent_visible!r} "
                f"({len(parent)} devices); addresses are read as indices into that list.",
                hint="Make the discovery script report indices 0..N-1 of the devices the executor can see, "
                "or unset CUDA_VISIBLE_DEVICES for the executor.",
                address=a,
                cuda_visible_devices=parent_visible,
            )
        out.append(parent[i])
    return ",".join(out)


def tasks_for_slots(num_slots: int, task_gpu_amount: float | None) -> int:
    """How many Spark tasks run ``num_slots`` GPU slots (or CPU slots when ``task_gpu_amount`` is ``None``).

    A task that gets several GPUs serves several slots. Fractional amounts
    (GPU sharing) count as one GPU per task.

    Raises:
        LauncherError: ``num_slots`` below 1 or a non-positive amount.
    """
    if num_slots < 1:
        raise LauncherError(f"num_slots = {num_slots} is not allowed; expected 1 or more.", num_slots=num_slots)
    if task_gpu_amount is None:
        return num_slots
    if task_gpu_amount <= 0:
        raise LauncherError(
            f"{gpu_amount_key()} = {task_gpu_amount} is not allowed; expected a positive amount such as 1.",
        )
    per_task = max(1, int(task_gpu_amount))
    return math.ceil(num_slots / per_task)


def gpus_for_worker(assigned: Sequence[str], *, num_slots: int, num_tasks: int, rank: int) -> list[str]:
    """The GPUs worker ``rank`` uses when ``num_slots`` GPUs are spread over ``num_tasks`` tasks.

    Slots are dealt as evenly as possible, the first ``num_slots % num_tasks``
    workers taking one more, and each worker takes the first of its assigned
    GPUs (deterministic, unlike spark-tensorflow-distributor's random pick).

    Raises:
        LauncherError: the task was given fewer GPUs than its share.
    """
    share = num_slots // num_tasks + (1 if rank < num_slots % num_tasks else 0)
    if share > len(assigned):
        raise LauncherError(
            f"Worker {rank} needs {share} GPUs for num_slots={num_slots} over {num_tasks} tasks, "
            f"but Spark gave its task only {list(assigned)}.",
            hint=f"Raise {gpu_amount_key()} or lower num_slots.",
            rank=rank,
        )
    return list(assigned[:share])
