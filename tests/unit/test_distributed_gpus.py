"""GPU assignment: Spark resource addresses to CUDA_VISIBLE_DEVICES, without Spark."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparktf.distributed.gpus import (
    cuda_visible_devices,
    gpus_for_worker,
    parse_gpu_addresses,
    tasks_for_slots,
)
from sparktf.errors import LauncherError


def test_cpu_training_hides_every_gpu() -> None:
    assert cuda_visible_devices(None) == ""
    assert cuda_visible_devices(None, "0,1") == ""


def test_addresses_pass_through_when_the_executor_sees_all_gpus() -> None:
    assert cuda_visible_devices(["2", "3"]) == "2,3"
    assert cuda_visible_devices(["1"], "") == "1"


def test_addresses_index_into_an_executor_that_is_already_restricted() -> None:
    assert cuda_visible_devices(["0", "1"], "4,6") == "4,6"
    assert cuda_visible_devices(["1"], " 4, 6 ") == "6"


def test_an_address_past_the_executors_devices_is_named() -> None:
    with pytest.raises(LauncherError, match=r"Spark assigned GPU 2, but the executor only sees "):
        cuda_visible_devices(["2"], "4,6")


@pytest.mark.parametrize("bad", [["01"], ["GPU-3a7c"], ["0", ""], ["-1"]])
def test_malformed_addresses_are_refused_with_the_values(bad: list[str]) -> None:
    with pytest.raises(LauncherError, match="are not device indices") as err:
        parse_gpu_addresses(bad)
    assert "discoveryScript" in str(err.value)


def test_no_addresses_names_the_spark_setting() -> None:
    with pytest.raises(LauncherError, match=r"spark\.task\.resource\.gpu\.amount"):
        parse_gpu_addresses([])


@pytest.mark.parametrize(
    ("slots", "amount", "tasks"),
    [(4, None, 4), (4, 1.0, 4), (4, 2.0, 2), (5, 2.0, 3), (3, 0.5, 3), (8, 4.0, 2)],
)
def test_tasks_for_slots(slots: int, amount: float | None, tasks: int) -> None:
    assert tasks_for_slots(slots, amount) == tasks


def test_tasks_for_slots_refuses_nonsense() -> None:
    with pytest.raises(LauncherError, match="num_slots = 0"):
        tasks_for_slots(0, None)
    with pytest.raises(LauncherError, match=r"amount = -1"):
        tasks_for_slots(2, -1)


@given(st.integers(1, 64), st.integers(1, 8))
def test_slots_are_dealt_evenly_and_completely(slots: int, per_task: int) -> None:
    tasks = tasks_for_slots(slots, float(per_task))
    assigned = [str(i) for i in range(per_task)]
    shares = [len(gpus_for_worker(assigned, num_slots=slots, num_tasks=tasks, rank=r)) for r in range(tasks)]
    assert sum(shares) == slots
    assert max(shares) - min(shares) <= 1


def test_a_task_with_too_few_gpus_for_its_share_is_named() -> None:
    with pytest.raises(LauncherError, match=r"Worker 0 needs 2 GPUs"):
        gpus_for_worker(["0"], num_slots=3, num_tasks=2, rank=0)
