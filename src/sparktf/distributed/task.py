"""The body of each Spark barrier task: one TensorFlow worker process, supervised.

Per task, in order:

1. connect to the driver's log server (``hello``: rank, attempt, host);
2. work out ``CUDA_VISIBLE_DEVICES`` from the task's Spark GPU resources (or ``""``);
3. reserve a port (:mod:`~sparktf.distributed.ports`), ``allGather`` every
   worker's ``host:port`` and build ``TF_CONFIG`` (:mod:`~sparktf.distributed.tf_config`);
4. start :mod:`sparktf.distributed.worker` as a child process and stream its
   output, line by line, to the driver;
5. when the child reports ``done`` or stops without it (then a
   :class:`~sparktf.distributed.result.WorkerFailure` goes to the driver, which
   aborts the other workers), ``allGather`` every task's verdict: only if all
   are done is the child released to exit; otherwise it is killed, keeping the
   chief's backup for the relaunch. The task returns a row either way.

The task imports neither TensorFlow nor the user's code; both live in the child.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from sparktf.distributed.gpus import cuda_visible_devices, gpu_amount_key, gpus_for_worker, parse_gpu_addresses
from sparktf.distributed.logs import LogClient, worker_prefix
from sparktf.distributed.ports import REUSE_PORT_ENV, reserve_port
from sparktf.distributed.ranks import (
    ENV_ATTEMPT,
    ENV_BACKUP_EVERY_STEPS,
    ENV_CPU_AFFINITY,
    ENV_RUN_DIR,
    ENV_RUN_ID,
    ENV_SCRATCH_DIR,
)
from sparktf.distributed.result import WorkerFailure, WorkerOutcome, WorkerTiming
from sparktf.distributed.tf_config import TF_CONFIG_ENV, build_tf_config, format_address, host_of
from sparktf.distributed.worker import EXIT_ORPHANED, WorkerSpec
from sparktf.errors import LauncherError, TrainingFailedError
from sparktf.tfenv import LEGACY_KERAS_ENV

__all__ = [
    "TaskPlan",
    "child_env",
    "decode_failures",
    "encode_failure",
    "failure_of",
    "pinned_cpus",
    "run_barrier_task",
    "thread_env",
    "usable_cores",
]

_MARK, _END = "<<sparktf-failure>>", "<<end-sparktf-failure>>"


@dataclass(frozen=True)
class TaskPlan:
    """Everything a barrier task needs, shipped from the driver (small and picklable)."""

    num_workers: int
    attempt: int
    run_id: str
    run_dir: str
    payload: bytes
    strategy: str | bytes
    max_value_bytes: int
    backup_every_steps: int
    use_gpu: bool
    gpu_resource_name: str
    gpu_slots: int | None
    log_address: tuple[str, int]
    log_token: str
    env: tuple[tuple[str, str], ...] = ()
    tail_lines: int = 80
    release_timeout_s: float = 120.0
    worker_threads: int = 0
    executor_cores: int | None = None
    pin_cpus: bool = False


def thread_env(
    *, fixed: int, task_cpus: int, executor_cores: int | None, tasks_here: int, usable: int
) -> dict[str, str]:
    """TensorFlow's thread pools for one worker: its share of its executor's cores.

    Why: TensorFlow sizes both pools to every core of the machine, so two workers on two
    cores ran 107-117 threads each and switched contexts 600-1,300 times a run against
    130-180 for one worker; one intra-op and one inter-op thread each saved about 19% of
    the step (issue #22). The share is the executor's cores over the barrier tasks this
    run put on that executor (``executor_cores // tasks_here``), never below
    ``spark.task.cpus`` (what Spark promised the task) and never above the cores this
    process may run on (``usable``). Without the executor's size (a cluster that decides
    it), ``spark.task.cpus``. Inter-op: one thread per worker with one core, two with
    more (the graph of a training step has little to run side by side).

    Args:
        fixed: ``train.worker_threads``; > 0 overrides the share.
        task_cpus: ``spark.task.cpus`` of the task.
        executor_cores: the executor's cores, or None.
        tasks_here: barrier tasks of this run on this task's executor (itself included).
        usable: cores this process may run on (its CPU affinity).
    """
    if fixed > 0:
        intra = fixed
    else:
        intra = max(1, task_cpus)
        if executor_cores:
            intra = max(intra, executor_cores // max(1, tasks_here))
        intra = max(1, min(intra, usable))
    return {"TF_NUM_INTRAOP_THREADS": str(intra), "TF_NUM_INTEROP_THREADS": str(min(intra, 2))}


def pinned_cpus(usable: Sequence[int], slot: int, share: int) -> list[int]:
    """The CPUs of the worker in ``slot`` (its place among this run's tasks on its executor):
    ``share`` consecutive ones of ``usable`` (sorted), slot 0 first, wrapping around when
    the slots ask for more CPUs than there are. Two workers on ``local[2]`` with one core
    each get one CPU each, so each runs as on a machine of its own (issue #22)."""
    cpus = sorted(usable)
    if not cpus:
        return []
    share = max(1, min(share, len(cpus)))
    return [cpus[(slot * share + i) % len(cpus)] for i in range(share)]


def _threads_of(value: str | None, fallback: int) -> int:
    """The intra-op threads the worker will run: the environment's (the user's wins), or
    ``fallback`` when it is unset, 0 (TensorFlow's own choice) or not a whole number."""
    try:
        number = int(value or 0)
    except ValueError:
        return fallback
    return number if number > 0 else fallback


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def child_env(
    base: Mapping[str, str],
    plan: TaskPlan,
    *,
    tf_config: Mapping[str, Any] | None,
    cuda: str,
    scratch_dir: str,
    threads: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The TF worker's environment: the task's, the user's extras, then the launcher's own
    settings; ``threads`` (:func:`thread_env`) only where neither of the first two sets them."""
    env = dict(base)
    env.update(dict(plan.env))
    for key, value in (threads or {}).items():
        env.setdefault(key, value)
    env.update(REUSE_PORT_ENV)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(
        {
            LEGACY_KERAS_ENV: "1",
            "CUDA_VISIBLE_DEVICES": cuda,
            "PYTHONUNBUFFERED": "1",
            ENV_RUN_DIR: plan.run_dir,
            ENV_RUN_ID: plan.run_id,
            ENV_ATTEMPT: str(plan.attempt),
            ENV_SCRATCH_DIR: scratch_dir,
            ENV_BACKUP_EVERY_STEPS: str(plan.backup_every_steps),
        }
    )
    if tf_config is None:
        env.pop(TF_CONFIG_ENV, None)
    else:
        env[TF_CONFIG_ENV] = json.dumps(tf_config)
    return env


def encode_failure(failure: WorkerFailure) -> str:
    """A failure as text that survives inside Spark's task-failure message."""
    return _MARK + json.dumps(dataclasses.asdict(failure)) + _END


def decode_failures(text: str) -> list[WorkerFailure]:
    """Failures embedded in a Spark error message by :func:`encode_failure`."""
    out = []
    for m in re.finditer(re.escape(_MARK) + r"(.*?)" + re.escape(_END), text, re.DOTALL):
        try:
            data = json.loads(m.group(1))
            data["tail"] = tuple(data.get("tail", ()))
            out.append(WorkerFailure(**data))
        except (ValueError, TypeError):
            continue
    return out


def failure_of(
    *,
    rank: int,
    host: str,
    attempt: int,
    returncode: int | None,
    outcome: WorkerOutcome | None,
    tail: Iterable[str],
    aborted: bool,
    stuck: bool = False,
) -> WorkerFailure:
    """Classify how a TF worker process stopped without reporting success."""
    now = time.time()
    lines = tuple(tail)
    if stuck:
        error = (
            "still running long after the other workers had finished, most likely blocked in a "
            "collective operation that only it runs"
        )
        return WorkerFailure(rank, host, attempt, "stuck", error, lines, returncode, None, now)
    if aborted:
        return WorkerFailure(rank, host, attempt, "aborted", "stopped by the launcher", lines, returncode, None, now)
    if outcome is not None and not outcome.ok:
        tb = tuple((outcome.traceback or "").rstrip("\n").splitlines()[-40:])
        return WorkerFailure(rank, host, attempt, "raised", outcome.error or "an exception", tb, returncode, None, now)
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return WorkerFailure(rank, host, attempt, "died", f"killed by {name}", lines, returncode, name, now)
    if returncode == EXIT_ORPHANED:
        error = "stopped because its Spark task went away"
    else:
        error = f"exited with code {returncode} without a Python exception (os._exit, or a TensorFlow abort)"
    return WorkerFailure(rank, host, attempt, "died", error, lines, returncode, None, now)


def _cuda_for_task(plan: TaskPlan, resources: Mapping[str, Any], rank: int) -> str:
    if not plan.use_gpu:
        return ""
    name = plan.gpu_resource_name
    if name not in resources:
        raise LauncherError(
            f"use_gpu=True but this Spark task was given no {name!r} resource (it has: {sorted(resources) or 'none'}).",
            hint=f"Set {gpu_amount_key(name)} and the executor's GPU discovery script, or use_gpu=False.",
            rank=rank,
        )
    assigned = parse_gpu_addresses(resources[name].addresses, resource_name=name)
    if plan.gpu_slots:
        assigned = gpus_for_worker(assigned, num_slots=plan.gpu_slots, num_tasks=plan.num_workers, rank=rank)
    return cuda_visible_devices(assigned, os.environ.get("CUDA_VISIBLE_DEVICES"))


def _pump(stream: IO[bytes], tail: deque[str], client: LogClient) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        tail.append(line)
        client.line(line)


def _read_outcome(path: str) -> WorkerOutcome | None:
    try:
        with open(path, "rb") as f:
            outcome: WorkerOutcome = pickle.load(f)  # noqa: S301 - written by our own child process
    except (OSError, EOFError, pickle.UnpicklingError):
        return None
    return outcome


def _local_dir() -> str | None:
    # Spark cleans its local dirs when the executor stops, even if this task is killed.
    first = os.environ.get("SPARK_LOCAL_DIRS", "").split(",")[0]
    return first if first and os.path.isdir(first) else None


class _Child:
    """One TF worker process: started, streamed, and either released or killed."""

    def __init__(self, plan: TaskPlan, client: LogClient, env: dict[str, str], workdir: str) -> None:
        self.plan = plan
        self.client = client
        self.outcome_path = os.path.join(workdir, "outcome.pickle")
        spec_path = os.path.join(workdir, "spec.pickle")
        with open(spec_path, "wb") as f:
            pickle.dump((WorkerSpec(plan.strategy, plan.max_value_bytes, self.outcome_path), plan.payload), f)
        control_r, control_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sparktf.distributed", spec_path, str(control_w), str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=workdir,
                pass_fds=(control_w,),
            )
        finally:
            os.close(control_w)
        self.control = os.fdopen(control_r, "rb")
        self.started = time.time()
        self.tail: deque[str] = deque(maxlen=plan.tail_lines)
        self.aborted = threading.Event()
        self.stuck = threading.Event()
        assert self.proc.stdout is not None
        self.pump = threading.Thread(
            target=_pump, args=(self.proc.stdout, self.tail, client), name="sparktf-pump", daemon=True
        )
        self.pump.start()
        client.on_abort(self.abort)
        client.on_dump(self.dump_and_stop)

    def dump_and_stop(self) -> None:
        """Print every thread's Python stack (faulthandler, even inside a blocked TF op), then stop."""
        self.stuck.set()
        with contextlib.suppress(OSError):
            os.kill(self.proc.pid, signal.SIGUSR1)
        time.sleep(3)  # let the dump travel through the pump
        self.kill()

    def abort(self) -> None:
        self.aborted.set()
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.kill()
            self.proc.wait()
        self.pump.join(timeout=10)

    def wait_done(self, *, rank: int, host: str) -> WorkerFailure | None:
        """Block until the worker reports ``done`` (``None``) or stops without it (its failure)."""
        said = self.control.readline()  # b"done\n", or b"" once the process has exited
        self.control.close()
        if said.startswith(b"done") and not self.aborted.is_set():
            self.client.done()
            return None
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.pump.join(timeout=10)
        return failure_of(
            rank=rank,
            host=host,
            attempt=self.plan.attempt,
            returncode=self.proc.returncode,
            outcome=_read_outcome(self.outcome_path),
            tail=self.tail,
            aborted=self.aborted.is_set(),
            stuck=self.stuck.is_set(),
        )

    def release(self, *, rank: int, host: str) -> tuple[WorkerOutcome | None, WorkerFailure | None]:
        """Let a finished worker exit (every worker is done) and read what it reported."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=self.plan.release_timeout_s)
        except subprocess.TimeoutExpired:
            self.tail.append("sparktf: worker did not exit after release; killed")
        self.kill()
        outcome = _read_outcome(self.outcome_path)
        if outcome is not None and outcome.ok:
            return outcome, None
        failure = failure_of(
            rank=rank,
            host=host,
            attempt=self.plan.attempt,
            returncode=self.proc.returncode,
            outcome=outcome,
            tail=self.tail,
            aborted=False,
        )
        return None, failure


def _spark_failure(failure: WorkerFailure) -> TrainingFailedError:
    """For when the driver cannot be told: Spark carries the record in its task-failure message."""
    return TrainingFailedError(
        f"sparktf worker {failure.rank} ({failure.host}) {failure.error} {encode_failure(failure)}",
        rank=failure.rank,
        host=failure.host,
    )


def run_barrier_task(plan: TaskPlan, _rows: Iterable[Any]) -> Iterator[bytes]:
    """``mapPartitions`` body of the barrier stage.

    Yields one pickled ``(WorkerOutcome | None, WorkerTiming | None, WorkerFailure | None)``.
    A worker failure that reached the driver ends the task normally, with the
    failure in its row: the stage then finishes without Spark's task-failure
    error logs, and the survivors stop because the driver aborts them. Only when
    the driver cannot be told does the task raise, and Spark's stage abort stops
    the others.
    """
    from pyspark import BarrierTaskContext

    task_started = time.time()
    ctx = BarrierTaskContext.get()
    rank = ctx.partitionId()
    host = host_of(ctx.getTaskInfos()[rank].address)
    prefix = worker_prefix(rank, plan.attempt)

    def echo(text: str) -> None:
        # Into the executor's own log, when the driver is not listening.
        print(f"{prefix} {text}", file=sys.stderr, flush=True)

    client = LogClient.connect(
        plan.log_address, token=plan.log_token, rank=rank, attempt=plan.attempt, host=host, echo=echo
    )
    workdir = tempfile.mkdtemp(prefix=f"sparktf-{plan.run_id}-w{rank}-", dir=_local_dir())
    child: _Child | None = None
    outcome: WorkerOutcome | None = None
    try:
        try:
            cuda = _cuda_for_task(plan, ctx.resources(), rank)
        except LauncherError as exc:
            # Before the first allGather: the others wait there until Spark stops the stage.
            setup = WorkerFailure(rank, host, plan.attempt, "raised", f"LauncherError: {exc}", at=time.time())
            client.failure(setup)
            raise _spark_failure(setup) from None
        scratch = os.path.join(workdir, "scratch")
        os.makedirs(scratch)
        with reserve_port() as port:
            addresses = ctx.allGather(format_address(host, port))
            infos = ctx.getTaskInfos()
            threads = thread_env(
                fixed=plan.worker_threads,
                task_cpus=ctx.cpus(),
                executor_cores=plan.executor_cores,
                tasks_here=sum(1 for info in infos if info.address == infos[rank].address),
                usable=usable_cores(),
            )
            env = child_env(
                os.environ,
                plan,
                tf_config=build_tf_config(addresses, rank),
                cuda=cuda,
                scratch_dir=scratch,
                threads=threads,
            )
            if plan.pin_cpus and hasattr(os, "sched_getaffinity"):
                here = [i for i, info in enumerate(infos) if info.address == infos[rank].address]
                share = _threads_of(env.get("TF_NUM_INTRAOP_THREADS"), int(threads["TF_NUM_INTRAOP_THREADS"]))
                cpus = pinned_cpus(sorted(os.sched_getaffinity(0)), here.index(rank), share)
                env[ENV_CPU_AFFINITY] = ",".join(str(c) for c in cpus)
            child = _Child(plan, client, env, workdir)
            failure = child.wait_done(rank=rank, host=host)
            if failure is not None and failure.kind != "aborted" and not client.failure(failure):
                child.kill()
                raise _spark_failure(failure)
            # No worker exits (or drops its backup) unless every worker finished.
            verdicts = ctx.allGather("ok" if failure is None else "failed")
            if failure is None and all(v == "ok" for v in verdicts):
                outcome, failure = child.release(rank=rank, host=host)
                if failure is not None:
                    client.failure(failure)
            else:
                child.kill()
                if failure is None:
                    failed = [i for i, v in enumerate(verdicts) if v != "ok"]
                    failure = WorkerFailure(
                        rank, host, plan.attempt, "aborted", f"stopped because worker(s) {failed} failed"
                    )
        timing = WorkerTiming(
            rank=rank,
            host=host,
            task_started=task_started,
            process_started=child.started,
            train_started=outcome.train_started if outcome else 0.0,
            train_finished=outcome.train_finished if outcome else 0.0,
            task_finished=time.time(),
        )
        yield pickle.dumps((outcome, timing, failure))
    finally:
        if child is not None:
            child.kill()
        client.close()
        shutil.rmtree(workdir, ignore_errors=True)
