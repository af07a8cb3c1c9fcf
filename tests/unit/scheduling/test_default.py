"""Default scheduler: FIFO over instances, statistics, and the inline fast path."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from triton_asyncio.core.request import InferenceRequest, RequestState
from triton_asyncio.core.response import InferenceResponse
from triton_asyncio.core.stats import ModelStats
from triton_asyncio.core.tensor import Tensor
from triton_asyncio.errors import ErrorCode, TritonError
from triton_asyncio.scheduling.default import DefaultScheduler


class Echo:
    name = "echo_0_0"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def execute(self, requests):
        if self.fail:
            raise ValueError("boom")
        return [InferenceResponse(r.model_name, "1", r.id, list(r.inputs.values())) for r in requests]


def _request() -> InferenceRequest:
    t = Tensor("IN", "INT32", [1, 4], array=np.zeros((1, 4), np.int32))
    return InferenceRequest("m", inputs={"IN": t})


def test_submit_then_inline_fast_path():
    async def run():
        stats = ModelStats()
        sched = DefaultScheduler([Echo()], stats, batching=True)
        assert sched.try_run_now(_request()) is None  # not measured yet
        for _ in range(16):
            await sched.submit(_request())
        request = _request()
        response = sched.try_run_now(request)
        assert response is not None and response.outputs[0].name == "IN"
        assert request.state is RequestState.RELEASED
        assert stats.success.count == 17 and stats.execution_count == 17 and stats.inference_count == 17
        assert sched.inflight_count() == 0
        await sched.stop()

    asyncio.run(run())


def test_backend_exception_fails_request_not_scheduler():
    async def run():
        stats = ModelStats()
        sched = DefaultScheduler([Echo(fail=True)], stats)
        with pytest.raises(TritonError) as info:
            await sched.submit(_request())
        assert info.value.code is ErrorCode.INTERNAL and "echo_0_0" in info.value.message
        assert stats.fail.count == 1 and sched.inflight_count() == 0
        await sched.stop()

    asyncio.run(run())


def test_requests_queue_when_instance_busy():
    async def run():
        sched = DefaultScheduler([Echo()], ModelStats())
        results = await asyncio.gather(*(sched.submit(_request()) for _ in range(8)))
        assert len(results) == 8 and sched.inflight_count() == 0
        await sched.stop()

    asyncio.run(run())


def test_runner_inline_decision_is_robust_to_outliers():
    from triton_asyncio.scheduling import runner as r

    inst = r.InstanceRunner(Echo())
    try:
        for ns in [5_000_000] * 10 + [20_000] + [5_000_000] * 5:  # GIL waits inflate threaded runs
            assert not inst.inline_ready
            inst._observe(ns)
        assert inst.inline_ready  # the fastest probe decides
        inst._observe(2_000_000)  # one preempted inline run
        assert inst.inline_ready
        slow = 1
        while inst.inline_ready:  # a model that is really slow now: back to the thread, soon
            inst._observe(2_000_000)
            slow += 1
        assert slow <= 3
        for _ in range(2 * r._PROBE_RUNS - 1):  # probing again takes twice as long
            inst._observe(10_000)
            assert not inst.inline_ready
        inst._observe(10_000)
        assert inst.inline_ready
    finally:
        inst.close()


def test_release_runs_queued_requests_inline_and_the_fast_path_resumes():
    async def run():
        stats = ModelStats()
        sched = DefaultScheduler([Echo()], stats, batching=True)
        for _ in range(16):
            await sched.submit(_request())
        runner = sched._idle.pop()  # the instance is busy elsewhere
        tasks = [asyncio.ensure_future(sched.submit(_request())) for _ in range(3)]
        await asyncio.sleep(0)
        assert sched.try_run_now(_request()) is None  # queued work goes first
        sched._release(runner)  # runs the three queued requests, in order, at once
        assert not sched._pending
        responses = await asyncio.gather(*tasks)
        assert [r.outputs[0].name for r in responses] == ["IN"] * 3
        assert sched.try_run_now(_request()) is not None  # drained: back on the fast path
        assert stats.success.count == 20 and sched.inflight_count() == 0
        await sched.stop()

    asyncio.run(run())
