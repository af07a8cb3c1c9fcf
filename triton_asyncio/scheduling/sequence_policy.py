"""Which queued sequence requests one instance runs next, as pure functions of (queues, now).

Rules: no asyncio and no clock reads; the driver passes each slot's FIFO and `now` in ns and pops
the front of every slot it is told. Only a slot's front request is ever a candidate, so a batch
holds at most one request per sequence and a sequence's requests run in arrival order.
* direct: the front of every busy slot whose shapes match the first (batching models; optionally
  held back for `minimum_slot_utilization` up to `max_queue_delay_microseconds`), else one slot
  round-robin.
* oldest: the fronts, oldest first, go through the dynamic batcher's decision (`batch_policy.decide`:
  preferred sizes, max batch size, `max_queue_delay_microseconds`, equal shapes).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .batch_policy import BatchConfig, Queued, decide


@dataclass(frozen=True, slots=True)
class Pick:
    """Run the fronts of `slots` now (in this order); with none, retry at `wake_at_ns` or on arrival."""

    slots: tuple[int, ...] = ()
    wake_at_ns: int | None = None


NOTHING = Pick()


@dataclass(frozen=True, slots=True)
class DirectWait:
    """`direct {}`'s wait: with both set, a batch waits until busy slots / max_batch_size reaches
    `minimum_slot_utilization` or its oldest front waited `max_queue_delay`."""

    max_batch_size: int
    max_queue_delay_ns: int = 0
    minimum_slot_utilization: float = 0.0


def pick_direct(queues: Sequence[Sequence[Queued]], batching: bool, next_slot: int = 0,
                wait: DirectWait | None = None, now_ns: int = 0) -> Pick:
    """Every busy slot's front when batching; else the first busy slot from `next_slot` on."""
    busy = [i for i, q in enumerate(queues) if q]
    if not busy:
        return NOTHING
    if batching:
        # a front whose shapes differ from the first busy slot's waits a round (Triton pads its row)
        first = queues[busy[0]][0].signature
        slots = tuple(i for i in busy if queues[i][0].signature == first)
        if wait is not None and wait.max_queue_delay_ns > 0 and wait.minimum_slot_utilization > 0:
            oldest = min(queues[i][0].arrived_ns for i in slots)
            deadline = oldest + wait.max_queue_delay_ns
            if len(slots) / max(1, wait.max_batch_size) < wait.minimum_slot_utilization and now_ns < deadline:
                return Pick((), deadline)
        return Pick(slots)
    n = len(queues)
    for k in range(n):
        slot = (next_slot + k) % n
        if queues[slot]:
            return Pick((slot,))
    return NOTHING


def oldest_config(max_batch_size: int, preferred: Sequence[int] = (), max_queue_delay_us: int = 0) -> BatchConfig:
    """The `oldest {}` block as the dynamic batcher's config; a model without batching runs one at a time."""
    if max_batch_size <= 0:
        return BatchConfig.make(1, (1,), 0)
    return BatchConfig.make(max_batch_size, [p for p in preferred if p <= max_batch_size], max_queue_delay_us)


def pick_oldest(queues: Sequence[Sequence[Queued]], config: BatchConfig, now_ns: int) -> Pick:
    """The dynamic batcher's choice over the slots' front requests, oldest first."""
    fronts = sorted((q[0].arrived_ns, i) for i, q in enumerate(queues) if q)
    if not fronts:
        return NOTHING
    decision = decide([queues[i][0] for _, i in fronts], config, now_ns)
    if decision.count == 0:
        return Pick((), decision.wake_at_ns)
    return Pick(tuple(i for _, i in fronts[:decision.count]))
