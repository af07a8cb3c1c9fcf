"""Slot table idle rules and the backlog, pure, with a fake clock."""
from __future__ import annotations

from triton_asyncio.scheduling.sequence_slots import Backlog, SlotTable


class Clock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def test_busy_slots_never_idle():
    clock = Clock()
    table = SlotTable(1, 2, idle_us=1000, clock=clock)
    table.start("a")
    table.start("b")
    clock.ns = 5_000_000
    assert table.expire(busy={(0, 0)}) == ["b"]
    assert table.lookup("a") == (0, 0)
    assert table.expire() == ["a"]


def test_backlog_is_fifo_by_first_request_and_keeps_later_requests():
    backlog: Backlog[str] = Backlog()
    backlog.add(2, "2a")
    backlog.add("x", "xa")
    assert backlog.append(2, "2b", end=True)
    assert not backlog.append(3, "3a", end=False)
    assert 2 in backlog and 3 not in backlog and len(backlog) == 2
    corrid, waiting = backlog.pop()
    assert (corrid, waiting.items, waiting.ended) == (2, ["2a", "2b"], True)
    assert backlog.pop()[0] == "x"


def test_backlog_restart_joins_the_queue_and_one_shot_is_ended():
    backlog: Backlog[str] = Backlog()
    backlog.add(1, "a", end=True)
    backlog.add(1, "b")
    _, waiting = backlog.pop()
    assert waiting.items == ["a", "b"] and not waiting.ended


def test_backlog_expiry_by_deadline():
    backlog: Backlog[str] = Backlog()
    backlog.add(1, "a", deadline_ns=100)
    backlog.add(2, "b")
    backlog.add(3, "c", deadline_ns=50)
    assert backlog.next_deadline_ns() == 50
    assert [(c, w.items) for c, w in backlog.expire(99)] == [(3, ["c"])]
    assert [c for c, _ in backlog.expire(100)] == [1]
    assert backlog.next_deadline_ns() is None
    assert [c for c, _ in backlog.drain()] == [2]
