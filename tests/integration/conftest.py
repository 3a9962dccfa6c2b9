"""Integration fixtures: a real Spark standalone cluster on loopback.

``standalone_cluster`` starts, once per test session and only when a test asks
for it, a Spark standalone master and two workers (1 core, 1 GiB each) from the
pyspark install (``$SPARK_HOME/bin/spark-class``), as plain subprocesses with
their own ``SPARK_LOG_DIR``/``SPARK_WORKER_DIR``/``SPARK_CONF_DIR`` under a
temporary directory. Ports are chosen by the JVMs themselves (``--port 0``)
and read back from their logs, so parallel sessions never collide. Each daemon
runs in its own process group, which at teardown is sent SIGTERM and then
SIGKILL, taking the executors and their Python workers with it.

The pytest process already owns the ``local[2]`` session (Spark allows one
SparkContext per process), so tests drive the cluster from a child process:
``standalone_cluster.python(code)`` runs a Python snippet with
``STANDALONE_MASTER`` set and ``standalone_cluster.spark_conf`` holding the
settings a driver needs (loopback driver, 1-core 512 MiB executors).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_TIMEOUT_S = 180.0  # three JVMs starting at once on a busy 2-core machine


@dataclass
class StandaloneCluster:
    """A running standalone master plus workers (see the module docstring)."""

    master_url: str
    spark_home: str
    root: Path
    workers: int
    cores_per_worker: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def spark_conf(self) -> dict[str, str]:
        """Settings for a driver of this cluster (pass to ``SparkConfig.conf`` with ``master=master_url``)."""
        return {
            "spark.executor.cores": str(self.cores_per_worker),
            "spark.executor.memory": "512m",
            "spark.cores.max": str(self.workers * self.cores_per_worker),
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.executorEnv.SPARK_LOCAL_IP": "127.0.0.1",
        }

    def logs(self) -> str:
        """The daemons' logs, for assertion messages."""
        parts = []
        for path in sorted((self.root / "logs").glob("*.log")):
            parts.append(f"==== {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def python(self, code: str, *, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
        """Run ``code`` in a fresh Python with this cluster's master in ``STANDALONE_MASTER``."""
        env = dict(os.environ, STANDALONE_MASTER=self.master_url, SPARK_LOCAL_IP="127.0.0.1")
        env.pop("SPARK_HOME", None)  # the child's pyspark finds its own
        return subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=self.root,
        )

    def stop(self) -> None:
        for proc in reversed(self.processes):
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.processes:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.processes:
            # The group too: executors and their Python workers outlive a killed worker otherwise.
            _signal_group(proc, signal.SIGKILL)
            if proc.poll() is None:
                proc.wait(timeout=10)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _daemon(spark_home: str, cls: str, args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [os.path.join(spark_home, "bin", "spark-class"), cls, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def _wait_for(pattern: str, log: Path, proc: subprocess.Popen[bytes], deadline: float) -> re.Match[str]:
    rx = re.compile(pattern)
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        m = rx.search(text)
        if m:
            return m
        if proc.poll() is not None:
            raise RuntimeError(f"{log.name}: the daemon exited with {proc.returncode}:\n{text[-4000:]}")
        time.sleep(0.25)
    text = log.read_text(errors="replace") if log.exists() else ""
    raise TimeoutError(f"{log.name}: no {pattern!r} within {START_TIMEOUT_S:.0f}s:\n{text[-4000:]}")


def start_standalone_cluster(root: Path, *, workers: int = 2, cores: int = 1, memory: str = "1g") -> StandaloneCluster:
    """Start a master and ``workers`` workers under ``root``; the caller must ``stop()`` it."""
    import pyspark

    spark_home = os.path.dirname(pyspark.__file__)
    for sub in ("logs", "work", "conf"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "SPARK_HOME": spark_home,
            "SPARK_CONF_DIR": str(root / "conf"),  # empty: no user spark-defaults leak in
            "SPARK_LOG_DIR": str(root / "logs"),
            "SPARK_WORKER_DIR": str(root / "work"),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_MASTER_HOST": "127.0.0.1",
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_DAEMON_MEMORY": "512m",
        }
    )
    cluster = StandaloneCluster("", spark_home, root, workers, cores)
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        master_log = root / "logs" / "master.log"
        master = _daemon(
            spark_home,
            "org.apache.spark.deploy.master.Master",
            ["--host", "127.0.0.1", "--port", "0", "--webui-port", "0"],
            master_log,
            env,
        )
        cluster.processes.append(master)
        cluster.master_url = _wait_for(r"Starting Spark master at (spark://\S+)", master_log, master, deadline).group(1)
        logs = []
        for i in range(workers):
            log = root / "logs" / f"worker-{i}.log"
            args = ["--host", "127.0.0.1", "--port", "0", "--webui-port", "0", "--cores", str(cores)]
            args += ["--memory", memory, "--work-dir", str(root / "work" / str(i)), cluster.master_url]
            cluster.processes.append(_daemon(spark_home, "org.apache.spark.deploy.worker.Worker", args, log, env))
            logs.append(log)
        for log, proc in zip(logs, cluster.processes[1:], strict=True):
            _wait_for(r"Successfully registered with master", log, proc, deadline)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    """A Spark standalone master + 2 one-core workers on 127.0.0.1, for the whole session."""
    cluster = start_standalone_cluster(tmp_path_factory.mktemp("standalone"))
    try:
        yield cluster
    finally:
        cluster.stop()
