"""Dynamic batch policy: pure decisions on a fake clock (ns)."""
from __future__ import annotations

from dataclasses import dataclass

from triton_asyncio.scheduling.batch_policy import (
    WAIT_FOR_ARRIVAL,
    BatchConfig,
    Decision,
    PriorityQueue,
    QueuePolicy,
    TimeoutAction,
    decide,
)

US = 1000


@dataclass
class Q:
    batch_size: int = 1
    arrived_ns: int = 0
    signature: object = "s"
    deadline_ns: int = 0


def _queue(*sizes: int, arrived: int = 0) -> list[Q]:
    return [Q(s, arrived) for s in sizes]


def test_empty_queue_waits_for_arrival():
    assert decide([], BatchConfig.make(8, (4, 8), 100), 0) == WAIT_FOR_ARRIVAL


def test_preferred_size_reached_dispatches_at_once():
    config = BatchConfig.make(8, (4, 8), max_queue_delay_us=100)
    assert decide(_queue(1, 1, 1, 1), config, now_ns=0) == Decision(4)
    # six queued: the largest preferred size reachable from the front is 4
    assert decide(_queue(1, 1, 1, 1, 1, 1), config, now_ns=0) == Decision(4)
    assert decide(_queue(*[1] * 10), config, now_ns=0) == Decision(8)


def test_below_preferred_waits_until_oldest_delay_expires():
    config = BatchConfig.make(8, (4, 8), max_queue_delay_us=100)
    queue = [Q(1, 10 * US), Q(1, 50 * US), Q(1, 60 * US)]
    assert decide(queue, config, now_ns=20 * US) == Decision(0, 110 * US)
    assert decide(queue, config, now_ns=109 * US).count == 0
    assert decide(queue, config, now_ns=110 * US) == Decision(3)  # partial batch after the delay


def test_delay_expired_sends_everything_that_fits():
    config = BatchConfig.make(8, (4, 8), max_queue_delay_us=100)
    assert decide(_queue(1, 1, 1, 1, 1, 1), config, now_ns=100 * US) == Decision(6)


def test_zero_delay_sends_what_is_queued():
    config = BatchConfig.make(8, (4, 8), max_queue_delay_us=0)
    assert decide(_queue(1), config, 0) == Decision(1)
    assert decide(_queue(1, 1, 1), config, 0) == Decision(3)


def test_no_preferred_sizes_means_max_batch_size():
    config = BatchConfig.make(4, (), max_queue_delay_us=100)
    assert config.preferred == frozenset({4})
    assert decide(_queue(1, 1), config, 0) == Decision(0, 100 * US)
    assert decide(_queue(1, 1, 1, 1, 1), config, 0) == Decision(4)


def test_max_batch_size_caps_whole_requests():
    config = BatchConfig.make(8, (8,), max_queue_delay_us=100)
    # 3 + 3 = 6, the next 3 would pass 8: the batch cannot grow, send the 6 now
    assert decide(_queue(3, 3, 3), config, 0) == Decision(2)
    assert decide(_queue(5, 3, 1), config, 0) == Decision(2)  # 5 + 3 is preferred


def test_shape_mismatch_splits_the_batch():
    config = BatchConfig.make(8, (4, 8), max_queue_delay_us=100)
    queue = [Q(1, 0, "a"), Q(1, 0, "a"), Q(1, 0, "b"), Q(1, 0, "a"), Q(1, 0, "a")]
    assert decide(queue, config, 0) == Decision(2)  # the "b" request ends the batch at once
    assert decide(queue[2:], config, 0) == Decision(1)


def test_batches_are_taken_from_the_front_in_order():
    config = BatchConfig.make(8, (2,), max_queue_delay_us=100)
    queue = [Q(1, t) for t in (1, 2, 3)]
    assert decide(queue, config, 0) == Decision(2)
    assert decide(queue[2:], config, 0) == Decision(0, 3 + 100 * US)  # the oldest left is the third


