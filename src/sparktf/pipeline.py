"""The pipeline's stages, in order, and what each reads and writes.

``sparktf run`` walks this list. A stage whose implementation has not landed yet
has ``impl=None``; running it raises :class:`~sparktf.errors.NotBuiltYetError`
instead of pretending, so the run stops there and says so.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sparktf.config import Config
from sparktf.errors import NotBuiltYetError

__all__ = ["STAGES", "Stage", "get_stage", "stage_names"]


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    reads: str
    writes: str
    issue: int
    impl: str | None = None  # "module:function", called as fn(cfg, context) -> dict

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
    Stage("generate", "Generate the synthetic flash-sale clickstream, or read your events", "config", "data/raw", 3),
    Stage(
        "validate",
        "Validate events; bad rows go to the quarantine with a reason",
        "data/raw",
        "data/events, data/quarantine",
        3,
    ),
    Stage("features", "Sessions, vocabularies, sequences and leave-last-out splits", "data/events", "data/features", 3),
    Stage(
        "tfrecords",
        "Write training sets as TFRecords",
        "data/features",
        "tfrecords/",
        4,
        impl="sparktf.tfrecord.stage:write_training_sets",
    ),
    Stage(
        "train",
        "Distributed training on Spark (sequential GRU + two-tower)",
        "tfrecords/",
        "models/, checkpoints/, MLflow",
        6,
    ),
    Stage(
        "evaluate",
        "Full-catalogue evaluation against baselines",
        "models/, data/features",
        "MLflow metrics, reports",
        6,
    ),
    Stage(
        "register",
        "Register the model and run the validation gate",
        "MLflow run",
        "registry version, champion alias",
        7,
        impl="sparktf.registry.stages:register_stage",
    ),
    Stage("index", "Build the ScaNN index over item embeddings", "models/", "index/", 8),
    Stage("recommend", "Batch top-K for every user on Spark", "models/, index/", "recommendations/", 8),
)


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


def get_stage(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    from sparktf.errors import PipelineError

    raise PipelineError(f"Unknown stage {name!r}; stages are: {', '.join(stage_names())}.")
