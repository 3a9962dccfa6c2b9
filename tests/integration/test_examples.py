"""The scripts in examples/, run as a user runs them: one subprocess each, with --smoke-test.

Each test checks the exit code and what the script says it did, cross-checking the
numbers it prints against each other and against the files it left in its workdir
(read back here independently) rather than against fixed values. The scripts run one
after another: on two shared cores, running them side by side was slower, not faster.
"""

from __future__ import annotations

import ast
import json
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
TIMEOUT_S = 420


@dataclass(frozen=True)
class Run:
    """A finished example: its exit code and output."""

    returncode: int
    stdout: str
    stderr: str

    def explain(self) -> str:
        return f"exit code {self.returncode}\n--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-6000:]}"

    def search(self, pattern: str) -> re.Match[str]:
        match = re.search(pattern, self.stdout, re.MULTILINE)
        assert match is not None, f"no line matches {pattern!r}\n{self.explain()}"
        return match


def run_example(name: str, workdir: Path) -> Run:
    """``python examples/<name> --smoke-test --workdir <workdir>``, from inside the workdir
    (so that nothing Spark or MLflow writes by default lands in the repository)."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--smoke-test", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=workdir,
    )
    run = Run(proc.returncode, proc.stdout, proc.stderr)
    assert run.returncode == 0, run.explain()
    return run


def test_every_example_has_a_test_a_readme_entry_and_both_flags() -> None:
    tested = {
        name.removeprefix("test_").removesuffix("_example") + ".py"
        for name, value in globals().items()
        if name.startswith("test_") and name.endswith("_example") and callable(value)
    }
    assert SCRIPTS, f"no example scripts in {EXAMPLES}"
    assert set(SCRIPTS) == tested, (
        f"scripts without a test: {set(SCRIPTS) - tested}; tests without a script: {tested - set(SCRIPTS)}"
    )
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for name in SCRIPTS:
        source = (EXAMPLES / name).read_text(encoding="utf-8")
        docstring = ast.get_docstring(ast.parse(source)) or ""
        assert f"python examples/{name}" in docstring, f"{name}'s docstring does not say how to run it"
        assert "--smoke-test" in docstring, f"{name}'s docstring does not mention --smoke-test"
        assert f"examples/{name}" in readme, f"examples/README.md does not list {name}"


@pytest.mark.slow
@pytest.mark.spark
def test_tfrecords_spark_to_tfdata_example(tmp_path: Path) -> None:
    run = run_example("tfrecords_spark_to_tfdata.py", tmp_path)
    wrote = run.search(r"^wrote (\d+) rows as (\d+) TFRecord files under (\S+)$")
    rows, files = int(wrote[1]), int(wrote[2])
    assert len(list(Path(wrote[3]).glob("part-*.tfrecord"))) == files >= 1
    run.search(rf"^read back {rows} rows on Spark; 0 differ from what was written$")
    run.search(rf"^tf\.data read {rows} records from the files Spark wrote$")
    # The nulls of the nullable column come to TensorFlow as the parse default, 0.
    in_spark = ast.literal_eval(run.search(r"^coupon by event_id in Spark: (\{.*\})$")[1])
    in_tf = ast.literal_eval(run.search(r"^coupon by event_id in TF: +(\{.*\})$")[1])
    assert None in in_spark.values(), "the batch shown has no null to show"
    assert in_tf == {k: 0 if v is None else v for k, v in in_spark.items()}
    assert re.search(r"history +RaggedTensor +string", run.stdout), run.explain()


@pytest.mark.slow
@pytest.mark.spark
def test_mirrored_strategy_runner_example(tmp_path: Path) -> None:
    run = run_example("mirrored_strategy_runner.py", tmp_path)
    returned: dict[str, Any] = ast.literal_eval(run.search(r"^MirroredStrategyRunner returned: (\{.*\})$")[1])
    assert returned["replicas"] == 2  # num_slots=2 CPU slots: two workers, one replica each
    # Each worker printed its own epochs; under MultiWorkerMirroredStrategy they hold the same numbers.
    losses = {
        rank: [float(x) for x in re.findall(rf"^\[worker {rank}\] \d+/\d+ - .*? loss: ([0-9.e+-]+)", run.stdout, re.M)]
        for rank in (0, 1)
    }
    assert losses[0] and losses[0] == losses[1], run.explain()
    assert returned["loss"] == pytest.approx(losses[0], abs=1e-4)  # the chief's return value came home
    run.search(r"^2 workers, 1 attempt\(s\)")


@pytest.mark.slow
def test_mlflow_callback_example(tmp_path: Path) -> None:
    run = run_example("mlflow_callback.py", tmp_path)
    summary = run.search(
        r"^logged (\d+) metrics over (\d+) epochs; 'phase' logged: False; the non-chief worker's epoch (\d+) logged: False$"
    )
    epochs = int(summary[2])
    printed = dict(re.findall(r"^  (\S+) +steps \[([0-9, ]*)\]:", run.stdout, re.M))
    assert len(printed) == int(summary[1])
    assert {"loss", "val_loss", "learning_rate", "weight_norm"} <= set(printed)  # the non-tensor numbers too
    assert all(steps == ", ".join(map(str, range(epochs))) for steps in printed.values()), printed
    assert "metric 'phase' is not a finite number" in run.stderr

    # Read the store the script wrote, independently of what it printed.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "examples"]
    (stored,) = client.search_runs([experiment.experiment_id])
    assert stored.info.status == "FINISHED"
    assert set(stored.data.metrics) == set(printed)
    assert [m.step for m in client.get_metric_history(stored.info.run_id, "loss")] == list(range(epochs))


@pytest.mark.slow
@pytest.mark.spark
def test_pandas_udf_batch_inference_example(tmp_path: Path) -> None:
    run = run_example("pandas_udf_batch_inference.py", tmp_path)
    scored = run.search(
        r"^scored (\d+) users in (\d+) tasks: the model was loaded (\d+) times for (\d+) Arrow batches$"
    )
    users, tasks, loads, batches = (int(x) for x in scored.groups())
    assert loads == tasks  # once per task ...
    assert batches > tasks  # ... not once per batch
    run.search(rf"^{users} users' top-\d+ scores from Spark agree with the direct call: True$")

    import pyarrow.dataset as ds

    table = ds.dataset(tmp_path / "recommendations", format="parquet").to_table()
    assert table.num_rows == users
    assert len(set(table.column("user_id").to_pylist())) == users
    for items, scores in zip(table.column("items").to_pylist(), table.column("scores").to_pylist(), strict=True):
        assert len(items) == len(scores) >= 1
        assert scores == sorted(scores, reverse=True)


@pytest.mark.slow
def test_call_the_server_example(tmp_path: Path) -> None:
    run = run_example("call_the_server.py", tmp_path)
    port = int(run.search(r"^\$ sparktf serve --model \S+ .*--set serve\.port=(\d+)")[1])
    name = run.search(r"^ready after [0-9.]+ s: .*'model': '([^']+)'")[1]
    run.search(rf"^GET /v1/models/{re.escape(name)} -> HTTP 200$")
    assert '"state": "AVAILABLE"' in run.stdout
    assert len(re.findall(r"^POST :predict \{.*\} -> top_k: \S+ \([-0-9.]+\)", run.stdout, re.M)) == 2
    request = ast.literal_eval(run.search(rf"^POST /v1/models/{re.escape(name)}:recommend (\{{.*\}}) -> HTTP 200$")[1])
    recommended = run.search(r"^recommended after \[.*\]: (\[.*\]) \(model version 1\)$")
    items = ast.literal_eval(recommended[1])
    assert len(items) == request["k"]
    assert not set(items) & set(request["history"])  # the history's own items are left out
    run.search(r"^server stopped \(exit code -?\d+\)")
    # The finally really stopped it: nothing listens on its port any more.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
@pytest.mark.spark
def test_online_experiment_example(tmp_path: Path) -> None:
    run = run_example("online_experiment.py", tmp_path)
    for command in ("run", "live", "simulate", "experiment report"):
        run.search(rf"^\$ sparktf {command} --workdir ")
    sent = run.search(r"^sent (\d+) requests \([0-9.]+/s, (\d+) failed\) and (\d+) events")
    assert int(sent[1]) > 50 and sent[2] == "0"
    truths = dict(re.findall(r"^  arm (\w+): .* true CTR ([0-9.]+)$", run.stdout, re.M))
    assert set(truths) == {"popular", "sequential"}
    run.search(r"^sample ratio: users \[\d+, \d+\]")
    run.search(
        r"^  sequential = @champion \(v\d+\): \d+ users, .* CTR [0-9.]+ \[-?[0-9.]+, -?[0-9.]+\]; lift over popular"
    )
    run.search(r"^decision: (promote|keep|stop)")
    report = json.loads((tmp_path / "experiments" / "seq-vs-popular" / "report.json").read_text())
    assert report["arm_models"]["sequential"]["version"] is not None
    assert sum(report["arms"][a]["users"] for a in truths) > 20
    # Watching production: the champion was trained with its reference profile (saved with the
    # registered version), and the server counted the sequential arm's replies against it.
    seen = run.search(r"^monitoring: \S+ v(\d+) \(a reference profile\): (\d+) replies in the window")
    assert seen[1] == str(report["arm_models"]["sequential"]["version"]) and int(seen[2]) > 0
