"""The sequence batcher's pure choices: direct fronts, and the oldest strategy under a fake clock."""
from __future__ import annotations

from dataclasses import dataclass

from triton_asyncio.scheduling.sequence_policy import (
    DirectWait,
    Pick,
    oldest_config,
    pick_direct,
    pick_oldest,
)


@dataclass
class Q:
    arrived_ns: int
    signature: object = "s"
    batch_size: int = 1


def test_direct_batching_takes_every_busy_front_with_the_first_shape():
    queues = [[Q(5)], [], [Q(1, "other")], [Q(2), Q(3)]]
    assert pick_direct(queues, batching=True) == Pick((0, 3))
    assert pick_direct([[], []], batching=True) == Pick()


def test_direct_without_batching_round_robins_from_next_slot():
    queues = [[Q(1)], [], [Q(2)]]
    assert pick_direct(queues, batching=False, next_slot=0).slots == (0,)
    assert pick_direct(queues, batching=False, next_slot=1).slots == (2,)
    assert pick_direct(queues, batching=False, next_slot=3 % 3).slots == (0,)


def test_oldest_orders_fronts_by_arrival_and_sends_a_preferred_batch_at_once():
    config = oldest_config(8, (3,), max_queue_delay_us=100_000)
    queues = [[Q(30), Q(1)], [Q(10)], [], [Q(20)], [Q(40)]]
    # only fronts are candidates: slot 0's second request (arrived at 1) must wait for its first
    assert pick_oldest(queues, config, now_ns=41) == Pick((1, 3, 0))


def test_oldest_waits_for_the_delay_then_sends_what_it_has():
    config = oldest_config(8, (4,), max_queue_delay_us=200)
    queues = [[Q(1000)], [Q(1500)]]
    assert pick_oldest(queues, config, now_ns=1000 + 199_999) == Pick((), 1000 + 200_000)
    assert pick_oldest(queues, config, now_ns=1000 + 200_000) == Pick((0, 1))


def test_oldest_without_delay_sends_at_once_and_caps_at_max_batch_size():
    config = oldest_config(2, (), 0)
    queues = [[Q(3)], [Q(1)], [Q(2)]]
    assert pick_oldest(queues, config, now_ns=3) == Pick((1, 2))


def test_oldest_splits_on_shape_and_runs_one_at_a_time_without_batching():
    queues = [[Q(1, "a")], [Q(2, "b")], [Q(3, "a")]]
    assert pick_oldest(queues, oldest_config(8, (8,), 1000), now_ns=4) == Pick((0,))
    assert pick_oldest(queues, oldest_config(0), now_ns=4) == Pick((0,))
    assert pick_oldest([[], []], oldest_config(8), now_ns=4) == Pick()


def test_oldest_config_drops_preferred_sizes_above_max():
    assert oldest_config(4, (2, 16)).preferred == frozenset({2})
    assert oldest_config(4).preferred == frozenset({4})


def test_direct_waits_for_slot_utilization_up_to_the_delay():
    wait = DirectWait(max_batch_size=4, max_queue_delay_ns=1000, minimum_slot_utilization=0.75)
    queues = [[Q(100)], [Q(200)], [], []]
    assert pick_direct(queues, True, wait=wait, now_ns=500) == Pick((), 1100)
    assert pick_direct(queues, True, wait=wait, now_ns=1100) == Pick((0, 1))
    queues[2].append(Q(300))
    assert pick_direct(queues, True, wait=wait, now_ns=500) == Pick((0, 1, 2))
    assert pick_direct(queues, True, wait=DirectWait(4, 1000, 0.0), now_ns=0) == Pick((0, 1, 2))
