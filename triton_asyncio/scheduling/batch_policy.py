"""The dynamic batcher's choice, as a pure function: "send the first n requests now" or "wake at t".

Rules: no asyncio and no clock reads here; the driver (dynamic.py) passes the queue and `now` in
ns. The walk mirrors Triton core's `DynamicBatchScheduler::GetDynamicBatch`: requests join the
pending batch whole, in queue order, while the total stays within max_batch_size and their shape
signature equals the first request's. `PriorityQueue` is Triton's `PriorityQueue`: one FIFO per
priority level (level 1 first), each with its queue policy (size bound, timeout, REJECT or DELAY).
"""
from __future__ import annotations

import collections
import enum
import itertools
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


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


class TimeoutAction(enum.IntEnum):
    """`ModelQueuePolicy.TimeoutAction`, same numbers as the proto."""

    REJECT = 0
    DELAY = 1


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """One priority level's `ModelQueuePolicy`; zeros mean "no timeout" and "unbounded"."""

    timeout_action: TimeoutAction = TimeoutAction.REJECT
    default_timeout_us: int = 0
    allow_timeout_override: bool = False
    max_queue_size: int = 0

    @classmethod
    def of(cls, msg: Any) -> QueuePolicy:
        """From a `ModelQueuePolicy` message (or anything with its field names)."""
        return cls(TimeoutAction(msg.timeout_action), msg.default_timeout_microseconds,
                   msg.allow_timeout_override, msg.max_queue_size)

    def timeout_ns(self, requested_us: int) -> int:
        """The request's `timeout` wins only when allowed, non-zero and below the default (0: none)."""
        timeout = self.default_timeout_us
        if self.allow_timeout_override and 0 < requested_us < timeout:
            timeout = requested_us
        return timeout * 1000


class Timed(Queued, Protocol):
    deadline_ns: int  # set by PriorityQueue.push; 0 means it never expires


class PriorityQueue:
    """Per-level FIFOs in priority order; each level's expired DELAY requests wait behind the rest.

    Sans-I/O: `now_ns` is passed in, expiry only happens when the driver calls `expire`.
    """

    def __init__(self, levels: int = 0, default_level: int = 0, default_policy: QueuePolicy | None = None,
                 policies: Mapping[int, QueuePolicy] | None = None) -> None:
        count = max(1, levels)
        self._levels = levels
        self._default_level = default_level if 1 <= default_level <= count else 1
        default_policy = default_policy or QueuePolicy()
        self._policies = [(policies or {}).get(level, default_policy) for level in range(1, count + 1)]
        self._queues: list[collections.deque[Timed]] = [collections.deque() for _ in range(count)]
        self._delayed: list[collections.deque[Timed]] = [collections.deque() for _ in range(count)]
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def level(self, priority: int) -> int:
        """Priority 0, or one past `priority_levels`, takes the default level."""
        if priority == 0 or priority > self._levels:
            return self._default_level
        return priority

    def push(self, item: Timed, priority: int = 0, timeout_us: int = 0) -> bool:
        """Enqueue and stamp the deadline; False when the level's queue is full."""
        i = self.level(priority) - 1
        policy = self._policies[i]
        if policy.max_queue_size and len(self._queues[i]) + len(self._delayed[i]) >= policy.max_queue_size:
            return False
        timeout = policy.timeout_ns(timeout_us)
        item.deadline_ns = item.arrived_ns + timeout if timeout else 0
        self._queues[i].append(item)
        self._size += 1
        return True

    def expire(self, now_ns: int) -> list[Timed]:
        """Apply each level's timeout action to requests past their deadline; return the rejected."""
        rejected: list[Timed] = []
        for i, queue in enumerate(self._queues):
            if not any(_expired(item, now_ns) for item in queue):
                continue
            delay = self._policies[i].timeout_action is TimeoutAction.DELAY
            kept: collections.deque[Timed] = collections.deque()
            for item in queue:
                if not _expired(item, now_ns):
                    kept.append(item)
                elif delay:
                    self._delayed[i].append(item)  # delayed once; it never expires again
                else:
                    rejected.append(item)
            self._queues[i] = kept
        self._size -= len(rejected)
        return rejected

    def next_deadline(self) -> int | None:
        """The earliest deadline still pending, so that the driver wakes for it."""
        deadlines = [item.deadline_ns for queue in self._queues for item in queue if item.deadline_ns]
        return min(deadlines, default=None)

    def ordered(self) -> Sequence[Timed]:
        """The queue front to back, as the batch walk sees it."""
        parts = [q for pair in zip(self._queues, self._delayed, strict=True) for q in pair if q]
        if len(parts) == 1:
            return parts[0]
        return list(itertools.chain.from_iterable(parts))

    def pop(self, count: int) -> list[Timed]:
        """Take the first `count` requests of `ordered()`."""
        taken: list[Timed] = []
        for queue in (q for pair in zip(self._queues, self._delayed, strict=True) for q in pair):
            while queue and len(taken) < count:
                taken.append(queue.popleft())
        self._size -= len(taken)
        return taken

    def remove(self, item: Timed) -> bool:
        for queue in itertools.chain(self._queues, self._delayed):
            try:
                queue.remove(item)
            except ValueError:
                continue
            self._size -= 1
            return True
        return False

    def drain(self) -> list[Timed]:
        return self.pop(self._size)


def _expired(item: Timed, now_ns: int) -> bool:
    return item.deadline_ns != 0 and item.deadline_ns <= now_ns
