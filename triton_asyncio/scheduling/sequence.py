"""Triton's sequence batcher, direct strategy: each live sequence owns one slot of one instance.

Rules: `SlotTable` is pure bookkeeping (correlation id -> (instance, slot), free slots, idle
deadlines from an injected clock); `SequenceBatcher` owns the asyncio side. Requests of one
sequence run in arrival order on their slot's instance; with max_batch_size > 0 the front request
of every busy slot of an instance runs as one batch (no null padding rows: the batch holds only
real requests, so a row index is not a slot index). Control tensors are added before execute.
"""
from __future__ import annotations

import asyncio
import collections
import heapq
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..core.request import FLAG_SEQUENCE_END, FLAG_SEQUENCE_START, InferenceRequest, RequestState
from ..core.response import InferenceResponse
from ..core.stats import ModelStats
from ..core.tensor import Tensor
from ..errors import ErrorCode, TritonError, internal, invalid_arg
from .base import Executor, Scheduler
from .runner import InstanceRunner

log = logging.getLogger(__name__)

START, READY, END, CORRID = "START", "READY", "END", "CORRID"
DEFAULT_IDLE_US = 1_000_000


@dataclass(frozen=True, slots=True)
class Control:
    """One control tensor: `kind` is START/READY/END/CORRID; values are (false, true) for flags."""

    name: str
    kind: str
    datatype: str  # wire datatype: INT32, FP32, BOOL, UINT64, BYTES, ...
    false_true: tuple = (0, 1)


