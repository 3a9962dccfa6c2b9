"""Quiet by default: framework output goes to the run's log file, progress stays on screen."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from sparktf.runlog import RunLog, is_noise, worker_sink

# Lines the training workers printed during `make run` before issue 15.
NOISE = [
    "[worker 0] E0000 00:00:1765000000.123456   12345 cuda_executor.cc:1228] failed call to cuInit: INTERNAL: CUDA error",
    "[worker 1] I0000 00:00:1765000000.123456   12345 port.cc:153] oneDNN custom operations are on.",
    "[worker 0] WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "[worker 0] 2026-12-06 05:00:00.000001: I tensorflow/core/platform/cpu_feature_guard.cc:210] This TensorFlow",
    "[worker 0] To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow",
    "[worker 1, attempt 2] WARNING:tensorflow:Model's `__init__()` arguments contain non-serializable objects.",
    "[worker 0] /x/site-packages/tf_keras/src/engine/training.py:3098: UserWarning: You are saving your model",
    "[worker 0]   warnings.warn(",
]
KEPT = [
    "[worker 0] Epoch 1/10",
    "[worker 0] 120/120 - 4s - loss: 6.2 - hr@10: 0.41 - val_hr@10: 0.52",
    "[sparktf] launching 2 TF workers (attempt 1)",
    "[worker 1] Traceback (most recent call last):",
    "[worker 1] ValueError: the data is broken",
]


@pytest.mark.parametrize("line", NOISE)
def test_framework_noise_is_recognised(line: str) -> None:
    assert is_noise(line)


@pytest.mark.parametrize("line", KEPT)
def test_progress_and_real_failures_stay_on_screen(line: str) -> None:
    assert not is_noise(line)


def test_a_run_log_takes_stderr_warnings_and_worker_noise(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "logs" / "sparktf.log"
    with RunLog(str(log), title="sparktf test"):
        # A child process (as the JVM is) inherits the redirected stderr.
        subprocess.run(
            [sys.executable, "-c", "import sys; sys.stderr.write('JVM WARN WindowExec noise\\n')"], check=True
        )
        sys.stderr.write("python stderr noise\n")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("mlflow pickle noise", UserWarning, stacklevel=1)
        sink = worker_sink()
        sink(NOISE[0])
        sink(KEPT[0])
    sys.stderr.write("after the run\n")
    out, err = capfd.readouterr()
    text = log.read_text()
    for noise in ("JVM WARN WindowExec noise", "python stderr noise", "mlflow pickle noise", "cuInit", "Epoch 1/10"):
        assert noise in text
    assert "cuInit" not in out + err and "WindowExec" not in out + err and "pickle noise" not in out + err
    assert "Epoch 1/10" in out  # progress is still shown
    assert "after the run" in err  # stderr is back for sparktf's own messages
    assert worker_sink() is not None and "sparktf test" in text


def test_verbose_keeps_everything_on_screen(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "sparktf.log"
    with RunLog(str(log), title="sparktf test", verbose=True):
        sys.stderr.write("framework says hello\n")
        worker_sink()(NOISE[1])
    out, err = capfd.readouterr()
    assert "framework says hello" in err and "oneDNN" in out
    assert "oneDNN" in log.read_text()
    assert os.path.exists(log)
