"""``TF_CONFIG`` from the addresses the barrier tasks gathered: pure functions.

MultiWorkerMirroredStrategy learns the cluster from one environment variable,
``TF_CONFIG``. The barrier tasks each reserve a port, ``allGather`` their
``host:port`` and then every task calls :func:`build_tf_config` with the same
list and its own rank. Keeping this a pure function (no Spark, no TensorFlow)
means the address rules are unit-tested and the barrier glue stays trivial.

We write our own rather than use ``tf.distribute.cluster_resolver`` because that
needs TensorFlow imported (seconds, on the driver and in the Spark task), while
this runs where TensorFlow must not load: in the task that only launches the
TensorFlow child process.

There is no ``chief`` task type: every task is a ``worker`` and worker 0 is the
chief, which is what MultiWorkerMirroredStrategy does when no chief is listed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sparktf.errors import LauncherError

__all__ = [
    "TF_CONFIG_ENV",
    "Cluster",
    "build_tf_config",
    "format_address",
    "host_of",
    "parse_address",
    "parse_tf_config",
]

TF_CONFIG_ENV = "TF_CONFIG"

_HOST = re.compile(r"^[A-Za-z0-9_.-]+$")
_WILDCARDS = frozenset({"0.0.0.0", "::", "0:0:0:0:0:0:0:0"})  # noqa: S104 - refused, never used


def parse_address(text: str) -> tuple[str, int]:
    """Split ``host:port`` (or ``[v6addr]:port``) into host and port.

    Raises:
        LauncherError: the text is not a host and a port in 1..65535.
    """
    m = re.match(r"^\[([0-9A-Fa-f:.%a-z]+)\]:(\d+)$", text) or re.match(r"^([^:\[\]\s]+):(\d+)$", text)
    if not m:
        raise LauncherError(
            f"Worker address {text!r} is not of the form host:port or [ipv6]:port.",
            hint="This comes from the Spark task's own address; check spark.driver.host / SPARK_LOCAL_IP.",
            address=text,
        )
    host, port = m.group(1), int(m.group(2))
    if not 1 <= port <= 65535:
        raise LauncherError(
            f"Worker address {text!r} has port {port}, outside 1..65535.",
            hint="Ports come from the operating system; this is a bug in the launcher, please report it.",
            address=text,
        )
    return host, port


def format_address(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals in brackets as gRPC expects."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def host_of(executor_address: str) -> str:
    """The host part of a Spark ``BarrierTaskInfo.address`` (``host:port`` of the executor).

    Raises:
        LauncherError: the address has no host part.
    """
    host, _port = parse_address(executor_address)
    if not (host and (_HOST.match(host) or ":" in host)):
        raise LauncherError(
            f"Spark reported the executor address {executor_address!r}, which has no usable host.",
            hint="Set SPARK_LOCAL_IP or spark.driver.host so executors advertise a reachable address.",
            address=executor_address,
        )
    if host in _WILDCARDS:
        # Every interface, not an address: the other workers could not reach this one by it.
        raise LauncherError(
            f"Spark reported the executor address {executor_address!r}, a wildcard rather than this "
            "executor's own address, so the other TensorFlow workers cannot connect to it.",
            hint="Set SPARK_LOCAL_IP (or SPARK_LOCAL_HOSTNAME) on the executors to their own address, "
            "not 0.0.0.0; on a local master sparktf.get_spark uses 127.0.0.1.",
            address=executor_address,
        )
    return host


def build_tf_config(addresses: Sequence[str], rank: int) -> dict[str, Any]:
    """The ``TF_CONFIG`` dict for worker ``rank`` of a cluster of ``addresses``.

    Args:
        addresses: ``host:port`` of every worker, indexed by rank (the order
            ``BarrierTaskContext.allGather`` returns, which is partition order).
        rank: this worker's index into ``addresses``.

    Returns:
        ``{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": rank}}``.

    Raises:
        LauncherError: empty or duplicate addresses, a malformed address, or a
            rank outside the cluster.

    Example:
        >>> build_tf_config(["10.0.0.1:4000", "10.0.0.2:4000"], 1)["task"]
        {'type': 'worker', 'index': 1}
    """
    if not addresses:
        raise LauncherError("No worker addresses were gathered; a cluster needs at least one worker.")
    for a in addresses:
        parse_address(a)
    seen: dict[str, int] = {}
    for i, a in enumerate(addresses):
        if a in seen:
            raise LauncherError(
                f"Workers {seen[a]} and {i} both reported the address {a!r}; each TF worker needs its own port.",
                hint="Two tasks reserved the same port, which port reservation must prevent: please report it.",
                address=a,
            )
        seen[a] = i
    if not 0 <= rank < len(addresses):
        raise LauncherError(
            f"Rank {rank} is outside the cluster of {len(addresses)} workers (valid: 0..{len(addresses) - 1}).",
            rank=rank,
        )
    return {"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": rank}}


@dataclass(frozen=True)
class Cluster:
    """What ``TF_CONFIG`` says about this process's place in the cluster."""

    addresses: tuple[str, ...]
    rank: int
    task_type: str

    @property
    def num_workers(self) -> int:
        return len(self.addresses)

    @property
    def is_chief(self) -> bool:
        # MWMS: an explicit "chief" task, or worker 0 when no chief is listed.
        return self.task_type == "chief" or (self.task_type == "worker" and self.rank == 0)


def parse_tf_config(text: str | None) -> Cluster:
    """Read a ``TF_CONFIG`` value; unset or empty means a single, chief worker.

    Understands the ``chief`` + ``worker`` layout as TensorFlow does: the chief
    is rank 0 and workers follow it.

    Raises:
        LauncherError: the value is not JSON of the TF_CONFIG shape.
    """
    if not text or not text.strip():
        return Cluster(addresses=(), rank=0, task_type="worker")
    try:
        cfg = json.loads(text)
        cluster: Mapping[str, Sequence[str]] = cfg.get("cluster", {})
        task: Mapping[str, Any] = cfg.get("task", {})
        task_type = str(task.get("type", "worker"))
        index = int(task.get("index", 0))
        chiefs = list(cluster.get("chief", []))
        workers = list(cluster.get("worker", []))
    except (ValueError, TypeError, AttributeError) as exc:
        raise LauncherError(
            f"{TF_CONFIG_ENV} is not valid JSON of the form "
            '{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": N}}: '
            f"{exc}; got {text[:200]!r}.",
            hint=f"Unset {TF_CONFIG_ENV} or let the launcher set it.",
        ) from None
    if task_type == "chief":
        rank = index
    elif task_type == "worker":
        rank = len(chiefs) + index
    else:
        # Evaluators and parameter servers take no part in MWMS's worker ranks.
        rank = index
    return Cluster(addresses=tuple(chiefs + workers), rank=rank, task_type=task_type)
