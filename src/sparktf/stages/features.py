"""Stage 3, ``features``: sessions, vocabularies, sequences and splits in ``data/features``.

The layout it writes is :class:`sparktf.data.schema.FeaturePaths`; see
:mod:`sparktf.data.features` and docs/data-contract.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparktf.config import Config, FeatureConfig
from sparktf.data.schema import FeaturePaths
from sparktf.errors import DataError
from sparktf.stages._common import console, spark_for, step
from sparktf.stages.state import FeaturesResult

__all__ = ["FeaturesArgs", "features_args", "run"]


@dataclass(frozen=True)
class FeaturesArgs:
    """The arguments of :func:`sparktf.data.features.build_features`."""

    events_path: str
    live_events_path: str
    features_path: str
    features: FeatureConfig
    event_types: tuple[str, ...]


def features_args(cfg: Config) -> FeaturesArgs:
    return FeaturesArgs(
        events_path=cfg.paths.events,
        live_events_path=cfg.paths.live_events,
        features_path=cfg.paths.features,
        features=cfg.features,
        event_types=cfg.data.event_types,
    )


def run(cfg: Config) -> FeaturesResult:
    from sparktf.data import storage
    from sparktf.data.features import build_features

    args = features_args(cfg)
    spark = spark_for(cfg)
    out = console()
    if not storage.exists(spark, args.events_path):
        raise DataError(
            f"There are no validated events at {args.events_path}.",
            hint="Run `sparktf prepare` (validation runs first) or `sparktf run --from validate`.",
        )
    with step(out, f"Building features ({args.features.split} split)") as note:
        stats = build_features(
            spark,
            args.events_path,
            args.features_path,
            args.features,
            event_types=args.event_types,
            live_events_path=args.live_events_path,
        )
        ex = stats["examples"]
        note["done"] = (
            f"{ex['train']:,} train / {ex['validation']:,} validation / {ex['test']:,} test examples, "
            f"{stats['vocab']['items']:,} items and {stats['vocab']['users']:,} users in the vocabularies"
        )
    dropped = stats["users"]["dropped_below_min_user_events"]
    if dropped:
        out.print(
            f"  [yellow]{dropped:,} users[/] with fewer than {args.features.min_user_events} steps have no examples "
            f"({stats['users']['steps_of_dropped_users']:,} steps; see stats.json)."
        )
    return FeaturesResult(
        path=args.features_path,
        stats=FeaturePaths(args.features_path).stats,
        examples={k: int(v) for k, v in stats["examples"].items()},
        vocab={k: int(v) for k, v in stats["vocab"].items()},
        users={k: int(v) for k, v in stats["users"].items()},
    )
