"""Sticky assignment of units to experiment arms, and the grammar of an arm's model.

``bucket = sha256(salt ␟ unit) mod buckets``; the arms own consecutive bucket ranges in
proportion to their weights (largest-remainder rounding, so the ranges always cover
every bucket). The hash depends only on the salt and the unit, so a user keeps their
arm across requests, server restarts and machines, and a new salt reshuffles everyone.
A unit is the user id, or, for anonymous traffic, the session id
(:data:`ANONYMOUS_PREFIX` + session id is then the impression's ``user_id``, so the
report counts sessions as units).

Why our own code: a few lines; the experiment libraries (GrowthBook, PlanOut) bring a
server or a DSL for what is one hash and a range lookup here, and the report must
recompute nothing: every impression carries its experiment and arm.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from sparktf.experiments.exploration import Exploration

__all__ = [
    "ANONYMOUS_PREFIX",
    "BASELINES",
    "CLICK",
    "IMPRESSION",
    "Arm",
    "ArmModel",
    "Assignment",
    "bucket_of",
    "parse_arm_model",
    "unit_of",
]

#: The models an arm may name that are no registered model version.
BASELINES: tuple[str, ...] = ("popular", "cooccurrence")
#: The ``user_id`` of the impressions of an anonymous unit: this prefix and the session id.
ANONYMOUS_PREFIX = "anonymous:"
#: The event type of an item a reply showed (logged by the server) and of a click on one
#: (posted by the client with the reply's ``request_id`` and the ``position``); both must be in
#: ``data.event_types``, and neither makes a sequence.
IMPRESSION = "impression"
CLICK = "click"


@dataclass(frozen=True)
class ArmModel:
    """What an arm serves.

    Attributes:
        kind: ``alias`` (a registry alias, followed), ``version`` (a fixed version) or
            ``baseline`` (:data:`BASELINES`).
        value: the alias name, the version number as text, or the baseline's name.
    """

    kind: str
    value: str

    @property
    def label(self) -> str:
        """The repository label target that serves it (an alias name or a version number)."""
        return self.value


def parse_arm_model(text: str) -> ArmModel:
    """``@alias`` / ``<version>`` / ``popular`` / ``cooccurrence`` → :class:`ArmModel`.

    Raises:
        ValueError: anything else, naming what is allowed.
    """
    if text in BASELINES:
        return ArmModel("baseline", text)
    if text.isdigit() and int(text) > 0:
        return ArmModel("version", str(int(text)))
    if text.startswith("@") and len(text) > 1 and text[1].isalpha():
        return ArmModel("alias", text[1:])
    raise ValueError(f"arm model {text!r} is not '@<alias>', a version number, 'popular' or 'cooccurrence'")


@dataclass(frozen=True)
class Arm:
    """One arm: its name, what it serves, its weight and how it explores."""

    name: str
    model: ArmModel
    weight: float
    exploration: Exploration = field(default_factory=Exploration)


def bucket_of(salt: str, unit: str, buckets: int) -> int:
    """The unit's bucket: the first 8 bytes of ``sha256(salt ␟ unit)`` modulo ``buckets``."""
    digest = hashlib.sha256(f"{salt}\x1f{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % buckets


@dataclass(frozen=True)
class Assignment:
    """An experiment's arms and how units are split between them.

    Args:
        experiment: the experiment's name (in every reply and impression).
        salt: mixed into the hash.
        arms: the arms, in order (their bucket ranges follow this order).
        control: the control arm's name.
        buckets: the number of buckets.
    """

    experiment: str
    salt: str
    arms: tuple[Arm, ...]
    control: str
    buckets: int = 10_000

    def __post_init__(self) -> None:
        if len(self.arms) < 2:
            raise ValueError(f"experiment {self.experiment!r} needs at least two arms")
        if self.control not in {a.name for a in self.arms}:
            raise ValueError(f"the control arm {self.control!r} is not one of the arms")
        total = sum(a.weight for a in self.arms)
        if total <= 0:
            raise ValueError(f"experiment {self.experiment!r}: the arms' weights are all 0")
        exact = [a.weight / total * self.buckets for a in self.arms]
        counts = [int(x) for x in exact]
        short = self.buckets - sum(counts)
        for i in sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])[:short]:
            counts[i] += 1
        ends, acc = [], 0
        for c in counts:
            acc += c
            ends.append(acc)
        object.__setattr__(self, "_ends", tuple(ends))

    @property
    def shares(self) -> dict[str, float]:
        """Each arm's share of buckets (its expected share of units)."""
        ends: tuple[int, ...] = self._ends  # type: ignore[attr-defined]
        starts = (0, *ends[:-1])
        return {a.name: (e - s) / self.buckets for a, s, e in zip(self.arms, starts, ends, strict=True)}

    def arm_for(self, unit: str) -> Arm:
        """The arm of a unit (a user id, or :data:`ANONYMOUS_PREFIX` + a session id)."""
        b = bucket_of(self.salt, unit, self.buckets)
        ends: tuple[int, ...] = self._ends  # type: ignore[attr-defined]
        for arm, end in zip(self.arms, ends, strict=True):
            if b < end:
                return arm
        return self.arms[-1]  # unreachable: the last range ends at ``buckets``

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(name)


def unit_of(user_id: str | None, session_id: str | None) -> str | None:
    """The unit a request is assigned by: the user, else the session (anonymous), else none."""
    if user_id:
        return user_id
    if session_id:
        return ANONYMOUS_PREFIX + session_id
    return None
