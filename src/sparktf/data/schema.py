"""The event schema every source is mapped to (see docs/data-contract.md).

One ordered list of fields is the single source of truth for the raw reader, the
validator, the generator and the feature pipeline, so a column cannot be renamed
in one place and forgotten in another. Spark types are written as DDL strings and
turned into a ``StructType`` only when asked, so importing this module stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql.types import StructType

__all__ = [
    "CORRUPT_RECORD",
    "EVENTS_DDL",
    "EVENT_COLUMNS",
    "EVENT_FIELDS",
    "KEY_COLUMNS",
    "EventField",
    "event_schema",
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


def event_schema() -> StructType:
    """The validated events table as a Spark ``StructType``."""
    from pyspark.sql.types import StructType

    schema = StructType.fromDDL(EVENTS_DDL)
    assert isinstance(schema, StructType)
    return schema
