"""The server's online profile: a version's traffic over a sliding window, in bounded memory.

The window of ``window_s`` seconds is kept as ``slots`` sub-windows of counts (ring buffer);
a reply is counted into the slot of the current time, a slot older than the window is
cleared when its turn comes again, and a snapshot sums the slots still inside the window. Memory is ``slots ×
bins`` integers whatever the traffic; a reply costs one :meth:`Profiler.observe` under a
lock (the batch threads count concurrently).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sparktf.monitoring.profile import Counts, Profiler, Reference, Thresholds, compare

__all__ = ["OnlineWindow"]


class OnlineWindow:
    """One model version's sliding-window profile.

    Args:
        reference: the version's reference profile.
        item_ids: the export's items (the order of ``reference.item_bins``).
        window_s: the window.
        slots: sub-windows.
        clock: seconds (monotonic by default; tests pass their own).
    """

    def __init__(
        self,
        reference: Reference,
        item_ids: Sequence[str],
        *,
        window_s: float,
        slots: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profiler = Profiler(reference, item_ids)
        self.reference = reference
        self.window_s = float(window_s)
        self._slot_s = self.window_s / slots
        self._clock = clock
        self._slots = [self.profiler.new_counts() for _ in range(slots)]
        self._epochs = [-1] * slots
        self._lock = threading.Lock()
        self.started = time.time()

    def _slot(self) -> Counts:
        epoch = int(self._clock() // self._slot_s)
        i = epoch % len(self._slots)
        if self._epochs[i] != epoch:
            self._slots[i] = self.profiler.new_counts()
            self._epochs[i] = epoch
        return self._slots[i]

    def observe(self, history: Sequence[str], *, top1: float | None, fallback: bool, unknown_user: bool | None) -> None:
        """Count one reply (see :meth:`Profiler.observe`)."""
        with self._lock:
            self.profiler.observe(self._slot(), history, top1=top1, fallback=fallback, unknown_user=unknown_user)

    def snapshot(self) -> Counts:
        """The counts of the slots inside the window now."""
        with self._lock:
            oldest = int(self._clock() // self._slot_s) - len(self._slots) + 1
            total = self.profiler.new_counts()
            for epoch, counts in zip(self._epochs, self._slots, strict=True):
                if epoch >= oldest:
                    total.add(counts)
            return total

    def status(self, thresholds: Thresholds) -> dict[str, Any]:
        """:func:`~sparktf.monitoring.profile.compare` of the window with the reference."""
        out = compare(self.reference, self.snapshot(), thresholds)
        out["window_s"] = self.window_s
        return out