class SlotTable:
    """Correlation id -> (instance, slot); lowest free slot first; idle expiry by `clock` (ns)."""

    def __init__(self, instances: int, slots_per_instance: int, idle_us: int = DEFAULT_IDLE_US,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._free = [(i, s) for i in range(instances) for s in range(slots_per_instance)]
        heapq.heapify(self._free)
        self._active: dict[int | str, tuple[int, int]] = {}
        self._last: dict[int | str, int] = {}
        self.idle_ns = (idle_us or DEFAULT_IDLE_US) * 1000
        self._clock = clock

    def lookup(self, corrid: int | str) -> tuple[int, int] | None:
        return self._active.get(corrid)

    def start(self, corrid: int | str) -> tuple[int, int] | None:
        """The slot for a new sequence (its old slot if still active), None when none is free."""
        slot = self._active.get(corrid)
        if slot is None:
            if not self._free:
                return None
            slot = heapq.heappop(self._free)
            self._active[corrid] = slot
        self._last[corrid] = self._clock()
        return slot

    def touch(self, corrid: int | str) -> None:
        if corrid in self._active:
            self._last[corrid] = self._clock()

    def end(self, corrid: int | str) -> None:
        slot = self._active.pop(corrid, None)
        self._last.pop(corrid, None)
        if slot is not None:
            heapq.heappush(self._free, slot)

    def expire(self) -> list[int | str]:
        """Release every sequence idle for longer than the limit; returns their ids."""
        now = self._clock()
        gone = [c for c, t in self._last.items() if now - t > self.idle_ns]
        for corrid in gone:
            self.end(corrid)
        return gone

    def next_deadline_ns(self) -> int | None:
        return min(self._last.values()) + self.idle_ns if self._last else None

    @property
    def free_count(self) -> int:
        return len(self._free)

    @property
    def active_count(self) -> int:
        return len(self._active)


class _Item:
    __slots__ = ("request", "arrived", "future")

    def __init__(self, request: InferenceRequest, arrived: int, future: asyncio.Future) -> None:
        self.request, self.arrived, self.future = request, arrived, future


class _Lane:
    """One instance: a FIFO per slot and the worker task that drains them."""

    def __init__(self, executor: Executor, slots: int) -> None:
        self.runner = InstanceRunner(executor, allow_inline=False)
        self.queues: list[collections.deque[_Item]] = [collections.deque() for _ in range(slots)]
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.next_slot = 0


class SequenceBatcher(Scheduler):
    def __init__(self, instances: list[Executor], stats: ModelStats, *, model_name: str, max_batch_size: int,
                 controls: tuple[Control, ...] = (), idle_us: int = DEFAULT_IDLE_US,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        super().__init__(instances, stats)
        self.model_name = model_name
        self.max_batch_size = max_batch_size
        self.controls = controls
        self.slots_per_instance = max(1, max_batch_size)
        self.table = SlotTable(len(instances), self.slots_per_instance, idle_us, clock)
        self._lanes = [_Lane(i, self.slots_per_instance) for i in instances]
        self._backlog: collections.deque[tuple[int | str, asyncio.Future]] = collections.deque()
        self._inflight = 0
        self._reaper: asyncio.TimerHandle | None = None
        self._stopping = False

    def inflight_count(self) -> int:
        return self._inflight

    async def submit(self, request: InferenceRequest) -> InferenceResponse:
        arrived = time.perf_counter_ns()
        self._check(request)
        corrid = request.correlation_id
        self.table.expire()
        if request.flags & FLAG_SEQUENCE_START:
            if self.table.lookup(corrid) is not None:
                log.warning("sequence %s for model '%s' has a conflict. The previous sequence did not end before "
                            "this sequence start. Previous sequence will be terminated early.",
                            corrid, self.model_name)
            slot = self.table.start(corrid)
            if slot is None:
                slot = await self._wait_for_slot(corrid)
        else:
            slot = self.table.lookup(corrid)
            if slot is None:
                raise invalid_arg(f"inference request for sequence {corrid} to model '{self.model_name}' must "
                                  f"specify the START flag on the first request of the sequence")
            self.table.touch(corrid)
        if request.flags & FLAG_SEQUENCE_END:
            self.table.end(corrid)
            self._admit_backlog()
        self._arm_reaper()
        self._add_controls(request, slot)
        request.set_state(RequestState.PENDING)
        future = asyncio.get_running_loop().create_future()
        lane = self._lanes[slot[0]]
        lane.queues[slot[1]].append(_Item(request, arrived, future))
        if lane.task is None:
            lane.task = asyncio.get_running_loop().create_task(self._work(lane))
        lane.wake.set()
        self._inflight += 1
        try:
            return await future
        finally:
            self._inflight -= 1

    def _check(self, request: InferenceRequest) -> None:
        if self._stopping:
            raise TritonError(ErrorCode.UNAVAILABLE, "model is unloading")
        if request.correlation_id in (0, ""):
            raise invalid_arg(f"inference request to model '{self.model_name}' must specify a non-zero or "
                              f"non-empty correlation ID")
        if self.max_batch_size > 0:
            for t in request.inputs.values():
                if t.shape and t.shape[0] != 1:
                    raise invalid_arg(f"inference request to model '{self.model_name}' must specify batch-size 1 "
                                      f"due to requirements of sequence batcher")

    async def _wait_for_slot(self, corrid: int | str) -> tuple[int, int]:
        """Backlog: FIFO by first request until a slot frees."""
        future = asyncio.get_running_loop().create_future()
        self._backlog.append((corrid, future))
        self._arm_reaper()
        return await future

    def _admit_backlog(self) -> None:
        while self._backlog and self.table.free_count:
            corrid, future = self._backlog.popleft()
            if not future.done():
                future.set_result(self.table.start(corrid))

    def _arm_reaper(self) -> None:
        if self._reaper is not None:
            return
        deadline = self.table.next_deadline_ns()
        if deadline is None:
            return
        delay = max(0.0, (deadline - time.monotonic_ns()) / 1e9) + 0.001
        self._reaper = asyncio.get_running_loop().call_later(delay, self._reap)

    def _reap(self) -> None:
        self._reaper = None
        for corrid in self.table.expire():
            log.info("sequence %s for model '%s' released after the idle timeout", corrid, self.model_name)
        self._admit_backlog()
        self._arm_reaper()

    def _add_controls(self, request: InferenceRequest, slot: tuple[int, int]) -> None:
        shape = [1, 1] if self.max_batch_size > 0 else [1]
        for c in self.controls:
            if c.kind == CORRID:
                value = request.correlation_id
                if c.datatype == "BYTES":
                    array = np.array([str(value).encode()], dtype=object)
                else:
                    array = np.array([value if isinstance(value, int) else 0]).astype(_np(c.datatype))
            else:
                flag = {START: request.flags & FLAG_SEQUENCE_START, END: request.flags & FLAG_SEQUENCE_END,
                        READY: 1}[c.kind]
                array = np.array([c.false_true[1 if flag else 0]], dtype=_np(c.datatype))
            request.inputs[c.name] = Tensor(c.name, c.datatype, list(shape), array=array.reshape(shape))

    async def _work(self, lane: _Lane) -> None:
        while True:
            batch = self._take(lane)
            if not batch:
                lane.wake.clear()
                await lane.wake.wait()
                continue
            await self._run(lane, batch)

    def _take(self, lane: _Lane) -> list[_Item]:
        """The front request of each busy slot (batching), else one, round-robin over slots."""
        busy = [q for q in lane.queues if q]
        if not busy:
            return []
        if self.max_batch_size > 0:
            return [q.popleft() for q in busy]
        n = len(lane.queues)
        for k in range(n):
            q = lane.queues[(lane.next_slot + k) % n]
            if q:
                lane.next_slot = (lane.next_slot + k + 1) % n
                return [q.popleft()]
        return []

    async def _run(self, lane: _Lane, batch: list[_Item]) -> None:
        started = time.perf_counter_ns()
        requests = [item.request for item in batch]
        for r in requests:
            r.set_state(RequestState.EXECUTING)
        try:
            responses, compute_ns = await lane.runner.run(requests)
            error = None
        except Exception as e:
            responses, compute_ns = [None] * len(batch), 0
            error = e if isinstance(e, TritonError) else internal(
                f"Failed to process the request(s) for model instance '{lane.runner.executor.name}', "
                f"message: {type(e).__name__}: {e}")
        done = time.perf_counter_ns()
        ok = 0
        for item, response in zip(batch, responses, strict=True):
            item.request.set_state(RequestState.RELEASED)
            self.table.touch(item.request.correlation_id)
            failure = error if response is None else response.error
            if failure is not None:
                self.stats.fail.add(done - item.arrived)
                if not item.future.done():
                    item.future.set_exception(failure)
                continue
            ok += 1
            self.stats.record_request(item.arrived, started, done, compute_ns)
            if not item.future.done():
                item.future.set_result(response)
        if ok:
            self.stats.record_execution(ok, ok, compute_ns, done)

    async def stop(self) -> None:
        self._stopping = True
        while self._inflight:
            await asyncio.sleep(0.01)
        if self._reaper is not None:
            self._reaper.cancel()
        for _, future in self._backlog:
            if not future.done():
                future.set_exception(TritonError(ErrorCode.UNAVAILABLE, "model is unloading"))
        for lane in self._lanes:
            if lane.task is not None:
                lane.task.cancel()
            lane.runner.close()


def _np(datatype: str):
    return {"BOOL": np.bool_, "INT32": np.int32, "FP32": np.float32, "UINT64": np.uint64, "INT64": np.int64,
            "UINT32": np.uint32}.get(datatype, np.int32)
