"""Rank helpers and the run context read the launcher's environment."""

from __future__ import annotations

import json

import pytest

from sparktf.distributed import is_chief, num_workers, on_chief, run_context, worker_index
from sparktf.distributed.ranks import ENV_ATTEMPT, ENV_RUN_DIR, ENV_RUN_ID, ENV_SCRATCH_DIR


def _as_worker(monkeypatch: pytest.MonkeyPatch, rank: int, n: int) -> None:
    cfg = {"cluster": {"worker": [f"h:{4000 + i}" for i in range(n)]}, "task": {"type": "worker", "index": rank}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cfg))


def test_outside_a_launcher_the_process_is_a_lone_chief(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv(ENV_RUN_DIR, raising=False)
    assert (is_chief(), worker_index(), num_workers()) == (True, 0, 1)
    assert run_context() is None


@pytest.mark.parametrize(("rank", "n"), [(0, 1), (0, 3), (2, 3)])
def test_helpers_read_tf_config(monkeypatch: pytest.MonkeyPatch, rank: int, n: int) -> None:
    _as_worker(monkeypatch, rank, n)
    assert (is_chief(), worker_index(), num_workers()) == (rank == 0, rank, n)


def test_on_chief_runs_only_on_the_chief(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    @on_chief
    def log(msg: str) -> str:
        calls.append(msg)
        return msg.upper()

    _as_worker(monkeypatch, 1, 2)
    assert log("from worker 1") is None
    _as_worker(monkeypatch, 0, 2)
    assert log("from the chief") == "FROM THE CHIEF"
    assert calls == ["from the chief"]
    assert log.__name__ == "log"


def test_run_context_reflects_the_launcher_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _as_worker(monkeypatch, 1, 2)
    monkeypatch.setenv(ENV_RUN_DIR, "hdfs://nn/runs/r1")
    monkeypatch.setenv(ENV_RUN_ID, "abc123")
    monkeypatch.setenv(ENV_ATTEMPT, "3")
    monkeypatch.setenv(ENV_SCRATCH_DIR, "/tmp/scratch1")
    ctx = run_context()
    assert ctx is not None
    assert (ctx.run_dir, ctx.run_id, ctx.attempt, ctx.rank, ctx.num_workers) == ("hdfs://nn/runs/r1", "abc123", 3, 1, 2)
    assert ctx.scratch_dir == "/tmp/scratch1"
    assert not ctx.is_chief
