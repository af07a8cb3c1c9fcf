"""Triton's dynamic batcher: queue requests, form batches by `batch_policy`, run them on free instances.

Rules: the policy decides, this module only waits and hands over. One driver task per scheduler
wakes on an arrival, a freed instance, a cancelled request, the policy's timer or the earliest
queued request's deadline (so a timeout fires even when no batch forms, unlike Triton's issue
#7512); each batch runs in its own task, so several instances execute batches in parallel. A request's future resolves
with its response, or its error; a backend exception fails every request of its batch.
"""
from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Hashable, Mapping

from ..core.request import InferenceRequest, RequestState
from ..core.response import InferenceResponse
from ..core.stats import CANCELED, REJECTED, ModelStats
from ..errors import ErrorCode, TritonError, internal, unavailable
from .base import Executor, Scheduler
from .batch_policy import BatchConfig, PriorityQueue, QueuePolicy, decide
from .runner import InstanceRunner

_NS_PER_S = 1e9


def signature(request: InferenceRequest) -> Hashable:
    """Requests batch together only when their inputs agree on names, types and non-batch dims."""
    return tuple(sorted((name, t.datatype, tuple(t.shape[1:])) for name, t in request.inputs.items()))


def batch_size(request: InferenceRequest) -> int:
    for t in request.inputs.values():
        return max(1, t.shape[0]) if t.shape else 1
    return 1


class _Entry:
    __slots__ = ("request", "future", "arrived_ns", "batch_size", "signature", "outcome", "deadline_ns")

    def __init__(self, request: InferenceRequest, future: asyncio.Future, arrived_ns: int) -> None:
        self.request = request
        self.future = future
        self.arrived_ns = arrived_ns
        self.batch_size = batch_size(request)
        self.signature = signature(request)
        self.outcome: InferenceResponse | TritonError | None = None
        self.deadline_ns = 0


