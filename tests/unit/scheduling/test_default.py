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
