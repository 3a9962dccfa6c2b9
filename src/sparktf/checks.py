"""Environment report (``sparktf env``) and pre-run checks (``sparktf check``).

Checks are small functions registered with :func:`check`, after Metaflow's lint
rules: each looks at one thing and returns a :class:`CheckResult` that says what
it saw and, when something is wrong, what to do. ``sparktf run`` runs them all
before any stage, so a run never dies half-way on something knowable up front.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sparktf.config import Config
from sparktf.errors import SparkTFError

__all__ = ["PINNED", "CheckResult", "check", "environment_report", "run_checks"]

Status = Literal["ok", "warn", "fail"]

# What pyproject.toml pins; `check` compares the installed versions with these.
PINNED: dict[str, str] = {
    "tensorflow": "2.20.",
    "tf-keras": "2.20.",
    "tensorflow-recommenders": "0.7.7",
    "scann": "1.4.2",
    "pyspark": "4.",
    "mlflow": "3.",
}


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    hint: str = ""


_CHECKS: list[tuple[str, Callable[[Config], CheckResult]]] = []


def check(name: str) -> Callable[[Callable[[Config], CheckResult]], Callable[[Config], CheckResult]]:
    """Register a pre-run check under ``name``."""

    def deco(fn: Callable[[Config], CheckResult]) -> Callable[[Config], CheckResult]:
        _CHECKS.append((name, fn))
        return fn

    return deco


def run_checks(cfg: Config) -> list[CheckResult]:
    """Run every registered check; a check that raises is reported as failed."""
    results = []
    for name, fn in _CHECKS:
        try:
            results.append(fn(cfg))
        except SparkTFError as exc:
            results.append(CheckResult(name, "fail", exc.message, exc.hint or ""))
        except Exception as exc:  # noqa: BLE001 - a broken check must not hide the others
            results.append(CheckResult(name, "fail", f"{type(exc).__name__}: {exc}"))
    return results


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@check("python")
def _check_python(cfg: Config) -> CheckResult:
    v = sys.version_info
    if (v.major, v.minor) != (3, 11):
        return CheckResult(
            "python",
            "fail",
            f"Python {v.major}.{v.minor} is running; sparktf is built for 3.11.",
            "Use Python 3.11 (`make` creates .venv with it).",
        )
    return CheckResult("python", "ok", f"Python {platform.python_version()} at {sys.executable}")


@check("java")
def _check_java(cfg: Config) -> CheckResult:
    from sparktf.spark import java_version, require_java

    require_java()
    major, line = java_version()
    return CheckResult("java", "ok", f"Java {major}: {line}")


@check("packages")
def _check_packages(cfg: Config) -> CheckResult:
    problems = []
    seen = []
    for dist, prefix in PINNED.items():
        v = _version(dist)
        if v is None:
            problems.append(f"{dist} is not installed")
        elif not v.startswith(prefix):
            problems.append(f"{dist} {v} is installed, the pin is {prefix}*")
        else:
            seen.append(f"{dist} {v}")
    if problems:
        return CheckResult(
            "packages", "fail", "; ".join(problems) + ".", "Reinstall with `make install` (pip install -e '.[test]')."
        )
    return CheckResult("packages", "ok", ", ".join(seen))


@check("config")
def _check_config(cfg: Config) -> CheckResult:
    # Cross-section rules that single fields cannot see.
    problems = []
    if cfg.data.source == "synthetic":
        gen = cfg.generator
        if gen.num_events < gen.num_users * 3:
            problems.append(
                f"generator.num_events ({gen.num_events}) is under 3 events per user "
                f"(generator.num_users = {gen.num_users}); most users would be dropped by features.min_user_events"
            )
    missing = set(cfg.features.positive_event_types) - set(cfg.data.event_types)
    if missing:
        problems.append(f"features.positive_event_types has {sorted(missing)} that data.event_types does not allow")
    if problems:
        return CheckResult(
            "config", "fail", "; ".join(problems) + ".", "Fix the values in the config file or with --set."
        )
    return CheckResult("config", "ok", f"workdir {cfg.paths.root}")


@check("workdir")
def _check_workdir(cfg: Config) -> CheckResult:
    paths = cfg.paths
    if not paths.is_local:
        return CheckResult("workdir", "ok", f"{paths.root} (remote; Spark writes it, not checked from here)")
    root = paths.root
    probe_dir = root  # the nearest part of the path that is there (Workdir resolved the symlinks)
    while not os.path.exists(probe_dir):
        parent = os.path.dirname(probe_dir)
        if parent == probe_dir:
            break
        probe_dir = parent
    if not os.path.isdir(probe_dir):
        # Writable is not enough: a run makes folders under the workdir, and a file
        # there only fails later, in the middle of the first stage that writes.
        what = "a file" if os.path.isfile(probe_dir) else "a special file"
        where = f"{root} is {what}" if probe_dir == root else f"{root} cannot be created: {probe_dir} is {what}"
        return CheckResult(
            "workdir",
            "fail",
            f"{where}, not a directory; a run keeps its data, models and state in directories under the workdir.",
            "Choose another workdir with --workdir (or workdir = ... in the config), or move that file away.",
        )
    if not os.access(probe_dir, os.W_OK):
        return CheckResult(
            "workdir",
            "fail",
            f"{root} cannot be created: {probe_dir} is not writable.",
            "Choose another workdir with --workdir.",
        )
    free = shutil.disk_usage(probe_dir).free
    if free < 2 * 1024**3:
        return CheckResult(
            "workdir", "warn", f"{root}: only {free / 1024**3:.1f} GiB free.", "A default run needs about 2 GiB."
        )
    return CheckResult("workdir", "ok", f"{root} ({free / 1024**3:.0f} GiB free)")


@check("spark-master")
def _check_master(cfg: Config) -> CheckResult:
    from sparktf.spark import default_parallelism

    master = cfg.spark.master
    if master.startswith("local"):
        cores = default_parallelism(master)
        if cfg.train.num_workers > cores:
            return CheckResult(
                "spark-master",
                "fail",
                f"train.num_workers = {cfg.train.num_workers} but {master} gives {cores} task slots; "
                "barrier training needs one slot per worker.",
                f"Use --set train.num_workers={cores} or a master with more cores, e.g. local[{cfg.train.num_workers}].",
            )
        return CheckResult("spark-master", "ok", f"{master} ({cores} task slots)")
    if not cfg.paths.is_local or cfg.paths.root.startswith("/"):
        note = "" if not cfg.paths.is_local else " (a local workdir must be a shared mount on every node)"
        return CheckResult("spark-master", "ok" if not note else "warn", f"{master}{note}")
    return CheckResult("spark-master", "ok", master)


@check("tracking")
def _check_tracking(cfg: Config) -> CheckResult:
    uri = cfg.tracking_uri
    if uri.startswith("sqlite:///"):
        db = uri.removeprefix("sqlite:///")
        parent = os.path.dirname(db) or "."
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.access(parent, os.W_OK):
            return CheckResult(
                "tracking", "fail", f"MLflow database {db} cannot be created.", "Choose a writable workdir."
            )
        return CheckResult("tracking", "ok", uri)
    if uri.startswith(("http://", "https://")):
        import urllib.request

        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as resp:  # noqa: S310 - user-given tracking server
                ok = resp.status == 200
        except OSError as exc:
            return CheckResult(
                "tracking",
                "fail",
                f"MLflow server {uri} did not answer: {exc}.",
                "Start it (`mlflow server`) or fix tracking.tracking_uri.",
            )
        return CheckResult("tracking", "ok" if ok else "fail", uri)
    return CheckResult("tracking", "ok", uri)


def gpus() -> list[str]:
    """GPUs visible to this machine, from ``nvidia-smi -L`` (no TensorFlow import)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.startswith("GPU")]


