"""Triton's default scheduler: one request per execution, FIFO, any idle instance.

Rules: no batching here (dynamic.py owns that); a request waits in `_pending` only while every
instance is busy. Statistics are recorded per request as Triton's core records them.
"""
from __future__ import annotations

import asyncio
import collections
import time

from ..core.request import InferenceRequest, RequestState
from ..core.response import InferenceResponse
from ..core.stats import ModelStats
from ..errors import ErrorCode, TritonError, internal
from .base import Executor, Scheduler
from .runner import InstanceRunner


class DefaultScheduler(Scheduler):
    def __init__(self, instances: list[Executor], stats: ModelStats, *, batching: bool = False) -> None:
        super().__init__(instances, stats)
        self._idle = [InstanceRunner(i) for i in reversed(instances)]
        self._all = list(self._idle)
        self._pending: collections.deque[asyncio.Future] = collections.deque()
        self._inflight = 0
        self._batching = batching
        self._drained: asyncio.Event | None = None

    def inflight_count(self) -> int:
        return self._inflight

    async def submit(self, request: InferenceRequest) -> InferenceResponse:
        arrived = time.perf_counter_ns()
        request.set_state(RequestState.PENDING)
        self._inflight += 1
        try:
            if self._idle:
                runner = self._idle.pop()
            else:
                runner = await self._wait_for_instance()
            try:
                return await self._execute(runner, request, arrived)
            finally:
                self._release(runner)
        finally:
            self._inflight -= 1
            if self._inflight == 0 and self._drained is not None:
                self._drained.set()

    def try_run_now(self, request: InferenceRequest) -> InferenceResponse | None:
        """Run on the loop, synchronously, when an instance is idle and its executes are tiny.

        Returns None (and takes no ownership) when the request must go through `submit`. This
        saves the task and future hand-offs that dominate the cost of a few-µs execute.
        """
        if not self._idle or self._pending or not self._idle[-1].inline_ready:
            return None
        arrived = time.perf_counter_ns()
        runner = self._idle.pop()
        request.set_state(RequestState.PENDING)
        self._inflight += 1
        try:
            request.set_state(RequestState.EXECUTING)
            try:
                responses, compute_ns = runner.run_inline([request])
                response, error = responses[0], None
            except Exception as e:
                response, error = None, self._as_error(runner, e)
            finally:
                request.set_state(RequestState.RELEASED)
            return self._finish(request, response, error, arrived, arrived, compute_ns if error is None else 0)
        finally:
            self._release(runner)
            self._inflight -= 1
            if self._inflight == 0 and self._drained is not None:
                self._drained.set()

    @staticmethod
    def _as_error(runner: InstanceRunner, e: Exception) -> TritonError:
        if isinstance(e, TritonError):
            return e
        # a backend bug must fail the request, not the server
        return internal(f"Failed to process the request(s) for model instance "
                        f"'{runner.executor.name}', message: {type(e).__name__}: {e}")

    def _finish(self, request: InferenceRequest, response: InferenceResponse | None, error: TritonError | None,
                arrived: int, started: int, compute_ns: int) -> InferenceResponse:
        done = time.perf_counter_ns()
        if response is None or response.error is not None:
            self.stats.fail.add(done - arrived)
            raise error if response is None else response.error
        batch = (request.inputs and next(iter(request.inputs.values())).shape[0]) if self._batching else 1
        self._record_success(arrived, started, done, compute_ns, batch or 1)
        return response

    async def _wait_for_instance(self) -> InstanceRunner:
        waiter = asyncio.get_running_loop().create_future()
        self._pending.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # The instance may have been handed over just before the cancel landed.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(waiter.result())
            raise

    def _release(self, runner: InstanceRunner) -> None:
        while self._pending:
            waiter = self._pending.popleft()
            if not waiter.done():  # a cancelled waiter gave up its place
                waiter.set_result(runner)
                return
        self._idle.append(runner)

    async def _execute(self, runner: InstanceRunner, request: InferenceRequest, arrived: int) -> InferenceResponse:
        started = time.perf_counter_ns()
        request.set_state(RequestState.EXECUTING)
        compute_ns = 0
        try:
            responses, compute_ns = await runner.run([request])
            response, error = responses[0], None
        except Exception as e:
            response, error = None, self._as_error(runner, e)
        finally:
            request.set_state(RequestState.RELEASED)
        return self._finish(request, response, error, arrived, started, compute_ns)

    def _record_success(self, arrived: int, started: int, done: int, compute_ns: int, batch: int) -> None:
        stats = self.stats
        stats.last_inference_ms = int(time.time() * 1000)
        stats.inference_count += batch
        stats.execution_count += 1
        stats.success.add(done - arrived)
        stats.queue.add(started - arrived)
        stats.compute_input.add(0)
        stats.compute_infer.add(compute_ns)
        stats.compute_output.add(0)
        b = stats.batch(batch)
        b.compute_input.add(0)
        b.compute_infer.add(compute_ns)
        b.compute_output.add(0)

    async def stop(self) -> None:
        if self._inflight:
            self._drained = asyncio.Event()
            await self._drained.wait()
        for runner in self._all:
            runner.close()
        for waiter in self._pending:
            if not waiter.done():
                waiter.set_exception(TritonError(ErrorCode.UNAVAILABLE, "model is unloading"))
