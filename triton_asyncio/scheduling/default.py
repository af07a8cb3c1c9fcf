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


class _Waiter:
    __slots__ = ("request", "arrived", "future")

    def __init__(self, request: InferenceRequest, arrived: int, future: asyncio.Future) -> None:
        self.request = request
        self.arrived = arrived
        self.future = future


class DefaultScheduler(Scheduler):
    def __init__(self, instances: list[Executor], stats: ModelStats, *, batching: bool = False) -> None:
        super().__init__(instances, stats)
        self._idle = [InstanceRunner(i) for i in reversed(instances)]
        self._all = list(self._idle)
        self._pending: collections.deque[_Waiter] = collections.deque()
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
                handed = await self._wait_for_instance(request, arrived)
                if not isinstance(handed, InstanceRunner):
                    return handed  # run inline by `_release` while this request waited
                runner = handed
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
        if request.state is not RequestState.INITIALIZED:
            request.set_state(RequestState.PENDING)  # raises: a request is scheduled once
        runner = self._idle.pop()
        self._inflight += 1
        try:
            return self._run_inline(runner, request, 0)
        finally:
            self._release(runner)
            self._inflight -= 1
            if self._inflight == 0 and self._drained is not None:
                self._drained.set()

    def _run_inline(self, runner: InstanceRunner, request: InferenceRequest, arrived: int) -> InferenceResponse:
        """Execute on the loop; `arrived` 0 means just now (never queued: no queue time)."""
        started = time.perf_counter_ns()
        # PENDING -> EXECUTING -> RELEASED, assigned directly: this path owns the request throughout
        request.state = RequestState.EXECUTING
        try:
            responses, compute_ns = runner.run_inline([request], started)
            response, error = responses[0], None
        except Exception as e:
            response, error, compute_ns = None, self._as_error(runner, e), 0
        finally:
            request.state = RequestState.RELEASED
        return self._finish(request, response, error, arrived or started, started, compute_ns)

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
        batch = ((request.inputs and next(iter(request.inputs.values())).shape[0]) or 1) if self._batching else 1
        self.stats.record_request(arrived, started, done, compute_ns)
        self.stats.record_execution(batch, batch, compute_ns, done)
        return response

    async def _wait_for_instance(self, request: InferenceRequest, arrived: int) -> InstanceRunner | InferenceResponse:
        """Queue until an instance is free: get the instance, or the response when it ran inline."""
        waiter = asyncio.get_running_loop().create_future()
        self._pending.append(_Waiter(request, arrived, waiter))
        try:
            return await waiter
        except asyncio.CancelledError:
            # The instance may have been handed over just before the cancel landed.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if isinstance(handed, InstanceRunner):
                    self._release(handed)
            raise

    def _release(self, runner: InstanceRunner) -> None:
        """Give the instance to the next waiter, or back to the idle list.

        With a tiny-execute instance the waiters run here and now, in order: handing the instance
        over through a future costs a loop turn per request, and while any waiter is queued every
        new arrival queues behind it, so at steady load the queue would never drain.
        """
        pending = self._pending
        while pending:
            waiter = pending.popleft()
            if waiter.future.done():  # a cancelled waiter gave up its place
                continue
            if not runner.inline_ready:
                waiter.future.set_result(runner)
                return
            try:
                waiter.future.set_result(self._run_inline(runner, waiter.request, waiter.arrived))
            except Exception as e:  # TritonError from _finish; anything else is a bug, still theirs
                waiter.future.set_exception(e)
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

    async def stop(self) -> None:
        if self._inflight:
            self._drained = asyncio.Event()
            await self._drained.wait()
        for runner in self._all:
            runner.close()
        for waiter in self._pending:
            if not waiter.future.done():
                waiter.future.set_exception(TritonError(ErrorCode.UNAVAILABLE, "model is unloading"))
