"""``sparktf stream``: the configuration turned into the streaming job's arguments, and the job's loop.

:func:`stream_args` is pure (it reads the config only), so what a configuration streams can
be checked without Spark; :func:`run_stream` starts the query of
:mod:`sparktf.online.stream`, prints a progress line now and then, keeps a status file for
``sparktf live`` and stops cleanly on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sparktf.config import Config, OnlineConfig, StreamConfig
from sparktf.errors import ConfigError, StreamError
from sparktf.online.stream import BatchReport, UserRules
from sparktf.stages._online import event_rules, landing_dir, online_sqlite_path

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["StreamArgs", "StreamTotals", "run_stream", "stream_args"]

#: Seconds between two progress lines while events flow.
PROGRESS_EVERY_S = 10.0


@dataclass(frozen=True)
class StreamArgs:
    """What the streaming job runs with.

    Attributes:
        settings: the ``[stream]`` section.
        rules: the per-user rules (``[data]``'s event rules, ``features.max_history``,
            ``features.positive_event_types``, ``features.session_gap_minutes``, ``stream.watermark_s``, ``features.session_breaks``).
        landing: the landing directory the server writes.
        checkpoint: the query's checkpoint.
        events_path, quarantine_path: ``data/live/events`` and ``data/live/quarantine``.
        online: the ``[online]`` section (where the states go).
        online_path: the SQLite file of ``online.store = "sqlite"``.
        status_file: the JSON file ``sparktf live`` reads the job's progress from.
    """

    settings: StreamConfig
    rules: UserRules
    landing: str
    checkpoint: str
    events_path: str
    quarantine_path: str
    online: OnlineConfig
    online_path: str
    status_file: str


def stream_args(cfg: Config) -> StreamArgs:
    """The streaming job of ``cfg``. The landing directory must be local (the server writes it)."""
    landing = landing_dir(cfg)
    if not landing:
        cfg.paths.local("data", "landing")  # raises, naming the fix
    rules = UserRules(
        events=event_rules(cfg),
        max_history=cfg.features.max_history,
        positive_event_types=cfg.features.positive_event_types,
        session_gap_s=cfg.features.session_gap_minutes * 60.0,
        watermark_s=cfg.stream.watermark_s,
        session_breaks=cfg.features.session_breaks,
    )
    paths = cfg.paths
    return StreamArgs(
        settings=cfg.stream,
        rules=rules,
        landing=landing,
        checkpoint=paths.stream_checkpoint,
        events_path=paths.live_events,
        quarantine_path=paths.live_quarantine,
        online=cfg.online,
        online_path=online_sqlite_path(cfg),
        status_file=paths.state_file("stream.json"),
    )


@dataclass
class StreamTotals:
    """What the job did since it started (the status file's content)."""

    started: float
    pid: int
    batches: int = 0
    events: int = 0
    quarantined: int = 0
    replayed: int = 0
    last_batch_id: int = -1
    last_batch_time: float = 0.0
    state: str = "starting"


def run_stream(cfg: Config, *, available_now: bool = False, out: Console | None = None) -> StreamTotals:
    """Run the streaming job until SIGTERM/Ctrl-C (or, with ``available_now``, until what has
    landed is processed).

    Raises:
        ConfigError: ``stream.partitions`` differs from the checkpoint's.
        StreamError: the query failed.
    """
    from sparktf.online.store import open_store
    from sparktf.online.stream import checkpoint_partitions, start_query
    from sparktf.stages._common import console, spark_for

    args = stream_args(cfg)
    out = out or console()
    made = checkpoint_partitions(args.checkpoint)
    if made is not None and made != args.settings.partitions:
        raise ConfigError(
            f"stream.partitions = {args.settings.partitions}, but the checkpoint {args.checkpoint} was made with "
            f"{made}; Spark cannot re-partition a stream's state.",
            hint=f"Set stream.partitions = {made}, or delete the checkpoint to start over "
            "(the landing files still there are read again; the online store refuses batches it has).",
        )
    totals = StreamTotals(started=time.time(), pid=os.getpid())
    _write_status(args.status_file, totals)
    store = open_store(args.online, args.online_path)
    spark = spark_for(cfg)
    shown = {"at": time.monotonic(), "events": 0}

    def on_batch(rep: BatchReport) -> None:
        totals.batches += 1
        totals.events += rep.events
        totals.quarantined += sum(rep.quarantined.values())
        totals.replayed += 0 if rep.applied else 1
        totals.last_batch_id, totals.last_batch_time, totals.state = rep.batch_id, time.time(), "running"
        _write_status(args.status_file, totals)
        now = time.monotonic()
        if now - shown["at"] >= PROGRESS_EVERY_S and totals.events != shown["events"]:
            out.print(
                f"  stream: batch {rep.batch_id}, {totals.events:,} events applied, "
                f"{totals.quarantined:,} quarantined since start"
            )
            shown.update(at=now, events=totals.events)

    stop = threading.Event()
    previous = _on_stop_signals(stop)
    try:
        query = start_query(
            spark,
            landing=args.landing,
            checkpoint=args.checkpoint,
            events_path=args.events_path,
            quarantine_path=args.quarantine_path,
            rules=args.rules,
            store=store,
            trigger_interval_s=args.settings.trigger_interval_s,
            max_files_per_trigger=args.settings.max_files_per_trigger,
            partitions=args.settings.partitions,
            clean_landing=args.settings.clean_landing,
            available_now=available_now,
            on_batch=on_batch,
        )
        out.print(
            f"sparktf stream: {args.landing} → {args.events_path} and the {args.online.store} online store "
            f"(trigger {args.settings.trigger_interval_s:g} s, checkpoint {args.checkpoint})"
        )
        totals.state = "running"
        _write_status(args.status_file, totals)
        if not _run_until_stopped(query, stop):
            # SIGTERM sent to the whole process group (a service manager, `kill -- -PGID`)
            # reaches Spark's JVM too, and it exits before the query can be stopped. Nothing
            # is lost: the checkpoint holds every batch the store has; the next run redoes the
            # one in flight, and the store skips it if it was applied.
            totals.state = "stopped"
            out.print(
                "sparktf stream: Spark's JVM had already exited (the stop signal reached it too); "
                "the next start resumes from the checkpoint."
            )
            return totals
        error = query.exception()
        if error is not None:
            totals.state = "failed"
            raise StreamError(
                f"The streaming query stopped: {str(error).splitlines()[0][:500]}",
                hint="See <workdir>/logs/sparktf.log; rerun `sparktf stream`: it resumes from its checkpoint.",
            )
        totals.state = "stopped"
    finally:
        _restore(previous)
        _write_status(args.status_file, totals)
        store.close()
    out.print(
        f"sparktf stream: stopped after {totals.batches:,} batch{'' if totals.batches == 1 else 'es'}: "
        f"{totals.events:,} events applied, "
        f"{totals.quarantined:,} quarantined (in {args.quarantine_path})."
    )
    return totals


def _run_until_stopped(query: Any, stop: threading.Event) -> bool:
    """Wait for ``query`` to end or for a stop signal (then stop it). False when Spark's JVM
    went away because the stop signal reached it too.

    Raises:
        StreamError: the JVM went away with no stop signal (killed, or out of memory).
    """
    from py4j.protocol import Py4JError

    try:
        while query.isActive and not stop.is_set():
            query.awaitTermination(0.5)
        if query.isActive:
            query.stop()
        return True
    except (Py4JError, ConnectionError) as exc:
        # The signal handler runs once the interrupted call returns: give it a moment.
        if stop.wait(2.0):
            return False
        raise StreamError(
            f"Spark's JVM exited under the streaming query ({type(exc).__name__}).",
            hint="See <workdir>/logs/sparktf.log (out of memory? raise spark.driver_memory); rerun "
            "`sparktf stream`: it resumes from its checkpoint and applies no event twice.",
        ) from exc


def _write_status(path: str, totals: StreamTotals) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(asdict(totals), fh)
    os.replace(tmp, path)


def _on_stop_signals(stop: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
