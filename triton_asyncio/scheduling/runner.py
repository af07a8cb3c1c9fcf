"""Runs one instance's `execute` off the event loop, or inline when it is measurably tiny.

Rules: one execute at a time per instance (the scheduler guarantees it). Backends like ORT
release the GIL, so long executions go to the instance's own thread; an execute that takes a few
microseconds costs more in the thread hand-off than it gains, so it runs inline on the loop.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor

from ..core.request import InferenceRequest
from ..core.response import InferenceResponse
from .base import Executor

# An execute below this runs inline on the event loop. A thread hand-off costs the loop about as
# much (future, wake-up, GIL hand-back), so below it inline is cheaper and blocks no longer. Inside a
# busy server a tiny ORT model's execute measures 40-50 µs (a 60 µs line sent it back to the thread
# every few thousand requests).
INLINE_BELOW_NS = 200_000
_PROBE_RUNS = 16  # threaded runs measured before inline is considered
_MAX_PROBE_RUNS = 4096
_EWMA = 0.1
# One inline sample counts for at most this much: a preempted or GC-paused run must not send a
# tiny model back to the thread, while a model that is really slow crosses the line in 3 runs.
_CLAMP_NS = 4 * INLINE_BELOW_NS


class InstanceRunner:
    """Threaded runs probe the execute's cost: the least CPU time its thread spent on one run (a
    threaded run's wall time includes waiting for the GIL the busy loop holds, up to the 5 ms
    switch interval). Once inline, a clamped moving mean of the inline runs' wall time decides
    whether to go back to the thread (and probe again, for twice as many runs)."""

    __slots__ = ("executor", "_thread", "_inline", "_mean_ns", "_probes", "_probe_min_ns", "_probe_target",
                 "allow_inline")

    def __init__(self, executor: Executor, allow_inline: bool = True) -> None:
        self.executor = executor
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=executor.name)
        self._inline = False
        self._mean_ns = 0.0
        self._probes = 0
        self._probe_min_ns = INLINE_BELOW_NS
        self._probe_target = _PROBE_RUNS
        # A backend whose execute waits on another process (Python stubs) must never block the loop,
        # however little CPU its thread spends: it says so with `inline_ok = False`.
        self.allow_inline = allow_inline and getattr(executor, "inline_ok", True)

    @property
    def inline_ready(self) -> bool:
        """Whether executes have been measured small enough to run on the loop."""
        return self._inline and self.allow_inline

    def run_inline(self, requests: list[InferenceRequest], t0: int = 0) -> tuple[list[InferenceResponse], int]:
        """Execute on the caller's thread; `t0`, when given, is perf_counter_ns() taken just now."""
        t0 = t0 or time.perf_counter_ns()
        responses = self.executor.execute(requests)
        ns = time.perf_counter_ns() - t0
        self._observe(ns)
        return responses, ns

    async def run(self, requests: list[InferenceRequest]) -> tuple[list[InferenceResponse], int]:
        """Execute; returns the responses and the execute duration in ns."""
        if self.inline_ready:
            return self.run_inline(requests)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._thread, self._timed, requests)
        try:
            responses, ns, cpu_ns = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The execute cannot be stopped: the instance stays busy until it ends, so that the
            # scheduler never starts a second execute on it (inline) while this one still runs.
            # A backend that can tell its model (Python's is_cancelled) reads the flag.
            for request in requests:
                request.cancelled = True
            with contextlib.suppress(Exception):
                await future
            raise
        self._observe(cpu_ns)
        return responses, ns

    def _timed(self, requests: list[InferenceRequest]) -> tuple[list[InferenceResponse], int, int]:
        # The probe uses this thread's CPU time: under load the wall time of a threaded run is
        # mostly the wait for the GIL the busy loop holds, and would keep a tiny model off the loop.
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        responses = self.executor.execute(requests)
        return responses, time.perf_counter_ns() - t0, time.thread_time_ns() - c0

    def _observe(self, ns: int) -> None:
        if self._inline:
            self._mean_ns += _EWMA * (min(ns, _CLAMP_NS) - self._mean_ns)
            if self._mean_ns >= INLINE_BELOW_NS:
                # back to the thread; each fall-back doubles the next probe, so a model whose
                # execute times vary widely cannot flip to and fro
                self._inline = False
                self._probes, self._probe_min_ns = 0, INLINE_BELOW_NS
                self._probe_target = min(2 * self._probe_target, _MAX_PROBE_RUNS)
            return
        self._probes += 1
        self._probe_min_ns = min(self._probe_min_ns, ns)
        if self._probes >= self._probe_target and self._probe_min_ns < INLINE_BELOW_NS:
            self._inline = True
            self._mean_ns = self._probe_min_ns

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
