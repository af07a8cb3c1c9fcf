"""The dynamic batcher's choice, as a pure function: "send the first n requests now" or "wake at t".

Rules: no asyncio and no clock reads here; the driver (dynamic.py) passes the queue and `now` in
ns. The walk mirrors Triton core's `DynamicBatchScheduler::GetDynamicBatch` (one priority level,
no request timeouts): requests join the pending batch whole, in FIFO order, while the total stays
within max_batch_size and their shape signature equals the first request's.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol


class Queued(Protocol):
    """What the policy needs to know about one queued request."""

    batch_size: int  # the request's own batch (first dim), at least 1
    arrived_ns: int
    signature: Hashable  # requests batch together only when these are equal


@dataclass(frozen=True, slots=True)
class BatchConfig:
    max_batch_size: int
    preferred: frozenset[int]  # empty means (max_batch_size,), as config normalisation sets it
    max_queue_delay_ns: int = 0

    @classmethod
    def make(cls, max_batch_size: int, preferred: Sequence[int] = (), max_queue_delay_us: int = 0) -> BatchConfig:
        sizes = frozenset(preferred) or frozenset((max_batch_size,))
        return cls(max_batch_size, sizes, max_queue_delay_us * 1000)

    @property
    def max_preferred(self) -> int:
        return max(self.preferred)


@dataclass(frozen=True, slots=True)
class Decision:
    """Send the first `count` requests now; or, with count 0, retry at `wake_at_ns` (or on arrival)."""

    count: int = 0
    wake_at_ns: int | None = None


WAIT_FOR_ARRIVAL = Decision()


@dataclass(slots=True)
class _Walk:
    count: int = 0  # requests in the pending batch
    total: int = 0  # their summed batch size
    best_count: int = 0  # requests in the best (preferred or saturated) batch found
    send_now: bool = False  # the pending batch cannot grow


def _walk(queue: Sequence[Queued], config: BatchConfig) -> _Walk:
    w = _Walk()
    max_pref = config.max_preferred
    first = queue[0].signature if queue else None
    for item in queue:
        size = max(1, item.batch_size)
        if w.count:
            if w.total + size > max_pref and w.best_count == 0:
                w.best_count = w.count  # no preferred size below this point: remember the saturated batch
            if w.total + size > config.max_batch_size or item.signature != first:
                w.send_now = True
                break
        w.count += 1
        w.total += size
        if w.total in config.preferred:
            w.best_count = w.count
    return w


def decide(queue: Sequence[Queued], config: BatchConfig, now_ns: int) -> Decision:
    """Triton's decision for a free instance, given the queue front to back."""
    if not queue:
        return WAIT_FOR_ARRIVAL
    w = _walk(queue, config)
    delay = config.max_queue_delay_ns
    waited = now_ns - queue[0].arrived_ns
    delay_exceeded = delay != 0 and waited >= delay
    if w.best_count and not delay_exceeded:
        return Decision(w.best_count)
    if w.send_now or w.total >= config.max_preferred or delay == 0 or delay_exceeded:
        return Decision(w.count)
    return Decision(0, queue[0].arrived_ns + delay)
