"""Sequence batcher: the slot table with a fake clock, and the batcher over a fake executor."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from triton_asyncio.core.request import FLAG_SEQUENCE_END, FLAG_SEQUENCE_START, InferenceRequest
from triton_asyncio.core.response import InferenceResponse
from triton_asyncio.core.stats import ModelStats
from triton_asyncio.core.tensor import Tensor
from triton_asyncio.errors import ErrorCode, TritonError
from triton_asyncio.scheduling.sequence import Control, Oldest, SequenceBatcher, SlotTable, StateSpec


class Clock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def test_slots_lowest_first_and_reused_after_end():
    table = SlotTable(2, 2, idle_us=1000, clock=Clock())
    assert [table.start(c) for c in (1, "a", 3, 4)] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert table.start(5) is None
    table.end("a")
    assert table.lookup("a") is None
    assert table.start(5) == (0, 1)


def test_restart_of_active_sequence_keeps_its_slot():
    table = SlotTable(1, 2, clock=Clock())
    assert table.start(7) == (0, 0)
    assert table.start(7) == (0, 0)
    assert table.active_count == 1


def test_idle_expiry_from_last_request():
    clock = Clock()
    table = SlotTable(1, 2, idle_us=1000, clock=clock)
    table.start(1)
    table.start("s")
    clock.ns = 800_000
    table.touch("s")
    clock.ns = 1_000_001
    assert table.expire() == [1]
    assert table.lookup("s") == (0, 1)
    assert table.next_deadline_ns() == 1_800_000
    clock.ns = 1_800_001
    assert table.expire() == ["s"]
    assert table.free_count == 2


def test_default_idle_is_one_second():
    assert SlotTable(1, 1, idle_us=0).idle_ns == 1_000_000_000


def _sync(fn):
    """Run an async test on a fresh event loop (the suite has no asyncio plugin)."""
    def run():
        asyncio.run(fn())
    run.__name__ = fn.__name__
    return run


class Recorder:
    name = "rec_0_0"

    def __init__(self) -> None:
        self.calls: list[list[InferenceRequest]] = []

    def execute(self, requests):
        self.calls.append(list(requests))
        return [InferenceResponse(r.model_name, "1", r.id, list(r.inputs.values())) for r in requests]


CONTROLS = (Control("START", "START", "INT32", (0, 1)), Control("END", "END", "FP32", (0.0, 1.0)),
            Control("READY", "READY", "BOOL", (False, True)), Control("CORRID", "CORRID", "UINT64"))


def _req(corrid, flags=0, value=0) -> InferenceRequest:
    t = Tensor("INPUT", "INT32", [1, 1], array=np.array([[value]], np.int32))
    return InferenceRequest("m", inputs={"INPUT": t}, correlation_id=corrid, flags=flags, id=str(value))


def _batcher(executor, max_batch_size=0, controls=CONTROLS):
    return SequenceBatcher([executor], ModelStats(), model_name="m", max_batch_size=max_batch_size,
                           controls=controls)


@_sync
async def test_control_values_per_request():
    rec = Recorder()
    b = _batcher(rec)
    await b.submit(_req(9, FLAG_SEQUENCE_START, 1))
    await b.submit(_req(9, 0, 2))
    await b.submit(_req(9, FLAG_SEQUENCE_END, 3))
    got = [{n: r.inputs[n].as_numpy().tolist() for n in ("START", "END", "READY", "CORRID")}
           for (r,) in rec.calls]
    assert got == [{"START": [1], "END": [0.0], "READY": [True], "CORRID": [9]},
                   {"START": [0], "END": [0.0], "READY": [True], "CORRID": [9]},
                   {"START": [0], "END": [1.0], "READY": [True], "CORRID": [9]}]
    assert rec.calls[0][0].inputs["CORRID"].datatype == "UINT64"
    assert b.table.active_count == 0
    assert b.stats.success.count == 3
    await b.stop()


@_sync
async def test_order_within_sequence_and_batching_across_sequences():
    rec = Recorder()
    b = _batcher(rec, max_batch_size=2)
    await asyncio.gather(b.submit(_req(1, FLAG_SEQUENCE_START, 10)), b.submit(_req("x", FLAG_SEQUENCE_START, 20)))
    results = await asyncio.gather(*(b.submit(_req(c, 0, v)) for c, v in ((1, 11), ("x", 21), (1, 12), ("x", 22))))
    assert [r.id for r in results] == ["11", "21", "12", "22"]
    order = {c: [r.id for call in rec.calls for r in call if r.correlation_id == c] for c in (1, "x")}
    assert order == {1: ["10", "11", "12"], "x": ["20", "21", "22"]}
    assert max(len(call) for call in rec.calls) == 2
    assert rec.calls[-1][0].inputs["START"].shape == [1, 1]
    await b.stop()


@_sync
async def test_non_start_on_unknown_sequence():
    b = _batcher(Recorder())
    with pytest.raises(TritonError) as e:
        await b.submit(_req(1234))
    assert e.value.code == ErrorCode.INVALID_ARG
    assert e.value.message == (
        "inference request for sequence 1234 to model 'm' must specify the START flag on the first request "
        "of the sequence")
    await b.stop()


@_sync
async def test_missing_correlation_id_and_batch_size():
    b = _batcher(Recorder(), max_batch_size=4)
    with pytest.raises(TritonError, match="must specify a non-zero or non-empty correlation ID"):
        await b.submit(_req(0, FLAG_SEQUENCE_START))
    r = _req(1, FLAG_SEQUENCE_START)
    r.inputs["INPUT"] = Tensor("INPUT", "INT32", [2, 1], array=np.zeros((2, 1), np.int32))
    with pytest.raises(TritonError, match="must specify batch-size 1 due to requirements of sequence batcher"):
        await b.submit(r)
    await b.stop()


@_sync
async def test_ended_sequence_needs_start_again():
    b = _batcher(Recorder())
    await b.submit(_req("s", FLAG_SEQUENCE_START | FLAG_SEQUENCE_END))
    with pytest.raises(TritonError, match="must specify the START flag"):
        await b.submit(_req("s"))
    await b.stop()


@_sync
async def test_backlog_admitted_when_slot_frees():
    b = _batcher(Recorder())
    await b.submit(_req(1, FLAG_SEQUENCE_START))
    waiting = asyncio.ensure_future(b.submit(_req(2, FLAG_SEQUENCE_START, 5)))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await b.submit(_req(1, FLAG_SEQUENCE_END))
    assert (await asyncio.wait_for(waiting, 1)).id == "5"
    await b.stop()


def _oldest(executor, candidates=4, max_batch_size=8, **kw):
    return SequenceBatcher([executor], ModelStats(), model_name="m", max_batch_size=max_batch_size,
                           oldest=Oldest(candidates, (), 0), **kw)


@_sync
async def test_oldest_batches_sequences_oldest_first_one_request_per_sequence():
    rec = Recorder()
    b = _oldest(rec)
    # all enqueued before the worker runs: START of 1 and "y", then two more of 1 and one of "y"
    results = await asyncio.gather(b.submit(_req(1, FLAG_SEQUENCE_START, 10)), b.submit(_req(1, 0, 11)),
                                   b.submit(_req("y", FLAG_SEQUENCE_START, 20)), b.submit(_req(1, 0, 12)),
                                   b.submit(_req("y", FLAG_SEQUENCE_END, 21)))
    assert [r.id for r in results] == ["10", "11", "20", "12", "21"]
    assert [[r.id for r in call] for call in rec.calls] == [["10", "20"], ["11", "21"], ["12"]]
    assert (b.stats.execution_count, b.stats.inference_count) == (3, 5)
    await b.stop()


@_sync
async def test_oldest_backlog_keeps_later_requests_until_a_candidate_ends():
    rec = Recorder()
    b = _oldest(rec, candidates=1)
    await b.submit(_req(1, FLAG_SEQUENCE_START, 1))
    # sequence 2 finds no candidate slot: its START and its next request wait together
    waiting = [asyncio.ensure_future(b.submit(_req(2, FLAG_SEQUENCE_START, 20))),
               asyncio.ensure_future(b.submit(_req(2, FLAG_SEQUENCE_END, 21)))]
    await asyncio.sleep(0)
    assert not any(f.done() for f in waiting)
    await b.submit(_req(1, FLAG_SEQUENCE_END, 2))
    assert [r.id for r in await asyncio.wait_for(asyncio.gather(*waiting), 5)] == ["20", "21"]
    assert [r.id for call in rec.calls for r in call] == ["1", "2", "20", "21"]
    assert b.table.active_count == 0
    await b.stop()


@_sync
async def test_backlog_timeout_fails_the_whole_waiting_sequence():
    b = _batcher(Recorder())
    await b.submit(_req(1, FLAG_SEQUENCE_START))
    late = _req(2, FLAG_SEQUENCE_START)
    late.timeout_us = 1000
    with pytest.raises(TritonError) as e:
        await asyncio.wait_for(b.submit(late), 5)
    assert e.value.code == ErrorCode.UNAVAILABLE
    assert e.value.message == "timeout of the corresponding sequence has been expired"
    with pytest.raises(TritonError, match="must specify the START flag"):
        await b.submit(_req(2))
    await b.stop()


@_sync
async def test_idle_sequence_is_released_and_its_slot_goes_to_the_backlog():
    clock = Clock()
    b = SequenceBatcher([Recorder()], ModelStats(), model_name="m", max_batch_size=0, idle_us=1000, clock=clock)
    await b.submit(_req(1, FLAG_SEQUENCE_START))
    waiting = asyncio.ensure_future(b.submit(_req(2, FLAG_SEQUENCE_START, 5)))
    await asyncio.sleep(0)
    assert not waiting.done()
    clock.ns = 2_000_000  # past the idle limit: the reaper releases sequence 1
    assert (await asyncio.wait_for(waiting, 5)).id == "5"
    with pytest.raises(TritonError, match="inference request for sequence 1 to model 'm' must specify the START"):
        await b.submit(_req(1))
    await b.stop()


class Accumulator:
    """OUTPUT = INPUT + STATE_IN, STATE_OUT = OUTPUT, per request, like the simple_state model."""

    name = "acc_0_0"

    def __init__(self) -> None:
        self.batches: list[int] = []

    def execute(self, requests):
        self.batches.append(len(requests))
        out = []
        for r in requests:
            total = r.inputs["INPUT"].as_numpy() + r.inputs["STATE_IN"].as_numpy()
            out.append(InferenceResponse(r.model_name, "1", r.id, [Tensor("OUTPUT", "INT32", [1, 1], array=total),
                                                                   Tensor("STATE_OUT", "INT32", [1, 1], array=total)]))
        return out


STATE = (StateSpec("STATE_IN", "STATE_OUT", "INT32", (1,)),)


def _value(response) -> int:
    assert [t.name for t in response.outputs] == ["OUTPUT"]  # the state output stays inside
    return int(response.outputs[0].as_numpy()[0, 0])


@pytest.mark.parametrize("oldest", [False, True])
def test_implicit_state_accumulates_per_sequence(oldest):
    async def run():
        acc = Accumulator()
        b = SequenceBatcher([acc], ModelStats(), model_name="m", max_batch_size=4, states=STATE,
                            visible_outputs=frozenset({"OUTPUT"}), oldest=Oldest(4) if oldest else None)
        # queued together: each request's state is its predecessor's output, rows batched across sequences
        steps = [(1, FLAG_SEQUENCE_START, 1), ("s", FLAG_SEQUENCE_START, 100), (1, 0, 2), ("s", 0, 200),
                 (1, FLAG_SEQUENCE_END, 3), ("s", FLAG_SEQUENCE_END, 300)]
        got = await asyncio.gather(*(b.submit(_req(c, f, v)) for c, f, v in steps))
        assert [_value(r) for r in got] == [1, 100, 3, 300, 6, 600]
        assert max(acc.batches) == 2
        # a new run of id 1 starts again from the initial (zero) state
        assert _value(await b.submit(_req(1, FLAG_SEQUENCE_START, 7))) == 7
        assert _value(await b.submit(_req(1, FLAG_SEQUENCE_END, 1))) == 8
        assert b._stored == {}
        await b.stop()
    asyncio.run(run())
