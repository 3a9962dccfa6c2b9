"""The pipeline's stages, in order, and the runner that makes reruns cheap.

``sparktf run`` walks :data:`STAGES`. Each stage is ``fn(cfg, context) -> dict``
named by ``impl``; a stage without one raises
:class:`~sparktf.errors.NotBuiltYetError` instead of pretending.

Resuming: after a stage runs, :class:`PipelineRunner` records two fingerprints
in ``state/pipeline.json``: its *input* fingerprint (the config sections it
reads, plus the output fingerprint of the stage before it, plus, for the first
stage, a listing of the user's event files) and its *output* fingerprint (a
listing of the files it wrote: names and sizes, which change whenever Spark
rewrites them, since part files carry a fresh id). A rerun skips a stage whose
input fingerprint is unchanged and whose outputs are still exactly there;
``--from STAGE`` forces that stage and every one after it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sparktf.config import Config, config_to_dict
from sparktf.errors import NotBuiltYetError, PipelineError

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


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    reads: str
    writes: str
    issue: int
    impl: str | None = None  # "module:function", called as fn(cfg, context) -> dict
    sections: tuple[str, ...] = ()  # config sections whose change reruns the stage
    outputs: tuple[str, ...] = ()  # paths under the workdir the stage writes

    def load(self) -> Callable[[Config, dict[str, Any]], dict[str, Any]]:
        if self.impl is None:
            raise NotBuiltYetError(
                f"Stage {self.name!r} is not built yet (tracked in issue #{self.issue}); "
                "nothing was run for it or for the stages after it."
            )
        module_name, _, fn_name = self.impl.partition(":")
        fn: Callable[[Config, dict[str, Any]], dict[str, Any]] = getattr(importlib.import_module(module_name), fn_name)
        return fn


STAGES: tuple[Stage, ...] = (
    Stage(
        "generate",
        "Generate the synthetic flash-sale clickstream, or read your events",
        "config",
        "data/raw",
        3,
        impl="sparktf.data.stages:generate",
        sections=("data", "generator"),
        outputs=("data/raw",),
    ),
    Stage(
        "validate",
        "Validate events; bad rows go to the quarantine with a reason",
        "data/raw",
        "data/events, data/quarantine",
        3,
        impl="sparktf.data.stages:validate",
        sections=("data",),
        outputs=("data/events", "data/quarantine"),
    ),
    Stage(
        "features",
        "Sessions, vocabularies, sequences and leave-last-out splits",
        "data/events",
        "data/features",
        3,
        impl="sparktf.data.stages:features",
        sections=("features",),
        outputs=("data/features",),
    ),
    Stage(
        "tfrecords",
        "Write training sets as TFRecords",
        "data/features",
        "tfrecords/",
        4,
        impl="sparktf.tfrecord.stage:write_training_sets",
        sections=("tfrecord",),
        outputs=("tfrecords",),
    ),
    Stage(
        "train",
        "Distributed training on Spark (sequential GRU + two-tower)",
        "tfrecords/",
        "models/, checkpoints/, MLflow",
        6,
        impl="sparktf.training.stage:train_stage",
        sections=("train", "tracking"),
        outputs=("state/train.json",),
    ),
    Stage(
        "evaluate",
        "Full-catalogue evaluation against baselines",
        "models/, data/features",
        "MLflow metrics, reports",
        6,
        impl="sparktf.training.stage:evaluate_stage",
        sections=("evaluation",),
        outputs=("state/evaluate.json",),
    ),
    Stage(
        "register",
        "Register the model and run the validation gate",
        "MLflow run",
        "registry version, champion alias",
        7,
        impl="sparktf.registry.stages:register_stage",
        sections=("gate",),
        outputs=("state/register.json",),
    ),
    Stage(
        "index",
        "Build the ScaNN index over item embeddings",
        "models/",
        "index/",
        8,
        impl="sparktf.inference.stages:index_stage",
        sections=("index",),
        outputs=("index",),
    ),
    Stage(
        "recommend",
        "Batch top-K for every user on Spark",
        "models/, index/",
        "recommendations/",
        8,
        impl="sparktf.inference.stages:recommend_stage",
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
    """Hash of every file under ``paths``: relative name and size (``missing`` if absent).

    Spark and TensorFlow give rewritten files new names, so a rewrite changes this
    even when the sizes happen to match; an untouched output keeps it.
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
                h.update(f"{os.path.relpath(full, root)}:{os.path.getsize(full)}\n".encode())
    return h.hexdigest()


