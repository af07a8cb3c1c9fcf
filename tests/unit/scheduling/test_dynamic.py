"""Dynamic batcher: batches formed from concurrent submits, errors, cancellation, ordering."""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from triton_asyncio.core.request import InferenceRequest, RequestState
from triton_asyncio.core.response import InferenceResponse
from triton_asyncio.core.stats import ModelStats
from triton_asyncio.core.tensor import Tensor
from triton_asyncio.errors import ErrorCode, TritonError
from triton_asyncio.scheduling.batch_policy import QueuePolicy, TimeoutAction
from triton_asyncio.scheduling.dynamic import DynamicBatcher

LONG_DELAY_US = 60_000_000  # never expires within a test: batches form by size only


class Recorder:
    """Echoes each request's input and records the batch sizes it was given."""

    def __init__(self, name: str = "rec_0", gate: threading.Event | None = None) -> None:
        self.name = name
        self.gate = gate
        self.fail = False
        self.batches: list[int] = []
        self.seen: list[str] = []

    def execute(self, requests):
        if self.gate is not None:
            assert self.gate.wait(10)
        self.batches.append(sum(r.inputs["IN"].shape[0] for r in requests))
        self.seen.extend(r.id for r in requests)
        if self.fail:
            raise ValueError("boom")
        return [InferenceResponse(r.model_name, "1", r.id, list(r.inputs.values())) for r in requests]


def _request(i: int = 0, rows: int = 1, width: int = 4, **kw) -> InferenceRequest:
    t = Tensor("IN", "INT32", [rows, width], array=np.full((rows, width), i, np.int32))
    return InferenceRequest("m", id=str(i), inputs={"IN": t}, **kw)


def _batcher(instances, stats=None, **kw) -> DynamicBatcher:
    kw.setdefault("max_batch_size", 8)
    kw.setdefault("max_queue_delay_us", LONG_DELAY_US)
    return DynamicBatcher(instances, stats or ModelStats(), **kw)


def test_concurrent_submits_form_one_batch_and_stats_count_it():
    async def run():
        rec, stats = Recorder(), ModelStats()
        sched = _batcher([rec], stats, preferred_batch_sizes=(8,))
        responses = await asyncio.gather(*(sched.submit(_request(i)) for i in range(8)))
        assert [r.id for r in responses] == [str(i) for i in range(8)]
        assert all(int(r.outputs[0].array[0, 0]) == i for i, r in enumerate(responses))
        assert rec.batches == [8]
        assert stats.execution_count == 1 and stats.inference_count == 8
        assert stats.success.count == 8 and stats.queue.count == 8 and stats.compute_infer.count == 8
        assert set(stats.batches) == {8} and stats.batches[8].compute_infer.count == 1
        assert sched.inflight_count() == 0
        await sched.stop()

    asyncio.run(run())


def test_preferred_sizes_split_sixteen_requests():
    async def run():
        rec, stats = Recorder(), ModelStats()
        sched = _batcher([rec], stats, preferred_batch_sizes=(4, 8))
        await asyncio.gather(*(sched.submit(_request(i)) for i in range(16)))
        assert sum(rec.batches) == 16 and set(rec.batches) <= {4, 8}
        assert stats.execution_count == len(rec.batches) < stats.inference_count == 16
        await sched.stop()

    asyncio.run(run())


def test_delay_expiry_sends_a_partial_batch():
    async def run():
        rec = Recorder()
        sched = _batcher([rec], preferred_batch_sizes=(4,), max_queue_delay_us=1000)
        response = await asyncio.wait_for(sched.submit(_request(7)), 10)
        assert response.id == "7" and rec.batches == [1]
        await sched.stop()

    asyncio.run(run())


def test_requests_with_other_shapes_are_not_batched_together():
    async def run():
        rec = Recorder()
        sched = _batcher([rec], preferred_batch_sizes=(2,), max_queue_delay_us=0)
        reqs = [_request(0), _request(1, width=3), _request(2), _request(3, width=3)]
        await asyncio.gather(*(sched.submit(r) for r in reqs))
        # each batch holds one shape only; rows from different widths never meet
        assert sum(rec.batches) == 4 and max(rec.batches) <= 2
        await sched.stop()

    asyncio.run(run())