class DynamicBatcher(Scheduler):
    def __init__(self, instances: list[Executor], stats: ModelStats, *, max_batch_size: int,
                 preferred_batch_sizes: tuple[int, ...] = (), max_queue_delay_us: int = 0,
                 preserve_ordering: bool = False, max_queue_size: int = 0,
                 priority_levels: int = 0, default_priority_level: int = 0,
                 default_queue_policy: QueuePolicy | None = None,
                 priority_queue_policy: Mapping[int, QueuePolicy] | None = None,
                 clock: Callable[[], int] = time.perf_counter_ns) -> None:
        """`max_queue_size` is a shorthand for a default queue policy with only that bound."""
        super().__init__(instances, stats)
        self.config = BatchConfig.make(max_batch_size, preferred_batch_sizes, max_queue_delay_us)
        self._idle = [InstanceRunner(i) for i in reversed(instances)]
        self._all = list(self._idle)
        policy = default_queue_policy or QueuePolicy(max_queue_size=max_queue_size)
        self._queue = PriorityQueue(priority_levels, default_priority_level, policy, priority_queue_policy)
        self._clock = clock
        # preserve_ordering: dispatched batches in order; a batch's results wait for earlier batches
        self._ordered: collections.deque[list[_Entry]] | None = collections.deque() if preserve_ordering else None
        self._inflight = 0
        self._wakeup: asyncio.Event | None = None
        self._driver: asyncio.Task | None = None
        self._batches: set[asyncio.Task] = set()
        self._drained: asyncio.Event | None = None

    def inflight_count(self) -> int:
        return self._inflight

    async def submit(self, request: InferenceRequest) -> InferenceResponse:
        entry = _Entry(request, asyncio.get_running_loop().create_future(), self._clock())
        if not self._queue.push(entry, request.priority, request.timeout_us):
            self.stats.record_failure(0, REJECTED)
            raise unavailable(f"[request id: {request.log_id}] Exceeds maximum queue size")
        self._ensure_driver()
        request.set_state(RequestState.PENDING)
        self._inflight += 1
        self._wakeup.set()
        try:
            return await entry.future
        except asyncio.CancelledError:
            request.cancelled = True  # if its batch already runs, a backend may still tell the model
            self._withdraw(entry)
            raise
        finally:
            self._inflight -= 1
            if self._inflight == 0 and self._drained is not None:
                self._drained.set()

    def try_run_now(self, request: InferenceRequest) -> InferenceResponse | None:
        """Run on the loop, synchronously, when the policy would dispatch this request alone at
        once (empty queue, an idle tiny-execute instance, a batch of one due now): the same batch
        the driver would form, without the future, the driver's wake-up and the batch task.

        Returns None (and takes no ownership) when the request must go through `submit`.
        """
        if self._queue or not self._idle or not self._idle[-1].inline_ready or self._ordered:
            return None
        now = self._clock()
        entry = _Entry(request, None, now)  # type: ignore[arg-type] - no future: nobody awaits it
        if decide((entry,), self.config, now).count != 1:
            return None
        request.set_state(RequestState.PENDING)
        self._inflight += 1
        try:
            self._run_inline(self._idle.pop(), [entry])
        finally:
            self._inflight -= 1
            if self._inflight == 0 and self._drained is not None:
                self._drained.set()
        if isinstance(entry.outcome, TritonError):
            raise entry.outcome
        return entry.outcome

    def _withdraw(self, entry: _Entry) -> None:
        """A cancelled submit leaves the queue if its batch has not been formed yet."""
        if not self._queue.remove(entry):
            return  # already dispatched or rejected: the batch runs, its result for this request is dropped
        entry.request.set_state(RequestState.RELEASED)
        self.stats.record_failure(self._clock() - entry.arrived_ns, CANCELED)
        self._wakeup.set()

    def _ensure_driver(self) -> None:
        if self._driver is None:
            self._wakeup = asyncio.Event()
            self._driver = asyncio.get_running_loop().create_task(self._drive(), name="dynamic-batcher")

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        wakeup = self._wakeup
        while True:
            self._expire()
            wake_at = None
            while self._queue and self._idle:
                decision = decide(self._queue.ordered(), self.config, self._clock())
                if not decision.count:
                    wake_at = decision.wake_at_ns
                    break
                self._dispatch(decision.count)
            wake_at = _earliest(wake_at, self._queue.next_deadline())
            wakeup.clear()
            timer = None
            if wake_at is not None:
                timer = loop.call_later(max(0, wake_at - self._clock()) / _NS_PER_S, wakeup.set)
            try:
                await wakeup.wait()
            finally:
                if timer is not None:
                    timer.cancel()

    def _expire(self) -> None:
        """REJECT: fail queued requests past their deadline (DELAY ones were moved back by the queue)."""
        now = self._clock()
        for entry in self._queue.expire(now):
            entry.request.set_state(RequestState.RELEASED)
            self.stats.record_failure(now - entry.arrived_ns, REJECTED)
            if not entry.future.done():
                entry.future.set_exception(unavailable("Request timeout expired"))

    def _dispatch(self, count: int) -> None:
        batch = self._queue.pop(count)
        if self._ordered is not None:
            self._ordered.append(batch)
        runner = self._idle.pop()
        if runner.inline_ready:  # a tiny execute: run it here rather than in a task of its own
            self._run_inline(runner, batch)
            self._deliver(batch)
            return
        task = asyncio.get_running_loop().create_task(self._run_batch(runner, batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    def _run_inline(self, runner: InstanceRunner, batch: list[_Entry]) -> None:
        started = self._clock()
        requests = self._start(batch)
        try:
            responses, compute_ns = runner.run_inline(requests)
            outcomes = _outcomes(runner, responses, len(batch))
        except Exception as e:  # a backend bug fails the batch, never the scheduler
            outcomes, compute_ns = [_as_error(runner, e)] * len(batch), 0
        finally:
            for r in requests:
                r.set_state(RequestState.RELEASED)
            self._idle.append(runner)
        self._complete(batch, outcomes, started, compute_ns)

    async def _run_batch(self, runner: InstanceRunner, batch: list[_Entry]) -> None:
        started = self._clock()
        requests = self._start(batch)
        try:
            responses, compute_ns = await runner.run(requests)
            outcomes = _outcomes(runner, responses, len(batch))
        except Exception as e:  # a backend bug fails the batch, never the scheduler
            outcomes, compute_ns = [_as_error(runner, e)] * len(batch), 0
        finally:
            for r in requests:
                r.set_state(RequestState.RELEASED)
            self._idle.append(runner)
            self._wakeup.set()
        self._complete(batch, outcomes, started, compute_ns)
        self._deliver(batch)

    @staticmethod
    def _start(batch: list[_Entry]) -> list[InferenceRequest]:
        requests = [e.request for e in batch]
        for r in requests:
            r.set_state(RequestState.EXECUTING)
        return requests

    def _complete(self, batch: list[_Entry], outcomes: list, started: int, compute_ns: int) -> None:
        self._record(batch, outcomes, started, self._clock(), compute_ns)
        for entry, outcome in zip(batch, outcomes, strict=True):
            entry.outcome = outcome

    def _deliver(self, batch: list[_Entry]) -> None:
        if self._ordered is None:
            _resolve(batch)
            return
        while self._ordered and self._ordered[0][0].outcome is not None:
            _resolve(self._ordered.popleft())

    def _record(self, batch: list[_Entry], outcomes: list, started: int, done: int, compute_ns: int) -> None:
        stats = self.stats
        total = 0
        for entry, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, TritonError):
                stats.fail.add(done - entry.arrived_ns)
                continue
            total += entry.batch_size
            stats.record_request(entry.arrived_ns, started, done, compute_ns)
        if total:
            stats.record_execution(total, sum(e.batch_size for e in batch), compute_ns, done)

    async def stop(self) -> None:
        if self._inflight:
            self._drained = asyncio.Event()
            await self._drained.wait()
        if self._driver is not None:
            self._driver.cancel()
            await asyncio.wait([self._driver])
        for runner in self._all:
            runner.close()
        for entry in self._queue.drain():
            if not entry.future.done():
                entry.future.set_exception(TritonError(ErrorCode.UNAVAILABLE, "model is unloading"))


def _earliest(a: int | None, b: int | None) -> int | None:
    if a is None or b is None:
        return b if a is None else a
    return min(a, b)


def _resolve(batch: list[_Entry]) -> None:
    for entry in batch:
        if entry.future.done():  # the submit was cancelled while its batch ran
            continue
        if isinstance(entry.outcome, TritonError):
            entry.future.set_exception(entry.outcome)
        else:
            entry.future.set_result(entry.outcome)


def _outcomes(runner: InstanceRunner, responses: list[InferenceResponse], expected: int) -> list:
    if len(responses) != expected:
        raise internal(f"model instance '{runner.executor.name}' returned {len(responses)} "
                       f"responses for {expected} requests")
    return [r.error or r for r in responses]


def _as_error(runner: InstanceRunner, e: Exception) -> TritonError:
    if isinstance(e, TritonError):
        return e
    return internal(f"Failed to process the request(s) for model instance "
                    f"'{runner.executor.name}', message: {type(e).__name__}: {e}")
