"""Which failure to report, whether to restart, how history and results come home."""

from __future__ import annotations

import math
import pickle

import pytest

from sparktf.distributed.launcher import check_slots, failure_message
from sparktf.distributed.result import (
    TrainingResult,
    WorkerFailure,
    WorkerTiming,
    final_metrics,
    is_cascade,
    is_restore_failure,
    merge_epoch_logs,
    primary_failure,
    should_restart,
    summarize_error,
)
from sparktf.errors import NotEnoughSlotsError, TrainingFailedError

SOCKET_CLOSED = "UnavailableError: Collective ops is aborted by: Socket closed"


def _f(rank: int, kind: str, error: str, at: float, signal: str | None = None) -> WorkerFailure:
    return WorkerFailure(rank, f"host{rank}", 1, kind, error, (), None, signal, at)  # type: ignore[arg-type]


def test_a_killed_worker_beats_the_earlier_echo_of_its_death() -> None:
    # The chief's gRPC error can reach the driver before the killed worker's report.
    echo = _f(0, "raised", SOCKET_CLOSED, at=1.0)
    killed = _f(1, "died", "killed by SIGKILL", at=1.5, signal="SIGKILL")
    assert primary_failure([echo, killed]) == killed


def test_the_earliest_real_failure_wins() -> None:
    a = _f(1, "raised", "ValueError: bad row", at=2.0)
    b = _f(0, "raised", "KeyError: 'x'", at=3.0)
    assert primary_failure([b, a]) == a


def test_only_echoes_still_name_the_earliest() -> None:
    a = _f(1, "raised", SOCKET_CLOSED, at=2.0)
    b = _f(0, "raised", "DeadlineExceededError: heartbeat timeout", at=1.0)
    assert primary_failure([a, b]) == b


def test_workers_the_launcher_stopped_never_count() -> None:
    assert primary_failure([_f(0, "aborted", "stopped by the launcher", at=0.0)]) is None


@pytest.mark.parametrize(
    ("text", "cascade"),
    [
        (SOCKET_CLOSED, True),
        ("CancelledError: [_Derived_]Cancelled", True),
        ("tasks are unhealthy (stopped sending heartbeats)", True),
        ("ValueError: bad batch", False),
        ("Collective ops is aborted by: Shape mismatch in the collective instance 152", False),
    ],
)
def test_is_cascade(text: str, cascade: bool) -> None:
    assert is_cascade(text) is cascade


def test_restarts_are_for_lost_workers_not_bugs() -> None:
    assert should_restart(_f(1, "died", "killed by SIGKILL", 0.0, signal="SIGKILL"))
    assert should_restart(_f(1, "lost", "executor lost", 0.0))
    assert should_restart(_f(1, "raised", SOCKET_CLOSED, 0.0))
    assert not should_restart(_f(1, "raised", "ValueError: bad batch", 0.0))
    # A worker blocked in a collective only it runs would block again.
    stuck = _f(0, "stuck", "still running long after the other workers had finished", 0.0)
    assert not should_restart(stuck) and not stuck.cascade


LAZY_RESTORE = (
    "InvalidArgumentError: Graph execution error: You must feed a value for placeholder tensor "
    "'cond/else/_1/cond/Placeholder' with dtype int32"
)


def _attempt(attempt: int, error: str, kind: str = "raised") -> WorkerFailure:
    return WorkerFailure(0, "host0", attempt, kind, error)  # type: ignore[arg-type]


def test_a_relaunched_attempt_that_cannot_restore_its_backup_is_recovery_not_a_bug() -> None:
    # The worker's own label: its platform callback was restoring a backup when it failed.
    labelled = _attempt(2, "BackupRestoreError: Could not restore the backup in /runs/r1/backup; ...")
    assert is_restore_failure(labelled) and should_restart(labelled)
    # tf-keras's lazy restore of an unbuilt model, from a train_fn with plain BackupAndRestore:
    # only a relaunched attempt restores anything.
    assert is_restore_failure(_attempt(2, LAZY_RESTORE)) and should_restart(_attempt(2, LAZY_RESTORE))
    assert not is_restore_failure(_attempt(1, LAZY_RESTORE)) and not should_restart(_attempt(1, LAZY_RESTORE))
    # Everything else keeps its classification.
    assert not is_restore_failure(_attempt(2, "ValueError: bad batch"))
    assert not should_restart(_attempt(2, "ValueError: bad batch"))
    assert not is_restore_failure(_attempt(2, "BackupRestoreError: ...", kind="stuck"))