def test_executor_error_fails_whole_batch_then_scheduler_keeps_serving():
    async def run():
        rec, stats = Recorder(), ModelStats()
        sched = _batcher([rec], stats, preferred_batch_sizes=(4,))
        rec.fail = True
        results = await asyncio.gather(*(sched.submit(_request(i)) for i in range(4)), return_exceptions=True)
        assert all(isinstance(r, TritonError) and r.code is ErrorCode.INTERNAL for r in results)
        assert "rec_0" in results[0].message and stats.fail.count == 4 and stats.execution_count == 0
        rec.fail = False
        responses = await asyncio.gather(*(sched.submit(_request(i)) for i in range(4)))
        assert len(responses) == 4 and rec.batches == [4, 4]
        assert stats.execution_count == 1 and stats.inference_count == 4
        await sched.stop()

    asyncio.run(run())


def test_cancel_before_execute_removes_request_from_queue():
    async def run():
        rec = Recorder()
        sched = _batcher([rec], preferred_batch_sizes=(4,))
        doomed = _request(99)
        task = asyncio.ensure_future(sched.submit(doomed))
        for _ in range(5):
            await asyncio.sleep(0)
        assert sched.inflight_count() == 1 and not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sched.inflight_count() == 0 and doomed.state is RequestState.RELEASED
        await asyncio.gather(*(sched.submit(_request(i)) for i in range(4)))
        assert rec.batches == [4] and "99" not in rec.seen
        await sched.stop()

    asyncio.run(run())


def test_two_instances_run_batches_in_parallel():
    async def run():
        barrier = threading.Barrier(2, timeout=10)

        class Meeting(Recorder):
            def execute(self, requests):
                barrier.wait()  # only returns when both instances execute at the same time
                return super().execute(requests)

        a, b = Meeting("a_0"), Meeting("b_0")
        sched = _batcher([a, b], preferred_batch_sizes=(4,))
        await asyncio.gather(*(sched.submit(_request(i)) for i in range(8)))
        assert a.batches == [4] and b.batches == [4]
        await sched.stop()

    asyncio.run(run())


def test_preserve_ordering_holds_later_batches_back():
    async def run():
        gate = threading.Event()
        slow, fast = Recorder("slow_0", gate), Recorder("fast_0")
        sched = _batcher([slow, fast], preferred_batch_sizes=(2,), preserve_ordering=True)
        tasks = [asyncio.ensure_future(sched.submit(_request(i))) for i in range(4)]
        while not fast.batches:  # the second batch finished on the fast instance
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)
        assert not any(t.done() for t in tasks)
        gate.set()
        responses = await asyncio.gather(*tasks)
        assert [r.id for r in responses] == ["0", "1", "2", "3"]
        assert slow.seen == ["0", "1"] and fast.seen == ["2", "3"]
        await sched.stop()

    asyncio.run(run())


def test_max_queue_size_rejects_with_tritons_message():
    async def run():
        sched = _batcher([Recorder()], preferred_batch_sizes=(8,), max_queue_size=1)
        first = asyncio.ensure_future(sched.submit(_request(0)))
        await asyncio.sleep(0)
        with pytest.raises(TritonError) as info:
            await sched.submit(_request(1))
        assert info.value.code is ErrorCode.UNAVAILABLE
        assert info.value.message == "[request id: 1] Exceeds maximum queue size"
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        await sched.stop()

    asyncio.run(run())


async def _busy(sched: DynamicBatcher, rec: Recorder) -> asyncio.Future:
    """Occupy the only instance with request "0" until `rec.gate` is set."""
    first = asyncio.ensure_future(sched.submit(_request(0)))
    while sched.inflight_count() == 0 or len(sched._queue):
        await asyncio.sleep(0.001)
    return first


def test_higher_priority_level_is_batched_first():
    async def run():
        rec = Recorder(gate=threading.Event())
        sched = _batcher([rec], max_batch_size=1, max_queue_delay_us=0, priority_levels=2, default_priority_level=2)
        first = await _busy(sched, rec)
        low = asyncio.ensure_future(sched.submit(_request(1)))  # priority 0: the default level, 2
        high = asyncio.ensure_future(sched.submit(_request(2, priority=1)))
        await asyncio.sleep(0.01)
        rec.gate.set()
        await asyncio.gather(first, low, high)
        assert rec.seen == ["0", "2", "1"]
        await sched.stop()

    asyncio.run(run())


def test_max_queue_size_per_priority_level():
    async def run():
        rec = Recorder(gate=threading.Event())
        sched = _batcher([rec], max_batch_size=1, priority_levels=2, default_priority_level=1,
                         priority_queue_policy={2: QueuePolicy(max_queue_size=1)})
        first = await _busy(sched, rec)
        queued = [asyncio.ensure_future(sched.submit(_request(1, priority=2)))]
        await asyncio.sleep(0)
        with pytest.raises(TritonError, match=r"^\[request id: 2\] Exceeds maximum queue size$"):
            await sched.submit(_request(2, priority=2))
        queued.append(asyncio.ensure_future(sched.submit(_request(3, priority=1))))  # level 1 is unbounded
        await asyncio.sleep(0.01)
        rec.gate.set()
        await asyncio.gather(first, *queued)
        assert rec.seen == ["0", "3", "1"]
        await sched.stop()

    asyncio.run(run())


