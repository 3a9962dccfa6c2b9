"""The whole pipeline, `sparktf run`, against a Spark standalone cluster on loopback.

The same command a user runs on a real cluster (`--master spark://...` and a workdir
every node can reach; here a local directory, since the workers share this machine).
A second run with nothing changed must skip every stage.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.spark]

SPARKTF = str(Path(sys.executable).with_name("sparktf"))

TINY = """
[generator]
num_events = 12000
num_users = 600
num_items = 150
num_categories = 6
num_brands = 20
[train]
models = ["sequential"]
epochs = 1
num_workers = 2
embedding_dim = 16
[evaluation]
baselines = ["most_popular", "item_cooccurrence"]
"""


# A secret setting that must never reach MLflow, the artifacts, the state files or the
# terminal (issue 15): the run is searched for it byte by byte.
PLANTED_TOKEN = "planted-token-7f3c9a1e5b"
# What a newcomer reads as something having gone wrong.
ALARMING = re.compile(r"\b(error|warn(ing)?|traceback|exception|cuinit|fatal|deprecat\w*)\b", re.IGNORECASE)


def _run(cluster: Any, workdir: Path, config: Path) -> subprocess.CompletedProcess[str]:
    conf = "{" + ", ".join(f'"{k}" = "{v}"' for k, v in cluster.spark_conf.items()) + "}"
    cmd = [
        SPARKTF, "run",
        "--master", cluster.master_url,
        "--workdir", str(workdir),
        "--config", str(config),
        "--set", f"spark.conf={conf}",
        "--set", "spark.ui=false",
        "--set", f"serve.auth_token={PLANTED_TOKEN}",
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1200)


def test_sparktf_run_on_a_standalone_cluster_then_skips_everything(standalone_cluster: Any, tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    workdir = tmp_path / "work"

    first = _run(standalone_cluster, workdir, config)
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-6000:]
    assert "Pipeline finished" in first.stdout
    assert "launching 2 TF workers" in first.stdout + first.stderr
    recs = list((workdir / "recommendations").glob("*.parquet"))
    assert recs, "no recommendations written"
    register = json.loads((workdir / "state" / "register.json").read_text())
    assert register["champion"] is not None
    assert PLANTED_TOKEN not in first.stdout + first.stderr
    leaks = [str(p) for p in workdir.rglob("*") if p.is_file() and PLANTED_TOKEN.encode() in p.read_bytes()]
    assert not leaks, f"the secret serve.auth_token was written to {leaks}"
    assert (workdir / "mlflow.db").stat().st_size > 0  # the store was searched, and it holds the runs
    # Quiet by default: nothing on screen reads as an error; the frameworks' output is in the log.
    alarming = [
        line
        for line in (first.stdout + first.stderr).splitlines()
        if ALARMING.search(line) and "spark-master" not in line  # the check's own warning about a local workdir
    ]
    assert not alarming, "\n".join(alarming)
    log = (workdir / "logs" / "sparktf.log").read_text()
    assert "WARN" in log and "Full log:" in first.stdout

    second = _run(standalone_cluster, workdir, config)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    skipped = [line for line in second.stdout.splitlines() if "inputs unchanged" in line]
    assert len(skipped) == 9, second.stdout[-4000:]
