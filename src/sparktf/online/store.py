"""The online store: each user's live state, written by the stream, read by the server.

(Interface fixed here; the implementations follow.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["OnlineStore", "UserState"]


@dataclass(frozen=True)
class UserState:
    """One user's live state, as the stream's last micro-batch left it.

    Attributes:
        user_id: the user.
        items: the user's latest ``features.max_history`` items (events of
            ``features.positive_event_types``), oldest first, most recent last, in event-time order.
        session_id: the current session (the events' own, or ``<user_id>:live-<n>`` from time gaps).
        session_start: event time (epoch seconds) of the session's first event.
        last_event_time: the latest event time applied (epoch seconds).
        last_ack_time: when the collector acknowledged the latest applied event (epoch seconds);
            freshness is measured from it.
        events: events applied for this user so far (duplicates and late events excluded).
        batch_id: the stream micro-batch that wrote this state.
    """

    user_id: str
    items: tuple[str, ...]
    session_id: str
    session_start: float
    last_event_time: float
    last_ack_time: float
    events: int
    batch_id: int


class OnlineStore(Protocol):
    """What the stream writes and the server reads. Every implementation passes
    ``tests/integration/test_online_store.py``."""

    def apply(self, batch_id: int, states: Sequence[UserState]) -> bool:
        """Write ``states`` (replacing each user's previous state) and record ``batch_id``
        as the last applied batch, in one transaction; do nothing and return False when
        ``batch_id`` is not above the last applied batch (a replayed micro-batch)."""
        ...

    def last_batch_id(self) -> int:
        """The last applied batch id, -1 when none."""
        ...

    def get(self, user_id: str) -> UserState | None:
        """The user's state, or None."""
        ...

    def get_many(self, user_ids: Iterable[str]) -> Mapping[str, UserState]:
        """The states of those of ``user_ids`` that have one."""
        ...

    def user_count(self) -> int:
        """How many users have a state."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