def test_reject_timeout_fires_without_any_other_traffic():
    async def run():
        rec, stats = Recorder(), ModelStats()
        # the lone request can never reach the preferred size and the delay is a minute: no batch forms
        sched = _batcher([rec], stats, preferred_batch_sizes=(8,),
                         default_queue_policy=QueuePolicy(default_timeout_us=20_000))
        request = _request(5)
        with pytest.raises(TritonError) as info:
            await asyncio.wait_for(sched.submit(request), 5)
        assert info.value.code is ErrorCode.UNAVAILABLE and info.value.message == "Request timeout expired"
        assert request.state is RequestState.RELEASED and rec.seen == [] and stats.fail.count == 1
        assert sched.inflight_count() == 0
        await sched.stop()

    asyncio.run(run())


def test_reject_timeout_fires_while_every_instance_is_busy():
    async def run():
        rec = Recorder(gate=threading.Event())
        sched = _batcher([rec], max_queue_delay_us=0,
                         default_queue_policy=QueuePolicy(default_timeout_us=20_000))
        first = await _busy(sched, rec)
        with pytest.raises(TritonError, match="^Request timeout expired$"):
            await asyncio.wait_for(sched.submit(_request(1)), 5)
        rec.gate.set()
        await first
        assert rec.seen == ["0"]
        await sched.stop()

    asyncio.run(run())


def test_delay_moves_an_expired_request_behind_fresh_ones():
    async def run():
        rec = Recorder(gate=threading.Event())
        policy = QueuePolicy(TimeoutAction.DELAY, default_timeout_us=LONG_DELAY_US, allow_timeout_override=True)
        sched = _batcher([rec], max_batch_size=1, max_queue_delay_us=0, default_queue_policy=policy)
        first = await _busy(sched, rec)
        expiring = asyncio.ensure_future(sched.submit(_request(1, timeout_us=1_000)))  # override: 1 ms
        await asyncio.sleep(0.03)
        fresh = asyncio.ensure_future(sched.submit(_request(2)))
        await asyncio.sleep(0)
        rec.gate.set()
        responses = await asyncio.gather(first, expiring, fresh)
        assert [r.id for r in responses] == ["0", "1", "2"]  # delayed, never rejected
        assert rec.seen == ["0", "2", "1"]
        await sched.stop()

    asyncio.run(run())


def test_request_timeout_ignored_when_override_not_allowed():
    async def run():
        rec = Recorder()
        policy = QueuePolicy(default_timeout_us=LONG_DELAY_US)
        sched = _batcher([rec], preferred_batch_sizes=(8,), max_queue_delay_us=30_000, default_queue_policy=policy)
        response = await asyncio.wait_for(sched.submit(_request(1, timeout_us=1_000)), 5)
        assert response.id == "1" and rec.batches == [1]  # sent after the 30 ms delay, not rejected at 1 ms
        await sched.stop()

    asyncio.run(run())


def test_run_now_when_a_batch_of_one_is_due_and_the_execute_is_tiny():
    async def run():
        rec, stats = Recorder(), ModelStats()
        sched = _batcher([rec], stats, max_queue_delay_us=0)
        assert sched.try_run_now(_request(0)) is None  # not measured yet: threaded probes first
        for i in range(32):  # the runner's probes find the execute tiny
            await sched.submit(_request(i))
        request = _request(7)
        response = sched.try_run_now(request)
        assert response is not None and response.id == "7" and request.state is RequestState.RELEASED
        assert rec.batches[-1] == 1 and stats.inference_count == 33 and stats.execution_count == 33
        rec.fail = True
        with pytest.raises(TritonError, match="boom"):
            sched.try_run_now(_request(8))
        assert stats.fail.count == 1 and sched.inflight_count() == 0
        await sched.stop()
    asyncio.run(run())


def test_run_now_declines_while_the_policy_would_wait():
    async def run():
        rec = Recorder()
        sched = _batcher([rec], preferred_batch_sizes=(4,))  # long delay: a lone request waits
        for _ in range(32):
            sched._idle[-1]._observe(1000)  # as if 32 threaded probes measured 1 µs each
        assert sched._idle[-1].inline_ready
        request = _request(1)
        assert sched.try_run_now(request) is None and request.state is RequestState.INITIALIZED
        assert rec.batches == []
        await sched.stop()
    asyncio.run(run())