def tensorflow_gpus() -> list[str] | str:
    """GPUs TensorFlow itself sees, from a child process so this one stays TF-free."""
    code = (
        "import sparktf.tfenv as e; tf = e.import_tensorflow(); "
        "print('\\n'.join(d.name for d in tf.config.list_physical_devices('GPU')))"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        return "TensorFlow did not start within 180 s"
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["unknown error"])[-1]
        return f"TensorFlow failed to start: {tail}"
    return [x for x in out.stdout.splitlines() if x.strip()]


def environment_report(*, probe_tensorflow: bool = True) -> dict[str, str]:
    """Versions of everything sparktf stands on, and the GPUs this machine has."""
    from sparktf.spark import java_version

    rows: dict[str, str] = {
        "sparktf": _version("sparktf") or "not installed",
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
    }
    try:
        rows["java"] = java_version()[1]
    except SparkTFError as exc:
        rows["java"] = f"missing: {exc.message}"
    for dist in (
        "pyspark",
        "tensorflow",
        "tf-keras",
        "tensorflow-recommenders",
        "mlflow",
        "scann",
        "pyarrow",
        "pandas",
        "numpy",
    ):
        rows[dist] = _version(dist) or "not installed"
    smi = gpus()
    rows["gpus (nvidia-smi)"] = "; ".join(smi) if smi else "none"
    if probe_tensorflow:
        tf_gpus = tensorflow_gpus()
        rows["gpus (tensorflow)"] = tf_gpus if isinstance(tf_gpus, str) else ("; ".join(tf_gpus) or "none")
    rows["TF_USE_LEGACY_KERAS"] = os.environ.get("TF_USE_LEGACY_KERAS", "unset")
    rows["tmp"] = tempfile.gettempdir()
    return rows
