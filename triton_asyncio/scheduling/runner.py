"""Runs one instance's `execute` off the event loop, or inline when it is measurably tiny.

Rules: one execute at a time per instance (the scheduler guarantees it). Backends like ORT
release the GIL, so long executions go to the instance's own thread; an execute that takes a few
microseconds costs more in the thread hand-off than it gains, so it runs inline on the loop.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from ..core.request import InferenceRequest
from ..core.response import InferenceResponse
from .base import Executor

# An execute below this (mean of recent runs) runs inline on the event loop.
INLINE_BELOW_NS = 60_000
_PROBE_RUNS = 16  # threaded runs measured before inline is considered
_EWMA = 0.1


class InstanceRunner:
    __slots__ = ("executor", "_thread", "_mean_ns", "_runs", "allow_inline")

    def __init__(self, executor: Executor, allow_inline: bool = True) -> None:
        self.executor = executor
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=executor.name)
        self._mean_ns = 0.0
        self._runs = 0
        self.allow_inline = allow_inline

    @property
    def inline_ready(self) -> bool:
        """Whether executes have been measured small enough to run on the loop."""
        return self.allow_inline and self._runs >= _PROBE_RUNS and self._mean_ns < INLINE_BELOW_NS

    def run_inline(self, requests: list[InferenceRequest]) -> tuple[list[InferenceResponse], int]:
        t0 = time.perf_counter_ns()
        responses = self.executor.execute(requests)
        ns = time.perf_counter_ns() - t0
        self._observe(ns)
        return responses, ns

    async def run(self, requests: list[InferenceRequest]) -> tuple[list[InferenceResponse], int]:
        """Execute; returns the responses and the execute duration in ns."""
        if self.inline_ready:
            return self.run_inline(requests)
        loop = asyncio.get_running_loop()
        responses, ns = await loop.run_in_executor(self._thread, self._timed, requests)
        self._observe(ns)
        return responses, ns

    def _timed(self, requests: list[InferenceRequest]) -> tuple[list[InferenceResponse], int]:
        t0 = time.perf_counter_ns()
        responses = self.executor.execute(requests)
        return responses, time.perf_counter_ns() - t0

    def _observe(self, ns: int) -> None:
        self._runs += 1
        if self._runs == 1:
            self._mean_ns = ns
        else:
            self._mean_ns += _EWMA * (ns - self._mean_ns)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
