"""Dynamic batch policy: pure decisions on a fake clock (ns)."""
from __future__ import annotations

from dataclasses import dataclass

from triton_asyncio.scheduling.batch_policy import WAIT_FOR_ARRIVAL, BatchConfig, Decision, decide

US = 1000


@dataclass
class Q:
    batch_size: int = 1
    arrived_ns: int = 0
    signature: object = "s"


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
