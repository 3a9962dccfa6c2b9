"""The pipeline's stages in order, and the runner that makes reruns cheap.

``sparktf run`` walks :data:`STAGES`. Each stage is a function ``run(cfg) -> record``
of its module in this package; the record (a frozen dataclass of
:mod:`sparktf.stages.state`) is written to ``state/<stage>.json`` and is how later
stages, the summary and ``--from`` reruns learn what an earlier stage made.

Resuming: after a stage runs, :class:`PipelineRunner` records two fingerprints in
``state/pipeline.json``: its *input* fingerprint (the config sections it reads, plus
the output fingerprint of the stage before it, plus, for the first stage, a listing
of the user's event files) and its *output* fingerprint (a listing of the files it
wrote: name, size and modification time of each, so a file rewritten or edited in
place, even at the same size, changes it). A rerun skips a stage whose input
fingerprint is unchanged and whose outputs are still exactly there; ``--from STAGE``
forces that stage and every one after it. A local SQLite tracking store that has
disappeared makes the stages that wrote into it (train, evaluate, register) run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sparktf.config import Config, config_to_dict
from sparktf.errors import PipelineError
from sparktf.stages import evaluate, features, generate, index, recommend, register, tfrecords, train, validate
from sparktf.stages.state import StageResult, to_dict, write_result

__all__ = [
    "STAGES",
    "PipelineRunner",
    "Stage",
    "StageRecord",
    "get_stage",
    "input_fingerprint",
    "listing_fingerprint",
    "stage_names",
]

StageFn = Callable[[Config], StageResult]


@dataclass(frozen=True)
class Stage:
    """One pipeline stage.

    Attributes:
        name: as in the README picture and ``sparktf run --from``.
        summary, reads, writes: one line each for the plan and ``--help``.
        run: the stage function (``sparktf.stages.<name>.run``).
        sections: the config sections whose change reruns the stage.
        outputs: paths under the workdir it writes (``state/...`` are state files).
        uses_tracking_store: it writes into the MLflow store, so a lost local store reruns it.
    """

    name: str
    summary: str
    reads: str
    writes: str
    run: StageFn
    sections: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    uses_tracking_store: bool = False


STAGES: tuple[Stage, ...] = (
    Stage(
        "generate",
        "Generate the synthetic flash-sale clickstream, or read your events",
        "config",
        "data/raw",
        generate.run,
        sections=("data", "generator"),
        outputs=("data/raw",),
    ),
    Stage(
        "validate",
        "Validate events; bad rows go to the quarantine with a reason",
        "data/raw",
        "data/events, data/quarantine",
        validate.run,
        sections=("data",),
        outputs=("data/events", "data/quarantine"),
    ),
    Stage(
        "features",
        "Sessions, vocabularies, sequences and leave-last-out splits",
        "data/events, data/live/events",
        "data/features",
        features.run,
        sections=("features",),
        outputs=("data/features",),
    ),
    Stage(
        "tfrecords",
        "Write training sets as TFRecords",
        "data/features",
        "tfrecords/",
        tfrecords.run,
        sections=("tfrecord",),
        outputs=("tfrecords",),
    ),
    Stage(
        "train",
        "Distributed training on Spark (the models of train.models)",
        "tfrecords/",
        "models/, MLflow runs",
        train.run,
        sections=("train", "tracking"),
        outputs=("models",),
        uses_tracking_store=True,
    ),
    Stage(
        "evaluate",
        "Full-catalogue evaluation against baselines",
        "models/, data/features",
        "MLflow metrics, the quality table",
        evaluate.run,
        sections=("evaluation",),
        uses_tracking_store=True,
    ),
    Stage(
        "register",
        "Register the model and run the validation gate",
        "MLflow runs",
        "registry version, champion alias",
        register.run,
        sections=("gate", "evaluation"),
        uses_tracking_store=True,
    ),
    Stage(
        "index",
        "Build the ScaNN index over item embeddings",
        "models/",
        "index/",
        index.run,
        sections=("index",),
        outputs=("index",),
    ),
    Stage(
        "recommend",
        "Batch top-K for every user on Spark",
        "models/, index/",
        "recommendations/",
        recommend.run,
        sections=("batch",),
        outputs=("recommendations",),
    ),
)


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


def get_stage(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise PipelineError(f"Unknown stage {name!r}; stages are: {', '.join(stage_names())}.")


# --------------------------------------------------------------------------- fingerprints


def listing_fingerprint(paths: list[str]) -> str:
    """Hash of every file under ``paths``: relative name, size and modification time
    (``missing`` if absent).

    Spark and TensorFlow give rewritten files new names, and an edit in place changes
    the modification time, so a changed file changes this even at the same size; an
    untouched output keeps it. Reading the files' contents would cost as much as the
    stages themselves on large data.
    """
    h = hashlib.sha256()
    for root in paths:
        h.update(f"\0{root}\0".encode())
        if os.path.isfile(root):
            st = os.stat(root)
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
            continue
        if not os.path.isdir(root):
            h.update(b"missing")
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith(".") and name.endswith(".crc"):
                    continue
                full = os.path.join(dirpath, name)
                st = os.stat(full)
                h.update(f"{os.path.relpath(full, root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def input_fingerprint(cfg: Config, stage: Stage, upstream: str) -> str:
    """The config sections ``stage`` reads, the fingerprint of what it reads, and the code version."""
    from sparktf.version import __version__

    h = hashlib.sha256()
    sections = {name: config_to_dict(getattr(cfg, name), redact_secrets=True) for name in stage.sections}
    h.update(
        json.dumps(
            {"stage": stage.name, "sparktf": __version__, "config": sections}, sort_keys=True, default=str
        ).encode()
    )
    h.update(upstream.encode())
    if stage.name == "generate" and cfg.data.source == "path" and "://" not in cfg.data.path:
        h.update(listing_fingerprint([cfg.data.path]).encode())
    if stage.name == "features" and cfg.paths.is_local:
        # The streaming job appends validated live events: new ones rebuild the features
        # (and so retrain), with nothing upstream rerun.
        h.update(listing_fingerprint([cfg.paths.live_events]).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class StageRecord:
    stage: str
    input_fingerprint: str
    output_fingerprint: str
    finished_at: float
    seconds: float
    result: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- runner


class PipelineRunner:
    """Runs stages in order, skipping those whose inputs and outputs are unchanged.

    Args:
        cfg: the run's config.
        on_event: called as ``on_event(kind, stage, detail)`` with kind ``start``,
            ``skip`` or ``done`` (the CLI draws its progress display from these).
        stages: the stages to run (default :data:`STAGES`).
    """

    def __init__(
        self,
        cfg: Config,
        on_event: Callable[[str, Stage, dict[str, Any]], None] | None = None,
        *,
        stages: tuple[Stage, ...] | None = None,
    ) -> None:
        self.cfg = cfg
        self.stages = STAGES if stages is None else stages
        self.on_event = on_event or (lambda kind, stage, detail: None)
        self.state_path = cfg.paths.state_file("pipeline.json")

    def _names(self) -> list[str]:
        return [s.name for s in self.stages]

    def _output_fingerprint(self, stage: Stage) -> str:
        paths = self.cfg.paths
        outputs = [paths.join(*p.split("/")) for p in stage.outputs]
        if any("://" in p for p in outputs):
            # Remote outputs cannot be listed from here without Spark: never reuse them.
            return f"remote-{time.time_ns()}"
        # The stage's record lives in the (always local) state directory.
        outputs.append(paths.state_file(f"{stage.name}.json"))
        h = hashlib.sha256(listing_fingerprint(outputs).encode())
        if stage.uses_tracking_store and self.cfg.tracking_uri.startswith("sqlite:///"):
            store = self.cfg.tracking_uri.removeprefix("sqlite:///")
            h.update(f"store:{store}:{'present' if os.path.exists(store) else 'missing'}".encode())
        return h.hexdigest()

    def load_records(self) -> dict[str, StageRecord]:
        if not os.path.exists(self.state_path):
            return {}
        with open(self.state_path, encoding="utf-8") as fh:
            raw = json.load(fh)
        return {name: StageRecord(**rec) for name, rec in raw.items()}

    def _save(self, records: dict[str, StageRecord]) -> None:
        os.makedirs(os.path.dirname(self.state_path), exist_ok=True)
        tmp = self.state_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({k: v.__dict__ for k, v in records.items()}, fh, indent=2, default=str)
        os.replace(tmp, self.state_path)

    def _stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise PipelineError(f"Unknown stage {name!r}; stages are: {', '.join(self._names())}.")

    def plan(self, start: str | None = None) -> list[tuple[Stage, str]]:
        """What a run would do per stage: ``run``, ``skip`` (unchanged) or ``forced``.

        A stage that would run makes every stage after it run too, since its new
        outputs change their inputs.
        """
        records = self.load_records()
        forced_from = self._names().index(self._stage(start).name) if start else len(self.stages)
        upstream = ""
        plan: list[tuple[Stage, str]] = []
        dirty = False
        for i, stage in enumerate(self.stages):
            fp = input_fingerprint(self.cfg, stage, upstream)
            rec = records.get(stage.name)
            if i >= forced_from:
                plan.append((stage, "forced"))
                dirty = True
            elif (
                not dirty
                and rec
                and rec.input_fingerprint == fp
                and rec.output_fingerprint == self._output_fingerprint(stage)
            ):
                plan.append((stage, "skip"))
                upstream = rec.output_fingerprint
                continue
            else:
                plan.append((stage, "run"))
                dirty = True
            upstream = f"dirty-{i}"
        return plan

    def run(self, start: str | None = None) -> dict[str, StageRecord]:
        """Run the plan; returns each stage's record (its result as written to its state file)."""
        records = self.load_records()
        plan = {s.name: action for s, action in self.plan(start)}
        done: dict[str, StageRecord] = {}
        upstream = ""
        for stage in self.stages:
            fp = input_fingerprint(self.cfg, stage, upstream)
            if plan[stage.name] == "skip":
                rec = records[stage.name]
                done[stage.name] = rec
                self.on_event("skip", stage, {"record": rec})
                upstream = rec.output_fingerprint
                continue
            self.on_event("start", stage, {})
            t0 = time.perf_counter()
            result = stage.run(self.cfg)
            seconds = time.perf_counter() - t0
            if not isinstance(result, StageResult) or result.STAGE != stage.name:
                raise PipelineError(
                    f"Stage {stage.name!r} returned {type(result).__name__}, not its record "
                    "(a StageResult whose STAGE is the stage's name); this is a bug in the stage."
                )
            write_result(self.cfg.paths, result)
            out_fp = self._output_fingerprint(stage)
            rec = StageRecord(stage.name, fp, out_fp, time.time(), seconds, to_dict(result))
            records[stage.name] = rec
            self._save(records)
            done[stage.name] = rec
            self.on_event("done", stage, {"record": rec})
            upstream = out_fp
        return done
