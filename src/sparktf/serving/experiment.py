"""The server's side of an online experiment: which arm answers a ``:recommend``, and its impressions.

A request to the served model without a version or label is assigned by its unit (the
``user_id``, else the ``session_id``: :func:`sparktf.experiments.assignment.unit_of`) to an
arm. A model arm is a label of the repository (the arm's name, resolved to its alias or
version by the same poller that follows the champion, so each arm hot-reloads); a baseline
arm is a :class:`~sparktf.serving.baselines.BaselineRecommender`. The reply's shown items
are then logged as ``impression`` events (position, request id, experiment, arm) through
the collector's contract (:func:`~sparktf.online.events.check_event`) and its landing
writer, so impressions, clicks and purchases land in one event table and the report
joins them by ``request_id``. A request without a unit is not in the experiment: the
default version answers it and the reply's ``experiment`` and ``arm`` are null.

Why our own code: experimentation services (GrowthBook, Unleash) decide the arm, but
the arm here is a model the server must load, hot-reload and batch, and its impressions
must go through the server's own durable event path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sparktf.errors import ServingError
from sparktf.experiments.assignment import CLICK, IMPRESSION, Arm, Assignment, unit_of
from sparktf.experiments.exploration import Exploration, choose
from sparktf.online.events import check_event, landing_record, new_event_id
from sparktf.online.landing import LandingError
from sparktf.serving.recommend import RecommendQuery

if TYPE_CHECKING:
    from sparktf.online.events import EventRules
    from sparktf.online.landing import LandingWriter
    from sparktf.serving.baselines import BaselineRecommender
    from sparktf.serving.features import FeatureLookup
    from sparktf.serving.metrics import ServerMetrics

__all__ = ["ServedExperiment", "arm_labels", "clock", "explore_reply", "impression_events", "log_impressions"]

log = logging.getLogger(__name__)


def arm_labels(assignment: Assignment) -> dict[str, str]:
    """The repository labels that serve the model arms: arm name -> alias or version."""
    return {a.name: a.model.label for a in assignment.arms if a.model.kind != "baseline"}


@dataclass(frozen=True)
class ServedExperiment:
    """An experiment as the server runs it.

    Attributes:
        assignment: the arms and the hash split.
        baselines: the baseline arms' recommenders, by baseline name.
    """

    assignment: Assignment
    baselines: Mapping[str, BaselineRecommender]

    @property
    def name(self) -> str:
        return self.assignment.experiment

    def pick(self, query: RecommendQuery) -> Arm | None:
        """The arm of the query's unit, or None when it has no unit (not in the experiment)."""
        unit = unit_of(query.user_id, query.session_id)
        return None if unit is None else self.assignment.arm_for(unit)

    def check_rules(self, rules: EventRules | None, landing: LandingWriter | None) -> None:
        """Refuse to start an experiment whose impressions could not be logged.

        Raises:
            ServingError: no landing directory, or ``data.event_types`` lacks impression or click.
        """
        if rules is None or landing is None:
            raise ServingError(
                f"Experiment {self.name!r} needs the server to log impressions, and this server collects no "
                "events (its workdir is not on a local disk).",
                hint="Serve from a local workdir, or set experiment.name = '' to serve without an experiment.",
            )
        missing = [t for t in (IMPRESSION, CLICK) if t not in rules.event_types]
        if missing:
            raise ServingError(
                f"Experiment {self.name!r} logs impressions and counts clicks, but data.event_types "
                f"{list(rules.event_types)} lacks {', '.join(missing)}.",
                hint="Add 'impression' and 'click' to data.event_types.",
            )


def impression_events(
    *,
    experiment: str | None,
    arm: str | None,
    model_version: str | None,
    request_id: str,
    query: RecommendQuery,
    items: Sequence[Mapping[str, Any]],
    propensities: Sequence[float],
    policy: str,
    context: Sequence[str],
    features: FeatureLookup,
    rules: EventRules,
    now: float,
) -> list[dict[str, Any]]:
    """The landing records of a reply's shown items: one ``impression`` per item, with its
    1-based ``position``, the probability with which the arm's policy put it there, the
    policy, the history the reply was ranked from (what an off-policy estimate replays), the
    model version that ranked it and the item's score (what the monitoring reads; None for a
    baseline or the popular fallback), checked by the collector's rules (so they read back
    like posted events). Outside an experiment ``experiment`` and ``arm`` are None.

    Raises:
        ServingError: 500 when an impression fails the rules (a bug: the server made it).
    """
    unit = unit_of(query.user_id, query.session_id)
    history = json.dumps(list(context), separators=(",", ":"))
    out = []
    for position, (item, propensity) in enumerate(zip(items, propensities, strict=True), start=1):
        attrs = features.items.get(str(item["item_id"]), {})
        raw = {
            "event_time": now,
            "user_id": unit,
            "item_id": str(item["item_id"]),
            "event_type": IMPRESSION,
            "session_id": query.session_id,
            "category": attrs.get("category"),
            "brand": attrs.get("brand"),
            "price": attrs.get("price"),
            "event_id": new_event_id(),
            "request_id": request_id,
            "position": position,
            "experiment": experiment,
            "arm": arm,
            "propensity": propensity,
            "policy": policy,
            "context": history,
            "model_version": model_version,
            "score": item.get("score"),
        }
        checked = check_event(raw, rules, ack_time=now)
        if checked.event is None:
            raise ServingError(f"An impression the server made fails the event rules: {checked.detail}", status=500)
        out.append(landing_record(checked.event))
    return out


async def log_impressions(
    landing: LandingWriter,
    records: list[dict[str, Any]],
    metrics: ServerMetrics,
    experiment: str | None,
    arm: str | None,
) -> bool:
    """Make the impressions durable (off the event loop); False when the write failed.

    A failed write does not fail the reply (the shopper still gets recommendations): it is
    counted as ``lost`` in ``sparktf_experiment_impressions_total`` and logged, and the reply
    says ``impressions_logged: false``, so nothing is lost silently.
    """
    if not records:
        return True
    try:
        await asyncio.get_running_loop().run_in_executor(None, landing.append, records)
    except (LandingError, OSError, ValueError) as exc:
        metrics.impressions.labels(experiment or "", arm or "", "lost").inc(len(records))
        log.error("could not log %d impression(s) of arm %s: %s", len(records), arm, exc)
        return False
    metrics.impressions.labels(experiment or "", arm or "", "logged").inc(len(records))
    return True


def explore_reply(reply: dict[str, Any], policy: Exploration, k: int, request_id: str) -> list[float]:
    """Pick the shown items of an exploring arm's reply, in place; their propensities.

    ``reply["items"]`` holds the arm's ranked candidates (asked for ``policy.pool`` of them);
    the policy picks ``k`` of them, in slot order, with the randomness seeded by the request
    id (so a logged reply can be replayed). Without exploration the top ``k`` are shown with
    propensity 1. The candidates are the arm's allowed items only, so exploring never shows
    an excluded or seen item.
    """
    items = reply["items"]
    if not policy.explores:
        shown, propensities = items[:k], [1.0] * min(k, len(items))
    else:
        rng = np.random.default_rng(int(request_id[:16], 16))
        slate = choose(policy, [x.get("score") for x in items], k, rng)
        shown, propensities = [items[i] for i in slate.indices], list(slate.propensities)
    for item, p in zip(shown, propensities, strict=True):
        item["propensity"] = p
    reply["items"] = shown
    return propensities


def clock() -> float:
    """Now, epoch seconds (one place, so the impressions and the reply agree)."""
    return time.time()