def test_tensorflow_errors_are_summarized_to_the_sentence_that_matters() -> None:
    message = (
        "Graph execution error:\n\nDetected at node CollectiveReduceV2 defined at (most recent call last):\n"
        '  File "train.py", line 3, in fit\n\n'
        "Collective ops is aborted by: Shape mismatch in the collective instance 152.\n"
        "\t [[{{node CollectiveReduceV2}}]] [Op:__inference_train_function_732]"
    )
    assert summarize_error("InvalidArgumentError", message) == (
        "InvalidArgumentError: Graph execution error: Collective ops is aborted by: "
        "Shape mismatch in the collective instance 152."
    )
    assert summarize_error("ValueError", "bad batch 7") == "ValueError: bad batch 7"
    assert summarize_error("SystemExit", "") == "SystemExit"
    assert len(summarize_error("E", "x" * 5000)) < 420


def test_merge_epoch_logs_lets_a_rerun_epoch_replace_the_lost_one() -> None:
    first = [{"epoch": 0, "logs": {"loss": 3.0}}, {"epoch": 1, "logs": {"loss": 2.0}}]
    second = [{"epoch": 1, "logs": {"loss": 1.9, "val_loss": 2.5}}, {"epoch": 2, "logs": {"loss": 1.5}}]
    history = merge_epoch_logs([first, second])
    assert history["loss"] == [3.0, 1.9, 1.5]
    assert math.isnan(history["val_loss"][0]) and history["val_loss"][1] == 2.5
    assert final_metrics(history)["loss"] == 1.5


def test_training_result_pickles_and_reports_restarts() -> None:
    timing = WorkerTiming(0, "h", 1.0, 2.0, 3.0, 4.0, 5.0)
    result = TrainingResult(
        "rid", "/runs/r", 2, "/runs/r/model/saved_model", "/runs/r/model/weights/weights",
        {"loss": [2.0, 1.0]}, {"loss": 1.0}, {"k": 1}, 3, ("a", "b"), (timing,), 10.0, 25.0,
    )  # fmt: skip
    back = pickle.loads(pickle.dumps(result))
    assert back == result
    assert (back.restarts, back.seconds, back.workers[0].seconds) == (2, 15.0, 4.0)


def test_slots_check() -> None:
    assert check_slots(2, 2, 0, master="local[2]") is None
    too_few = check_slots(3, 2, 0, master="local[2]")
    assert isinstance(too_few, NotEnoughSlotsError)
    assert "asked for 3 workers" in str(too_few) and "only 2 task slots" in str(too_few)
    assert "local[N] with N >= 3" in str(too_few)
    busy = check_slots(2, 4, 3, master="spark://m:7077")
    assert isinstance(busy, NotEnoughSlotsError)
    assert "only 1 of the 4 task slots" in str(busy) and "3 busy" in str(busy)
    assert busy.context["free"] == 1


def test_failure_message_names_the_worker_and_shows_its_own_traceback() -> None:
    tb = ("Traceback (most recent call last):", '  File "train.py", line 9, in train_fn', "ValueError: bad batch 7")
    f = WorkerFailure(1, "10.0.0.2", 1, "raised", "ValueError: bad batch 7", tb, 1, None, 0.0)
    text = failure_message(f, attempts=1, max_restarts=2, restartable=False)
    assert (
        text.splitlines()[0]
        == "Worker 1 (host 10.0.0.2) failed first, in attempt 1: it raised ValueError: bad batch 7."
    )
    assert '    File "train.py", line 9, in train_fn' in text
    assert "Not retried" in text
    killed = WorkerFailure(1, "h", 3, "died", "killed by SIGKILL", ("step 5",), -9, "SIGKILL", 0.0)
    assert "Gave up after 2 restarts" in failure_message(killed, attempts=3, max_restarts=2, restartable=True)
    err = TrainingFailedError(text, rank=1)
    assert pickle.loads(pickle.dumps(err)).context["rank"] == 1