def _ids(queue: PriorityQueue) -> list[int]:
    return [q.batch_size for q in queue.ordered()]  # batch_size doubles as the item's name below


def test_levels_drain_highest_first_and_out_of_range_takes_the_default():
    queue = PriorityQueue(levels=3, default_level=2)
    assert [queue.level(p) for p in (0, 1, 2, 3, 4, 99)] == [2, 1, 2, 3, 2, 2]
    for name, priority in ((1, 3), (2, 0), (3, 1), (4, 9), (5, 2)):
        assert queue.push(Q(name), priority)
    assert _ids(queue) == [3, 2, 4, 5, 1]  # level 1, then level 2 FIFO, then level 3
    assert [q.batch_size for q in queue.pop(2)] == [3, 2] and _ids(queue) == [4, 5, 1] and len(queue) == 3


def test_no_levels_is_one_fifo_whatever_the_priority():
    queue = PriorityQueue()
    for name, priority in ((1, 5), (2, 0), (3, 1)):
        assert queue.push(Q(name), priority)
    assert _ids(queue) == [1, 2, 3]


def test_max_queue_size_is_per_level():
    queue = PriorityQueue(2, 2, QueuePolicy(max_queue_size=1), {1: QueuePolicy(max_queue_size=2)})
    assert queue.push(Q(1), 1) and queue.push(Q(2), 1)
    assert not queue.push(Q(3), 1)
    assert queue.push(Q(4), 2)
    assert not queue.push(Q(5), 0)  # the default level, 2, is full
    assert len(queue) == 3


def test_timeout_override_only_when_allowed_and_shorter():
    allowed = QueuePolicy(default_timeout_us=100, allow_timeout_override=True)
    assert [allowed.timeout_ns(t) for t in (50, 0, 200)] == [50 * US, 100 * US, 100 * US]
    assert QueuePolicy(default_timeout_us=100).timeout_ns(50) == 100 * US
    assert QueuePolicy(allow_timeout_override=True).timeout_ns(50) == 0  # no default: no timeout at all


def test_reject_expires_at_the_deadline_and_the_deadline_is_reported():
    queue = PriorityQueue(default_policy=QueuePolicy(default_timeout_us=100, allow_timeout_override=True))
    late, early, third = Q(1, 0), Q(2, 10 * US), Q(3, 20 * US)
    queue.push(late)
    queue.push(early, timeout_us=30)  # overrides the default: deadline 10 + 30
    queue.push(third)
    assert queue.next_deadline() == 40 * US
    assert queue.expire(39 * US) == [] and len(queue) == 3
    assert queue.expire(40 * US) == [early] and _ids(queue) == [1, 3]
    assert queue.next_deadline() == 100 * US
    assert queue.expire(120 * US) == [late, third] and len(queue) == 0 and queue.next_deadline() is None


def test_delay_moves_expired_requests_behind_the_others_of_their_level():
    delay = QueuePolicy(TimeoutAction.DELAY, default_timeout_us=100)
    queue = PriorityQueue(2, 1, delay, {2: QueuePolicy()})
    a, b, c = Q(1, 0), Q(2, 50 * US), Q(3, 0)
    queue.push(a, 1)
    queue.push(b, 1)
    queue.push(c, 2)
    assert queue.expire(100 * US) == []
    assert _ids(queue) == [2, 1, 3]  # a waits behind b, still ahead of level 2
    assert queue.next_deadline() == 150 * US  # a delayed request never expires again
    assert queue.expire(150 * US) == [] and _ids(queue) == [1, 2, 3] and len(queue) == 3


def test_remove_and_drain():
    queue = PriorityQueue(2, 1)
    a, b = Q(1), Q(2)
    queue.push(a, 2)
    queue.push(b, 1)
    assert queue.remove(a) and not queue.remove(a)
    assert queue.drain() == [b] and len(queue) == 0
