"""The Spark session factory.

One function, :func:`get_spark`, makes the session every stage uses: the embedded
``local[*]`` default or any master URL, Arrow on, shuffle partitions sized to the
cores, quiet logs, UTC session time, and ``TF_USE_LEGACY_KERAS=1`` in every
executor. It also registers sparktf's Spark extensions (the ``tfrecord`` data
source and the SQL functions) once they exist.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sparktf._environ import temporary_environ
from sparktf.config import SparkConfig
from sparktf.errors import EnvironmentCheckError
from sparktf.tfenv import LEGACY_KERAS_ENV, ensure_legacy_keras

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "LOOPBACK",
    "default_parallelism",
    "get_spark",
    "is_local_master",
    "java_version",
    "jvm_env",
    "require_java",
    "spark_conf",
]

MIN_JAVA = 17
MAX_JAVA = 21  # Spark 4 supports 17 and 21
LOOPBACK = "127.0.0.1"


def java_version() -> tuple[int, str]:
    """The major version and the first line of ``java -version``.

    Looks at ``$JAVA_HOME/bin/java`` first, then ``java`` on ``PATH``, as Spark does.

    Raises:
        EnvironmentCheckError: no ``java`` is found or it does not run.
    """
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        raise EnvironmentCheckError(
            "Java is missing: no `java` on PATH" + (f" or in JAVA_HOME={java_home}" if java_home else "") + ".",
            hint="Install Java 17 (e.g. `apt-get install openjdk-17-jre-headless`) for Spark.",
        )
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentCheckError(f"`{java} -version` failed: {exc}.", hint="Install Java 17 for Spark.") from None
    text = (out.stderr or out.stdout).strip()
    # JDK_JAVA_OPTIONS / JAVA_TOOL_OPTIONS make java print "NOTE: Picked up ..." first.
    lines = [line for line in text.splitlines() if "Picked up " not in line]
    first = lines[0] if lines else ""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', first)
    if not m:
        raise EnvironmentCheckError(f"Cannot read the Java version from {first!r}.", hint="Install Java 17 for Spark.")
    major = int(m.group(1))
    if major == 1 and m.group(2):  # "1.8.0_292" style
        major = int(m.group(2))
    return major, first


def require_java() -> int:
    """Fail with one clear line unless Java 17 or newer is available."""
    major, line = java_version()
    if major < MIN_JAVA:
        raise EnvironmentCheckError(
            f"Java {major} found ({line}), but Spark 4 needs Java {MIN_JAVA} or newer.",
            hint="Install Java 17 (e.g. `apt-get install openjdk-17-jre-headless`) and put it first on PATH or in JAVA_HOME.",
        )
    return major


def default_parallelism(master: str) -> int:
    """Cores a master URL gives this session, as far as the driver can tell."""
    m = re.match(r"^local\[(\d+|\*)", master)
    if master == "local":
        return 1
    if m and m.group(1) != "*":
        return int(m.group(1))
    return os.cpu_count() or 2


def is_local_master(master: str) -> bool:
    """A master that runs every executor on this machine (``local``, ``local[N]``, ``local-cluster[...]``)."""
    return master == "local" or master.startswith(("local[", "local-cluster["))


def jvm_env(cfg: SparkConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment variables the driver JVM must start with (pure; see :func:`spark_conf`).

    Spark's web UI listens on ``$SPARK_LOCAL_IP``, or on every interface when it is
    unset; no Spark setting moves it (``spark.driver.bindAddress`` does not). On a
    local master nothing outside this machine needs the UI, so it gets loopback,
    unless the user set ``SPARK_LOCAL_IP`` themselves.
    """
    environ = os.environ if environ is None else environ
    if is_local_master(cfg.master) and not environ.get("SPARK_LOCAL_IP"):
        return {"SPARK_LOCAL_IP": cfg.conf.get("spark.driver.bindAddress", LOOPBACK)}
    return {}


def spark_conf(cfg: SparkConfig, *, testing: bool = False) -> dict[str, str]:
    """The Spark settings :func:`get_spark` uses (pure; handy to inspect or test)."""
    cores = default_parallelism(cfg.master)
    shuffle = cfg.shuffle_partitions or max(4, 2 * cores)
    conf = {
        "spark.app.name": cfg.app_name,
        "spark.master": cfg.master,
        "spark.driver.memory": cfg.driver_memory,
        "spark.sql.shuffle.partitions": str(shuffle),
        "spark.default.parallelism": str(max(cores, 2)),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false" if testing else str(cfg.ui).lower(),
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.adaptive.enabled": "true",
        # Executors import sparktf fresh; this makes tf-keras hold there even before it.
        f"spark.executorEnv.{LEGACY_KERAS_ENV}": "1",
        "spark.executorEnv.TF_CPP_MIN_LOG_LEVEL": "2",
        # Driver and executors must run the same Python.
        "spark.pyspark.python": os.environ.get("PYSPARK_PYTHON", sys.executable),
        "spark.pyspark.driver.python": os.environ.get("PYSPARK_DRIVER_PYTHON", sys.executable),
    }
    if is_local_master(cfg.master) or testing:
        # Everything runs on this machine: the driver's RPC, block manager and the
        # executors' addresses stay on loopback instead of every interface.
        conf.update({"spark.driver.host": LOOPBACK, "spark.driver.bindAddress": LOOPBACK})
    if testing:
        conf.update(
            {
                "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions or 4),
                "spark.ui.enabled": "false",
            }
        )
    conf.update(cfg.conf)
    return conf


def get_spark(cfg: SparkConfig | None = None, *, testing: bool = False, **overrides: Any) -> SparkSession:
    """Return the SparkSession for this process, creating it if needed.

    Args:
        cfg: the ``[spark]`` section; defaults to ``SparkConfig()`` (embedded ``local[*]``).
        testing: pin the driver to loopback, turn the UI off and use few shuffle partitions.
        **overrides: fields of :class:`SparkConfig` to change, e.g. ``master="local[2]"``.

    Raises:
        EnvironmentCheckError: Java is missing or too old.
    """
    import dataclasses

    cfg = cfg or SparkConfig()
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    require_java()
    ensure_legacy_keras()
    # Local executors are forked from the JVM, which inherits this environment.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in spark_conf(cfg, testing=testing).items():
        builder = builder.config(key, value)
    with temporary_environ(jvm_env(cfg)):  # read when the JVM starts (the first session of the process)
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    _register_extensions(spark)
    return spark


def _register_extensions(spark: SparkSession) -> None:
    """Register sparktf's data sources and SQL functions on the session.

    Both ship in this package: an ImportError here is a broken install and surfaces.
    """
    from sparktf.data import sql_functions
    from sparktf.tfrecord import datasource

    # get_spark is called by every stage; register once per session, not per call.
    if spark.conf.get("spark.sparktf.extensionsRegistered", "false") == "true":
        return
    datasource.register(spark)
    sql_functions.register(spark)
    spark.conf.set("spark.sparktf.extensionsRegistered", "true")
