"""The sequence batcher's bookkeeping, pure: which sequence holds which slot, and who waits.

Rules: no asyncio; time comes from an injected clock (ns). `SlotTable` maps a correlation id to
(instance, slot), hands out the lowest free slot first and releases sequences idle longer than
`max_sequence_idle_microseconds` (measured from their last request; a sequence with queued or
running work is never idle). `Backlog` holds whole sequences that found no free slot, FIFO by their
first request, with the deadline of that request's `timeout` (spec 6.4: timeouts apply only here).
"""
from __future__ import annotations

import collections
import heapq
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Generic, TypeVar

DEFAULT_IDLE_US = 1_000_000

CorrId = int | str
Slot = tuple[int, int]  # (instance index, slot index within the instance)
T = TypeVar("T")


class SlotTable:
    """Correlation id -> (instance, slot); lowest free slot first; idle expiry by `clock` (ns)."""

    def __init__(self, instances: int, slots_per_instance: int, idle_us: int = DEFAULT_IDLE_US,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._free = [(i, s) for i in range(instances) for s in range(slots_per_instance)]
        heapq.heapify(self._free)
        self._active: dict[CorrId, Slot] = {}
        self._last: dict[CorrId, int] = {}
        self.idle_ns = (idle_us or DEFAULT_IDLE_US) * 1000
        self._clock = clock

    def lookup(self, corrid: CorrId) -> Slot | None:
        return self._active.get(corrid)

    def start(self, corrid: CorrId) -> Slot | None:
        """The slot for a new sequence (its old slot if still active), None when none is free."""
        slot = self._active.get(corrid)
        if slot is None:
            if not self._free:
                return None
            slot = heapq.heappop(self._free)
            self._active[corrid] = slot
        self._last[corrid] = self._clock()
        return slot

    def touch(self, corrid: CorrId) -> None:
        if corrid in self._active:
            self._last[corrid] = self._clock()

    def end(self, corrid: CorrId) -> None:
        slot = self._active.pop(corrid, None)
        self._last.pop(corrid, None)
        if slot is not None:
            heapq.heappush(self._free, slot)

    def expire(self, busy: Collection[Slot] = ()) -> list[CorrId]:
        """Release every sequence idle for longer than the limit; returns their ids. Sequences on
        `busy` slots (requests queued or executing) are not idle, whatever their last request."""
        now = self._clock()
        gone = [c for c, t in self._last.items() if now - t > self.idle_ns and self._active[c] not in busy]
        for corrid in gone:
            self.end(corrid)
        return gone

    def next_deadline_ns(self) -> int | None:
        return min(self._last.values()) + self.idle_ns if self._last else None

    @property
    def free_count(self) -> int:
        return len(self._free)

    @property
    def active_count(self) -> int:
        return len(self._active)


@dataclass(slots=True)
class Waiting(Generic[T]):
    """One backlogged sequence: its requests in arrival order; `ended` once its END arrived."""

    items: list[T] = field(default_factory=list)
    deadline_ns: int = 0  # 0: waits as long as it takes
    ended: bool = False


class Backlog(Generic[T]):
    """Sequences waiting for a slot, oldest first."""

    def __init__(self) -> None:
        self._waiting: collections.OrderedDict[CorrId, Waiting[T]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, corrid: object) -> bool:
        return corrid in self._waiting

    def add(self, corrid: CorrId, item: T, deadline_ns: int = 0, end: bool = False) -> None:
        """A new sequence (or, for an id already waiting, a restart that joins its queue)."""
        waiting = self._waiting.get(corrid)
        if waiting is None:
            self._waiting[corrid] = Waiting([item], deadline_ns, end)
        else:
            waiting.items.append(item)
            waiting.ended = end

    def append(self, corrid: CorrId, item: T, end: bool) -> bool:
        """A later request of a waiting sequence; False when `corrid` is not waiting."""
        waiting = self._waiting.get(corrid)
        if waiting is None:
            return False
        waiting.items.append(item)
        waiting.ended = waiting.ended or end
        return True

    def pop(self) -> tuple[CorrId, Waiting[T]]:
        """The sequence that waited longest."""
        return self._waiting.popitem(last=False)

    def expire(self, now_ns: int) -> list[tuple[CorrId, Waiting[T]]]:
        """Remove and return the sequences whose deadline passed."""
        gone = [(c, w) for c, w in self._waiting.items() if w.deadline_ns and w.deadline_ns <= now_ns]
        for corrid, _ in gone:
            del self._waiting[corrid]
        return gone

    def next_deadline_ns(self) -> int | None:
        return min((w.deadline_ns for w in self._waiting.values() if w.deadline_ns), default=None)

    def drain(self) -> list[tuple[CorrId, Waiting[T]]]:
        gone = list(self._waiting.items())
        self._waiting.clear()
        return gone