def input_fingerprint(cfg: Config, stage: Stage, upstream: str) -> str:
    """The config sections ``stage`` reads, the fingerprint of what it reads, and the code version."""
    from sparktf import __version__

    h = hashlib.sha256()
    sections = {name: config_to_dict(getattr(cfg, name)) for name in stage.sections}
    h.update(
        json.dumps(
            {"stage": stage.name, "sparktf": __version__, "config": sections}, sort_keys=True, default=str
        ).encode()
    )
    h.update(upstream.encode())
    if stage.name == "generate" and cfg.data.source == "path" and "://" not in cfg.data.path:
        h.update(listing_fingerprint([cfg.data.path]).encode())
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
    """

    def __init__(self, cfg: Config, on_event: Callable[[str, Stage, dict[str, Any]], None] | None = None) -> None:
        self.cfg = cfg
        self.on_event = on_event or (lambda kind, stage, detail: None)
        self.state_path = cfg.paths.state_file("pipeline.json")

    def _outputs(self, stage: Stage) -> list[str]:
        return [self.cfg.paths.join(*p.split("/")) for p in stage.outputs]

    def _output_fingerprint(self, stage: Stage) -> str:
        outputs = self._outputs(stage)
        if any("://" in p for p in outputs):
            # Remote outputs cannot be listed from here without Spark: never reuse them.
            return f"remote-{time.time_ns()}"
        if stage.name in ("train", "evaluate", "register"):
            # Their state files live in the (local) state directory.
            outputs = [self.cfg.paths.state_file(os.path.basename(p)) for p in stage.outputs]
        return listing_fingerprint(outputs)

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

    def plan(self, start: str | None = None) -> list[tuple[Stage, str]]:
        """What a run would do per stage: ``run``, ``skip`` (unchanged) or ``forced``.

        A stage that would run makes every stage after it run too, since its new
        outputs change their inputs.
        """
        records = self.load_records()
        forced_from = stage_names().index(get_stage(start).name) if start else len(STAGES)
        upstream = ""
        plan: list[tuple[Stage, str]] = []
        dirty = False
        for i, stage in enumerate(STAGES):
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

    def run(self, start: str | None = None) -> dict[str, Any]:
        records = self.load_records()
        plan = dict((s.name, action) for s, action in self.plan(start))
        context: dict[str, Any] = {}
        upstream = ""
        for stage in STAGES:
            fp = input_fingerprint(self.cfg, stage, upstream)
            if plan[stage.name] == "skip":
                rec = records[stage.name]
                context[stage.name] = rec.result
                self.on_event("skip", stage, {"record": rec})
                upstream = rec.output_fingerprint
                continue
            fn = stage.load()
            self.on_event("start", stage, {})
            t0 = time.perf_counter()
            result = fn(self.cfg, context) or {}
            seconds = time.perf_counter() - t0
            out_fp = self._output_fingerprint(stage)
            rec = StageRecord(stage.name, fp, out_fp, time.time(), seconds, _jsonable(result))
            records[stage.name] = rec
            self._save(records)
            context[stage.name] = rec.result
            self.on_event("done", stage, {"record": rec})
            upstream = out_fp
        return context


def _jsonable(value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(value, default=str))
    return data if isinstance(data, dict) else {"result": data}
