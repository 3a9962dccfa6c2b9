"""The data contract: the event schema every source is mapped to, and the layout and
columns of the features the later stages read (see docs/data-contract.md).

One ordered list of fields is the single source of truth for the raw reader, the
validator, the generator and the feature pipeline, so a column cannot be renamed
in one place and forgotten in another. Spark types are written as DDL strings and
turned into a ``StructType`` only when asked, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql.types import StructType

__all__ = [
    "ACTIVITY_LEVELS",
    "CORRUPT_RECORD",
    "EVENTS_DDL",
    "EVENT_COLUMNS",
    "EVENT_FIELDS",
    "EXAMPLE_COLUMNS",
    "KEY_COLUMNS",
    "LANDING_FIELDS",
    "LANDING_READ_DDL",
    "LIVE_EVENT_COLUMNS",
    "LIVE_EVENT_DDL",
    "LIVE_FIELDS",
    "MODEL_COLUMNS",
    "NOT_TRAINED_ON",
    "SESSION_BREAK",
    "SPLITS",
    "TRAINING_COLUMNS",
    "EventField",
    "FeaturePaths",
    "event_schema",
    "history_with_breaks",
]


@dataclass(frozen=True)
class EventField:
    """One column of the validated events table.

    Attributes:
        name: the column name.
        ddl: its Spark SQL type.
        required: a key column; a row where it is null or blank is quarantined.
        doc: what the column means.
    """

    name: str
    ddl: str
    required: bool
    doc: str


EVENT_FIELDS: tuple[EventField, ...] = (
    EventField("event_time", "timestamp", True, "when the event happened (UTC)"),
    EventField("user_id", "string", True, "who"),
    EventField("item_id", "string", True, "which item"),
    EventField("event_type", "string", True, "one of data.event_types"),
    EventField("session_id", "string", False, "the source's session; filled by sessionization when missing"),
    EventField("category", "string", False, "item category"),
    EventField("brand", "string", False, "item brand"),
    EventField("price", "double", False, "price paid or shown, >= 0"),
    EventField("sale_id", "string", False, "the flash sale the item was sold in"),
)

EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS)
KEY_COLUMNS: tuple[str, ...] = tuple(f.name for f in EVENT_FIELDS if f.required)
EVENTS_DDL = ", ".join(f"{f.name} {f.ddl}" for f in EVENT_FIELDS)

# Spark's own name for the raw text of a CSV/JSON record it could not parse.
CORRUPT_RECORD = "_corrupt_record"


# --------------------------------------------------------------------------- live events (issue 16)

#: What an event posted to ``POST /v1/events`` may carry beside the event columns, and
#: what the collector adds. The stream keeps them in ``data/live/events``.
LIVE_FIELDS: tuple[EventField, ...] = (
    EventField("event_id", "string", True, "the client's id of the event, or one the collector gave it"),
    EventField("request_id", "string", False, "the :recommend reply whose item the event is about"),
    EventField("position", "int", False, "the item's 1-based rank in that reply"),
    EventField("experiment", "string", False, "the online experiment the reply was part of (impressions)"),
    EventField("arm", "string", False, "the experiment arm that served the reply (impressions)"),
    EventField(
        "propensity",
        "double",
        False,
        "the probability with which the arm's policy showed this item at this position, in (0, 1]; 1 when it "
        "ranks deterministically (impressions)",
    ),
    EventField("policy", "string", False, "the arm's logging policy and its parameters (impressions)"),
    EventField(
        "context", "string", False, "the history the reply was ranked from, a JSON array of item ids (impressions)"
    ),
    EventField("model_version", "string", False, "the model version that ranked the reply (impressions)"),
    EventField(
        "score",
        "double",
        False,
        "the model's score of the item in the reply; empty when the popular fallback or a baseline chose it "
        "(impressions)",
    ),
    EventField("ack_time", "double", True, "when the collector acknowledged the event (epoch seconds)"),
)
#: The fields of one landing record (a JSON line under ``data/landing``).
LANDING_FIELDS: tuple[EventField, ...] = (*EVENT_FIELDS, *LIVE_FIELDS)
#: The stream reads landing files with every field as text (plus Spark's corrupt-record
#: column), so that the batch validator's rules see the values as written.
LANDING_READ_DDL = ", ".join([*(f"{f.name} string" for f in LANDING_FIELDS), f"{CORRUPT_RECORD} string"])
#: The columns of ``data/live/events``: the event columns, then the live fields.
LIVE_EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in LANDING_FIELDS)
LIVE_EVENT_DDL = ", ".join(f"{f.name} {f.ddl}" for f in LANDING_FIELDS)


def event_schema() -> StructType:
    """The validated events table as a Spark ``StructType``."""
    from pyspark.sql.types import StructType

    schema = StructType.fromDDL(EVENTS_DDL)
    assert isinstance(schema, StructType)
    return schema


# --------------------------------------------------------------------------- features

#: The splits of ``examples``, in order.
SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: The values of ``user_activity`` (the evaluation slices of users by their train-part activity).
ACTIVITY_LEVELS: tuple[str, ...] = ("low", "mid", "high")
#: The history entry that marks where one session ends and the next begins
#: (``features.session_breaks``). Not an item: validation rejects it as an ``item_id``,
#: baselines and exclusions skip it, and the models read it as a boundary (models/repeat.py).
SESSION_BREAK = "<session-break>"


def history_with_breaks(items: Sequence[str], sessions: Sequence[object], max_len: int) -> list[str]:
    """A history with :data:`SESSION_BREAK` between consecutive steps of different sessions.

    The rule every history follows when ``features.session_breaks`` is on (the features
    stage builds the same in Spark SQL, the stream in Python; a test holds them equal):
    a break goes *between* two steps only, never after the last (whether the next step
    starts a session is not known when the history is read); the result is the last
    ``max_len`` entries, breaks counted, without a leading break.

    Args:
        items: the steps' item ids, oldest first.
        sessions: each step's session (any comparable key), aligned with ``items``.
        max_len: ``features.max_history``.
    """
    out: list[str] = []
    for i, item in enumerate(items):
        if i and sessions[i] != sessions[i - 1]:
            out.append(SESSION_BREAK)
        out.append(item)
    out = out[-max_len:] if max_len else []
    return out[1:] if out and out[0] == SESSION_BREAK else out


#: The columns of ``data/features/examples`` (one row per prediction step).
EXAMPLE_COLUMNS: tuple[str, ...] = (
    "user_id",
    "history",
    "history_len",
    "target",
    "target_category",
    "target_brand",
    "target_price_bucket",
    "event_time",
    "user_activity",
    "window_end",
    "split",
)
#: Columns of ``examples`` that stay out of the TFRecords: the split is the folder,
#: and the time is bookkeeping, not a model input.
NOT_TRAINED_ON: tuple[str, ...] = ("split", "event_time")
#: The columns the ``tfrecords`` stage writes.
TRAINING_COLUMNS: tuple[str, ...] = tuple(c for c in EXAMPLE_COLUMNS if c not in NOT_TRAINED_ON)
#: The columns of the TFRecords the models read (the rest is kept for slicing).
MODEL_COLUMNS: tuple[str, ...] = (
    "user_id",
    "history",
    "target",
    "target_category",
    "target_brand",
    "target_price_bucket",
    "window_end",
)


@dataclass(frozen=True)
class FeaturePaths:
    """Where the feature tables live under ``data/features`` (every reader uses these names).

    ``items`` (item attributes), ``vocab/items`` and ``vocab/users`` (id -> index, by
    popularity), ``examples`` (Parquet, partitioned by ``split``), ``seen`` (each user's
    train-part items), ``sessions`` and ``stats.json``.
    """

    root: str

    def join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    items = property(lambda self: self.join("items"))
    vocab = property(lambda self: self.join("vocab"))
    item_vocab = property(lambda self: self.join("vocab", "items"))
    user_vocab = property(lambda self: self.join("vocab", "users"))
    examples = property(lambda self: self.join("examples"))
    seen = property(lambda self: self.join("seen"))
    sessions = property(lambda self: self.join("sessions"))
    stats = property(lambda self: self.join("stats.json"))
