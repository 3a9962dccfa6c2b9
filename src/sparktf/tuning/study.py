"""The driver side of ``sparktf tune``: an Optuna study whose trials run as Spark tasks.

:func:`run_study` asks the study for up to ``trials`` trials and keeps ``parallelism`` of
them running at once, each in a thread of this process that submits the trial's one Spark
task (:mod:`sparktf.tuning.trial`) under a job group of its own and waits for it. The
thread then records the trial: in the study (COMPLETE with its best validation NDCG@10,
PRUNED, or FAIL with its error, and the study goes on) and in MLflow (a run nested under
the study's parent run, with the trial's settings as params, the curves the training
logged per epoch, the best value and the state).

Why our own loop instead of ``study.optimize(n_jobs=...)``: ``optimize`` waits for every
running trial after Ctrl-C, which here means minutes of training nobody wants; it cannot
cancel the trials' Spark jobs; and it would start a trial that only has seconds left.

The time budget, ``timeout_s``: no trial starts after it, nor when less time is left than
the median trial has taken so far (it would be cut short), and a trial still training
when it runs out stops after its current epoch, recorded with the epochs it ran
(``budget_cut``). So a study ends within ``timeout_s`` plus one epoch and a trial's
start-up, whatever ``trials`` and ``epochs`` say.

Sampler and pruner, for budgets of about ten trials: TPE (seeded) samples at random for
its first ``max(2 × parallelism, trials // 3)`` trials instead of Optuna's default 10,
which would leave a 12-trial budget almost no guided trials, and with ``constant_liar`` so
that trials running side by side are not proposed the same settings. The median pruner
waits for ``min(5, max(2, trials // 4))`` finished trials (Optuna's default is 5, which
protects almost half of a 12-trial budget from pruning).
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sparktf.tuning.pruning import PrunerArgs, make_pruner, make_storage, quiet_optuna
from sparktf.tuning.space import suggest
from sparktf.tuning.trial import METRIC, TrialTask, spark_task

if TYPE_CHECKING:
    from pyspark import SparkContext

__all__ = ["StudyArgs", "StudyResult", "TrialRecord", "pruner_args", "run_study", "tpe_startup_trials"]

#: MLflow's tag that nests a run under another in the UI.
PARENT_RUN_TAG = "mlflow.parentRunId"

#: ``spec_for(params, run_dir, mlflow_run_id)``: the TrainSpec of one trial's settings.
SpecFn = Callable[[Mapping[str, Any], str, str], Any]


@dataclass(frozen=True)
class StudyArgs:
    """One study.

    Attributes:
        kind: the model kind searched.
        trials, parallelism, timeout_s, pruner_warmup_epochs, seed: ``[tune]``.
        storage_url: the Optuna storage every trial process can reach.
        tune_dir: where each study's trial directories go (``<tune_dir>/<study>/trial-NNN``).
        tracking_uri, experiment, artifact_root: MLflow, for the trials' nested runs.
        threads_per_trial: TensorFlow threads of each trial process; 0 for TensorFlow's default.
        hide_gpus: train on the CPU.
        tags: MLflow tags of every trial run (the workdir, the driver).
        study_name: empty for ``<kind>-<date>-<time>``.
    """

    kind: str
    trials: int
    parallelism: int
    timeout_s: float
    pruner_warmup_epochs: int
    seed: int
    storage_url: str
    tune_dir: str
    tracking_uri: str
    experiment: str
    artifact_root: str
    threads_per_trial: int = 0
    hide_gpus: bool = True
    tags: Mapping[str, str] = field(default_factory=dict)
    study_name: str = ""


@dataclass(frozen=True)
class TrialRecord:
    """What one trial did.

    Attributes:
        state: ``complete``, ``pruned`` or ``failed``.
        params: its ``train.*`` settings.
        value: its best validation NDCG@10 over the epochs it ran (None if it has none).
        epochs_run: epochs trained; ``pruned_at`` the epoch (1-based) it was pruned after.
        budget_cut: the study's time stopped it before its epochs or early stopping did.
        seconds: wall time from submission to result, Spark scheduling included.
        curve: validation NDCG@10 per epoch.
        task_pid, trial_pid, host, job_group: where it ran (the Spark task's Python worker,
            the training process it started, and the Spark job group).
    """

    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    epochs_run: int
    seconds: float
    pruned_at: int | None = None
    budget_cut: bool = False
    error: str = ""
    mlflow_run_id: str = ""
    curve: tuple[float, ...] = ()
    task_pid: int = 0
    trial_pid: int = 0
    host: str = ""
    job_group: str = ""
    log_path: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["curve"] = list(self.curve)
        return out


@dataclass(frozen=True)
class StudyResult:
    """A finished study: every trial, the best complete one, and why it stopped."""

    study_name: str
    storage_url: str
    kind: str
    metric: str
    trials: tuple[TrialRecord, ...]
    best: TrialRecord | None
    seconds: float
    stop_reason: str

    def count(self, state: str) -> int:
        return sum(1 for t in self.trials if t.state == state)

    def to_dict(self) -> dict[str, Any]:
        return {
            "study_name": self.study_name,
            "storage": self.storage_url,
            "model": self.kind,
            "metric": self.metric,
            "seconds": self.seconds,
            "stop_reason": self.stop_reason,
            "best_trial": self.best.number if self.best else None,
            "best_value": self.best.value if self.best else None,
            "trials": [t.to_dict() for t in self.trials],
        }


def tpe_startup_trials(trials: int, parallelism: int) -> int:
    """Random trials before TPE models the results (see the module docstring)."""
    return min(10, max(2 * parallelism, trials // 3))


def pruner_args(trials: int, warmup_epochs: int) -> PrunerArgs:
    """The median pruner of a study of ``trials`` trials (see the module docstring)."""
    return PrunerArgs(warmup_epochs=warmup_epochs, startup_trials=min(5, max(2, trials // 4)))


def run_study(
    sc: SparkContext,
    args: StudyArgs,
    spec_for: SpecFn,
    *,
    parent_run_id: str,
    on_trial: Callable[[TrialRecord], None] | None = None,
) -> StudyResult:
    """Run the study; returns every trial's record and the best complete one.

    Args:
        sc: the SparkContext the trials run on.
        args: the study's settings.
        spec_for: builds a trial's TrainSpec from its settings, run directory and MLflow run id.
        parent_run_id: the MLflow run the trials' runs are nested under.
        on_trial: called (in this thread) with each trial's record as it ends.
    """
    import optuna

    quiet_optuna()
    name = args.study_name or f"{args.kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    pruner = pruner_args(args.trials, args.pruner_warmup_epochs)
    study = optuna.create_study(
        study_name=name,
        storage=make_storage(args.storage_url),
        direction="maximize",
        sampler=optuna.samplers.TPESampler(
            seed=args.seed, n_startup_trials=tpe_startup_trials(args.trials, args.parallelism), constant_liar=True
        ),
        pruner=make_pruner(pruner),
    )
    started_at = time.time()
    deadline = started_at + args.timeout_s
    runner = _TrialRunner(sc, args, name, pruner, spec_for, parent_run_id, deadline)
    records: list[TrialRecord] = []
    running: dict[Future[TrialRecord], Any] = {}
    stop_reason = ""
    pool = ThreadPoolExecutor(max_workers=args.parallelism, thread_name_prefix="sparktf-tune")
    try:
        while True:
            while len(running) < args.parallelism and not stop_reason:
                stop_reason = _stop_reason(len(records) + len(running), args, deadline, records)
                if stop_reason:
                    break
                trial = study.ask()
                params = suggest(trial, args.kind)
                # The storage id lets the trial's process report to this very trial
                # (optuna.trial.Trial(study, trial_id)); Optuna has no public getter for it.
                trial_id = int(trial._trial_id)
                running[pool.submit(runner.run, trial.number, trial_id, params)] = trial
            if not running:
                break
            done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                trial = running.pop(future)
                record = future.result()  # runner.run records failures instead of raising
                _tell(study, trial, record)
                records.append(record)
                if on_trial is not None:
                    on_trial(record)
    except BaseException:
        # Ctrl-C or a bug: stop every trial's Spark job (its training process dies with the
        # task) and record them as failed, so the study and MLflow show what happened.
        runner.cancel_all()
        finished, _ = wait(running, timeout=60)
        for future, trial in running.items():
            ended = future in finished and future.exception() is None
            _tell(study, trial, future.result() if ended else _interrupted(trial.number))
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    complete = [r for r in records if r.state == "complete" and r.value is not None]
    best = max(complete, key=lambda r: (r.value, -r.number)) if complete else None
    return StudyResult(
        study_name=name,
        storage_url=args.storage_url,
        kind=args.kind,
        metric=METRIC,
        trials=tuple(sorted(records, key=lambda r: r.number)),
        best=best,
        seconds=time.time() - started_at,
        stop_reason=stop_reason or "every trial ended",
    )


def _stop_reason(started: int, args: StudyArgs, deadline: float, records: list[TrialRecord]) -> str:
    """Why no further trial starts now, or ``""``."""
    if started >= args.trials:
        return f"all {args.trials} trials of tune.trials started"
    left = deadline - time.time()
    if left <= 0:
        return f"the time budget tune.timeout_s={args.timeout_s:g} s ran out"
    if records:
        typical = statistics.median(r.seconds for r in records)
        if typical > left:
            return (
                f"{left:.0f} s of tune.timeout_s were left, less than the median trial took ({typical:.0f} s): "
                "a new trial would have been cut short"
            )
    return ""


def _tell(study: Any, trial: Any, record: TrialRecord) -> None:
    from optuna.trial import TrialState

    for key, value in (
        ("epochs_run", record.epochs_run),
        ("seconds", round(record.seconds, 1)),
        ("budget_cut", record.budget_cut),
        ("mlflow_run_id", record.mlflow_run_id),
        ("task_pid", record.task_pid),
    ):
        trial.set_user_attr(key, value)
    if record.state == "complete" and record.value is not None:
        study.tell(trial, record.value)
    elif record.state == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    else:
        trial.set_user_attr("error", record.error[:2000])
        study.tell(trial, state=TrialState.FAIL)


def _interrupted(number: int) -> TrialRecord:
    return TrialRecord(number, "failed", {}, None, 0, 0.0, error="interrupted: the study was stopped")


class _TrialRunner:
    """Runs one trial (in a pool thread): MLflow run, Spark task, record."""

    def __init__(
        self,
        sc: SparkContext,
        args: StudyArgs,
        study_name: str,
        pruner: PrunerArgs,
        spec_for: SpecFn,
        parent_run_id: str,
        deadline: float,
    ) -> None:
        self.sc = sc
        self.args = args
        self.study_name = study_name
        self.pruner = pruner
        self.spec_for = spec_for
        self.parent_run_id = parent_run_id
        self.deadline = deadline
        self._groups: set[str] = set()
        self._lock = threading.Lock()

    def group(self, number: int) -> str:
        return f"sparktf-tune-{self.study_name}-{number}"

    def cancel_all(self) -> None:
        with self._lock:
            groups = sorted(self._groups)
        for group in groups:
            self.sc.cancelJobGroup(group)

    def run(self, number: int, trial_id: int, params: dict[str, Any]) -> TrialRecord:
        t0 = time.time()
        tracker: Any = None
        try:
            tracker = self._start_run(number, params)
            result = self._run_task(number, trial_id, params, tracker.run_id)
        except Exception as exc:  # noqa: BLE001 - one failed trial must not end the study
            result = {"state": "failed", "error": f"{type(exc).__name__}: {_first_lines(str(exc))}"}
        record = _record(
            number, params, result, time.time() - t0, tracker.run_id if tracker else "", self.group(number)
        )
        if tracker is not None:
            try:
                self._finish_run(tracker, record, result)
            except Exception as exc:  # noqa: BLE001 - the trial's result stands without its MLflow notes
                record = _with_error(record, f"(MLflow: {type(exc).__name__}: {exc})")
        return record

    def _start_run(self, number: int, params: Mapping[str, Any]) -> Any:
        from sparktf.training.tracking import RunTracker

        args = self.args
        tracker = RunTracker(args.tracking_uri, args.experiment, args.artifact_root)
        tracker.start(
            f"{args.kind}-trial-{number}",
            tags={
                PARENT_RUN_TAG: self.parent_run_id,
                "model_kind": args.kind,
                "sparktf.tune.study": self.study_name,
                "sparktf.tune.trial": str(number),
                **args.tags,
            },
        )
        tracker.log_params({"train": dict(params), "tune": {"trial": number, "study": self.study_name}})
        return tracker

    def _run_task(self, number: int, trial_id: int, params: Mapping[str, Any], run_id: str) -> dict[str, Any]:
        import os

        args = self.args
        trial_dir = os.path.join(args.tune_dir, self.study_name, f"trial-{number:03d}")
        task = TrialTask(
            number=number,
            trial_id=trial_id,
            study_name=self.study_name,
            storage_url=args.storage_url,
            pruner=self.pruner,
            spec=self.spec_for(params, os.path.join(trial_dir, "run"), run_id),
            trial_dir=trial_dir,
            stop_at=self.deadline,
            threads=args.threads_per_trial,
            hide_gpus=args.hide_gpus,
        )
        group = self.group(number)
        with self._lock:
            self._groups.add(group)
        try:
            # Spark's job group is per thread (PySpark pins Python threads to JVM threads).
            self.sc.setJobGroup(group, f"sparktf tune {self.study_name}: trial {number}", interruptOnCancel=True)
            rows = self.sc.parallelize([task], 1).mapPartitions(spark_task).collect()
        finally:
            with self._lock:
                self._groups.discard(group)
        if len(rows) != 1 or not isinstance(rows[0], dict):
            return {"state": "failed", "error": f"the trial's Spark task returned {len(rows)} results, not 1"}
        result: dict[str, Any] = rows[0]
        return result

    def _finish_run(self, tracker: Any, record: TrialRecord, result: Mapping[str, Any]) -> None:
        metrics: dict[str, float] = {"epochs_run": float(record.epochs_run), "trial_seconds": record.seconds}
        if record.value is not None:
            metrics[f"best_{METRIC}"] = record.value
        tracker.log_metrics(metrics)
        tags = {
            "sparktf.tune.state": record.state,
            "sparktf.tune.budget_cut": str(record.budget_cut).lower(),
            "sparktf.tune.task_pid": str(record.task_pid),
            "sparktf.tune.host": record.host,
        }
        if record.pruned_at is not None:
            tags["sparktf.tune.pruned_after_epoch"] = str(record.pruned_at)
        if record.error:
            tags["sparktf.failure"] = record.error[:4000]
        tracker.set_tags(tags)
        if result.get("traceback"):
            tracker.log_text(str(result["traceback"]), "trial_traceback.txt")
        tracker.end("FAILED" if record.state == "failed" else "FINISHED")


def _record(
    number: int, params: dict[str, Any], result: Mapping[str, Any], seconds: float, run_id: str, group: str
) -> TrialRecord:
    state = str(result.get("state", "failed"))
    history = result.get("history") or {}
    curve = tuple(float(v) for v in history.get(METRIC, ()))
    value = result.get("value")
    if value is None:
        finite = [v for v in curve if math.isfinite(v)]
        value = max(finite) if finite else None
    error = str(result.get("error") or "")
    if result.get("hint"):
        error += f" ({result['hint']})"
    tail = result.get("log_tail") or []
    if state == "failed" and tail and "traceback" not in result:
        error += "\nLast lines of its log:\n" + "\n".join(f"  {line}" for line in tail[-15:])
    pruned_at = result.get("pruned_at")
    return TrialRecord(
        number=number,
        state=state if state in ("complete", "pruned", "failed") else "failed",
        params=dict(params),
        value=float(value) if value is not None else None,
        epochs_run=int(result.get("epochs_run") or len(curve)),
        seconds=seconds,
        pruned_at=int(pruned_at) + 1 if pruned_at is not None else None,
        budget_cut=bool(result.get("budget_cut", False)),
        error=error,
        mlflow_run_id=run_id,
        curve=curve,
        task_pid=int(result.get("task_pid") or 0),
        trial_pid=int(result.get("pid") or 0),
        host=str(result.get("host") or ""),
        job_group=group,
        log_path=str(result.get("log_path") or ""),
    )


def _with_error(record: TrialRecord, note: str) -> TrialRecord:
    import dataclasses

    return dataclasses.replace(record, error=(record.error + " " + note).strip())


def _first_lines(text: str, limit: int = 800) -> str:
    """The start of a long error (a Py4J error holds the whole Java stack)."""
    lines = [line for line in text.splitlines() if line.strip()][:6]
    out = "\n".join(lines)
    return out if len(out) <= limit else out[:limit] + " …"
