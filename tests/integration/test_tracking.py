"""MLflow tracking against a real SQLite store: the driver's run, the chief-only callback,
and the exported model as a logged pyfunc model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest


@pytest.fixture
def tracker(tmp_path: Path) -> Any:
    from sparktf.training.tracking import RunTracker

    t = RunTracker(f"sqlite:///{tmp_path}/mlflow.db", "tests", artifact_root=str(tmp_path / "artifacts"))
    t.start("run-1", tags={"dataset": "synthetic"})
    return t


def test_run_params_metrics_plot_and_tags(tracker: Any) -> None:
    tracker.log_params({"train": {"epochs": 3, "models": ["sequential"]}})
    tracker.log_metrics({"ndcg@10": 0.25, "hr@10": np.float32(0.5), "note": "skip me"}, step=0, prefix="test/")
    tracker.log_history_plot({"loss": [3.0, 2.0], "val_loss": [3.5, 2.5], "val_hr_at_10": [0.1, 0.2]}, "plots/seq.png")
    tracker.set_tags({"git_commit": "abc"})
    run = tracker.client.get_run(tracker.run_id)
    assert run.data.params["train.epochs"] == "3"
    assert run.data.metrics["test/ndcg_at_10"] == pytest.approx(0.25)
    assert run.data.metrics["test/hr_at_10"] == pytest.approx(0.5)
    assert "test/note" not in run.data.metrics
    assert run.data.tags["dataset"] == "synthetic" and run.data.tags["git_commit"] == "abc"
    files = [a.path for a in tracker.client.list_artifacts(tracker.run_id, "plots")]
    assert files == ["plots/seq.png"]


def test_chief_callback_logs_only_on_the_chief(tracker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from sparktf.training.tracking import ChiefMetricsCallback

    for index in (1, 0):
        monkeypatch.setenv(
            "TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": index}})
        )
        cb = ChiefMetricsCallback(tracker.tracking_uri, tracker.run_id, prefix=f"w{index}/")
        # Keras logs may hold tensors, numpy scalars, floats and non-numbers (the seed crashed on these).
        from sparktf.tfenv import import_tensorflow

        tf = import_tensorflow()
        cb.on_epoch_end(0, {"loss": tf.constant(1.5), "hr_at_10": np.float64(0.2), "lr": 0.01, "note": "x"})
        cb.on_epoch_end(1, {"loss": 1.0})
    hist = tracker.client.get_metric_history(tracker.run_id, "w0/loss")
    assert [(m.step, m.value) for m in hist] == [(0, 1.5), (1, 1.0)]
    assert tracker.client.get_metric_history(tracker.run_id, "w1/loss") == []


@pytest.mark.slow
def test_exported_model_logs_and_loads_as_pyfunc(tracker: Any, tmp_path: Path) -> None:
    import mlflow
    import pandas as pd

    from sparktf.models.base import ModelParams
    from sparktf.models.catalog import Catalog
    from sparktf.models.export import export_model
    from sparktf.models.factory import build_model

    catalog = Catalog.from_arrays([f"i{i}" for i in range(30)], user_ids=["u1"])
    model = build_model(catalog, ModelParams(kind="sequential", embedding_dim=8))
    path = export_model(model, str(tmp_path / "export"), 1, k=5)
    uri = tracker.log_model(path, "sequential")
    loaded = mlflow.pyfunc.load_model(uri)
    out = loaded.predict(pd.DataFrame({"user_id": ["u1", "u2"], "history": [["i1", "i2"], []]}))
    assert list(out.columns) == ["top_k_ids", "top_k_scores", "query_embedding"]
    assert len(out) == 2 and len(out["top_k_ids"][0]) == 5
    direct = model.score_numpy(np.array(["u1"]), [["i1", "i2"]])[0]
    assert out["top_k_scores"][0][0] == pytest.approx(float(direct.max()), rel=1e-5)


def test_a_run_whose_driver_was_killed_is_marked_failed_on_the_next_run(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from sparktf.training.tracking import DRIVER_TAG, RunTracker, driver_tag

    store = f"sqlite:///{tmp_path}/mlflow.db"
    # A driver that starts a run and is SIGKILLed before it can end it.
    code = (
        "import sys, time\n"
        "from sparktf.training.tracking import RunTracker, driver_tag\n"
        f"t = RunTracker({store!r}, 'tests', artifact_root={str(tmp_path / 'art')!r})\n"
        "print(t.start('killed', tags={'workdir': '/w', **driver_tag()}), flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    killed = proc.stdout.readline().strip()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    tracker = RunTracker(store, "tests", artifact_root=str(tmp_path / "art"))
    alive = tracker.start("alive", tags={"workdir": "/w", **driver_tag()})  # this process: still running
    other = tracker.client.create_run(tracker.experiment_id, tags={"workdir": "/other", DRIVER_TAG: "x:1"})
    assert tracker.client.get_run(killed).info.status == "RUNNING"

    assert tracker.fail_abandoned_runs(workdir="/w") == [killed]
    assert tracker.client.get_run(killed).info.status == "FAILED"
    assert "ended without finishing" in tracker.client.get_run(killed).data.tags["sparktf.failure"]
    assert tracker.client.get_run(alive).info.status == "RUNNING"
    assert tracker.client.get_run(other.info.run_id).info.status == "RUNNING"
    assert tracker.fail_abandoned_runs(workdir="/w") == []  # once
