"""Triton's sequence batcher, direct and oldest strategies: the asyncio driver.

Rules: the decisions are pure and live elsewhere: slots, idle expiry and the backlog in
`sequence_slots`, which fronts run next in `sequence_policy`, control and state tensors in
`sequence_inputs`. This module only queues, wakes, runs batches and resolves futures. Each live
sequence owns one slot of one instance; a slot is a FIFO, and an instance runs one batch at a time,
so a sequence's requests execute in arrival order, at most one per batch. Control and state inputs
are added when a request's batch forms (its state is the output of the request before it). With
max_batch_size > 0 a batch holds only real requests (no null padding rows: a row index is not a
slot index).
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..core.request import FLAG_SEQUENCE_END, FLAG_SEQUENCE_START, InferenceRequest, RequestState
from ..core.response import InferenceResponse
from ..core.stats import ModelStats
from ..core.tensor import Tensor
from ..errors import ErrorCode, TritonError, internal, invalid_arg
from .base import Executor, Scheduler
from .dynamic import signature
from .runner import InstanceRunner
from .sequence_inputs import Control, StateSpec, add_controls, add_states, take_states
from .sequence_policy import DirectWait, Pick, oldest_config, pick_direct, pick_oldest
from .sequence_slots import DEFAULT_IDLE_US, Backlog, CorrId, Slot, SlotTable, Waiting

__all__ = ["DEFAULT_IDLE_US", "Control", "Oldest", "SequenceBatcher", "SlotTable", "StateSpec"]

log = logging.getLogger(__name__)

_BACKLOG_TIMEOUT = "timeout of the corresponding sequence has been expired"


@dataclass(frozen=True, slots=True)
class Oldest:
    """The `oldest {}` strategy block (preserve_ordering holds anyway: an instance runs one batch at a time)."""

    max_candidate_sequences: int = 0  # 0: max(1, max_batch_size)
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0


class _Item:
    """One queued request, as the policy sees it (batch size 1, arrival, shapes)."""

    __slots__ = ("request", "key", "arrived_ns", "stats_arrived", "future", "signature", "batch_size")

    def __init__(self, request: InferenceRequest, arrived_ns: int, future: asyncio.Future) -> None:
        self.request = request
        self.key = 0  # which run of its correlation id this request belongs to (state is kept per run)
        self.arrived_ns = arrived_ns
        self.stats_arrived = time.perf_counter_ns()
        self.future = future
        self.signature = signature(request)
        self.batch_size = 1


class _Lane:
    """One instance: a FIFO per slot, the slots now executing, and the worker task that drains them."""

    def __init__(self, executor: Executor, slots: int) -> None:
        self.runner = InstanceRunner(executor, allow_inline=False)
        self.queues: list[collections.deque[_Item]] = [collections.deque() for _ in range(slots)]
        self.running: tuple[int, ...] = ()
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.next_slot = 0


class SequenceBatcher(Scheduler):
    def __init__(self, instances: list[Executor], stats: ModelStats, *, model_name: str, max_batch_size: int,
                 controls: tuple[Control, ...] = (), states: tuple[StateSpec, ...] = (),
                 visible_outputs: frozenset[str] = frozenset(), idle_us: int = DEFAULT_IDLE_US,
                 oldest: Oldest | None = None, direct_wait: tuple[int, float] = (0, 0.0),
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        """`visible_outputs`: config `output` names (a state output is returned only when listed);
        `direct_wait`: the direct strategy's (max_queue_delay_microseconds, minimum_slot_utilization)."""
        super().__init__(instances, stats)
        self.model_name = model_name
        self.max_batch_size = max_batch_size
        self.controls = controls
        self.states = states
        self.visible_outputs = visible_outputs
        self._clock = clock
        self._oldest = None
        self._direct_wait = DirectWait(max_batch_size, direct_wait[0] * 1000, direct_wait[1])
        self.slots_per_instance = max(1, max_batch_size)
        if oldest is not None:
            self.slots_per_instance = oldest.max_candidate_sequences or self.slots_per_instance
            self._oldest = oldest_config(max_batch_size, oldest.preferred_batch_sizes, oldest.max_queue_delay_us)
        self.table = SlotTable(len(instances), self.slots_per_instance, idle_us, clock)
        self._backlog: Backlog[_Item] = Backlog()
        self._lanes = [_Lane(i, self.slots_per_instance) for i in instances]
        self._keys: dict[CorrId, int] = {}  # live correlation id -> its run's key
        self._next_key = itertools.count(1)
        self._live: set[int] = set()  # run keys whose END has not run, not reaped, not restarted
        self._stored: dict[int, dict[str, Tensor]] = {}  # run key -> implicit state (input name -> tensor)
        self._inflight = 0
        self._reaper: asyncio.TimerHandle | None = None
        self._reaper_at = 0
        self._stopping = False

    def inflight_count(self) -> int:
        return self._inflight

    async def submit(self, request: InferenceRequest) -> InferenceResponse:
        self._check(request)
        self._expire()
        item = _Item(request, self._clock(), asyncio.get_running_loop().create_future())
        corrid, end = request.correlation_id, bool(request.flags & FLAG_SEQUENCE_END)
        if request.flags & FLAG_SEQUENCE_START:
            self._start(corrid, item, end)
        else:
            self._continue(corrid, item, end)  # raises for an unknown sequence
        request.set_state(RequestState.PENDING)
        # ownership: the request now belongs to a slot queue or the backlog until its future resolves
        self._arm_reaper()
        self._inflight += 1
        try:
            return await item.future
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

    def _start(self, corrid: CorrId, item: _Item, end: bool) -> None:
        if corrid in self._backlog or self.table.lookup(corrid) is not None:
            log.warning("sequence %s for model '%s' has a conflict. The previous sequence did not end before "
                        "this sequence start. Previous sequence will be terminated early.", corrid, self.model_name)
            self._forget(self._keys.get(corrid, 0))
        item.key = self._keys[corrid] = next(self._next_key)
        self._live.add(item.key)
        slot = None if corrid in self._backlog else self.table.start(corrid)
        if slot is None:
            timeout = item.request.timeout_us * 1000
            self._backlog.add(corrid, item, item.arrived_ns + timeout if timeout else 0, end)
            return
        self._enqueue(slot, item)
        if end:
            self._end(corrid)

    def _continue(self, corrid: CorrId, item: _Item, end: bool) -> None:
        item.key = self._keys.get(corrid, 0)
        if self._backlog.append(corrid, item, end):
            return
        slot = self.table.lookup(corrid)
        if slot is None:
            raise invalid_arg(f"inference request for sequence {corrid} to model '{self.model_name}' must "
                              f"specify the START flag on the first request of the sequence")
        self.table.touch(corrid)
        self._enqueue(slot, item)
        if end:
            self._end(corrid)

    def _end(self, corrid: CorrId) -> None:
        """END accepted: the id is free again; its slot takes the next sequence behind queued work."""
        self.table.end(corrid)
        self._keys.pop(corrid, None)
        self._admit()

    def _enqueue(self, slot: Slot, item: _Item) -> None:
        lane = self._lanes[slot[0]]
        lane.queues[slot[1]].append(item)
        if lane.task is None:
            lane.task = asyncio.get_running_loop().create_task(self._work(lane))
        lane.wake.set()

    def _admit(self) -> None:
        """Backlogged sequences take free slots, oldest first, with all requests they have so far."""
        while len(self._backlog) and self.table.free_count:
            corrid, waiting = self._backlog.pop()
            slot = self.table.start(corrid)
            assert slot is not None
            for item in waiting.items:
                self._enqueue(slot, item)
            if waiting.ended:
                self.table.end(corrid)
                self._keys.pop(corrid, None)

    def _expire(self) -> None:
        """Release idle sequences, fail backlogged ones past their timeout, then admit from the backlog."""
        busy = {(i, s) for i, lane in enumerate(self._lanes)
                for s, q in enumerate(lane.queues) if q or s in lane.running}
        for corrid in self.table.expire(busy):
            log.info("sequence %s for model '%s' released after the idle timeout", corrid, self.model_name)
            self._forget(self._keys.pop(corrid, 0))
        for corrid, waiting in self._backlog.expire(self._clock()):
            self._forget(self._keys.pop(corrid, 0))
            self._fail_waiting(waiting, TritonError(ErrorCode.UNAVAILABLE, _BACKLOG_TIMEOUT))
        self._admit()

    def _fail_waiting(self, waiting: Waiting[_Item], error: TritonError) -> None:
        now = time.perf_counter_ns()
        for item in waiting.items:
            self.stats.fail.add(now - item.stats_arrived)
            if not item.future.done():
                item.future.set_exception(error)

    def _arm_reaper(self) -> None:
        deadlines = [d for d in (self.table.next_deadline_ns(), self._backlog.next_deadline_ns()) if d is not None]
        if not deadlines:
            return
        deadline = min(deadlines)
        if self._reaper is not None:
            if self._reaper_at <= deadline:
                return
            self._reaper.cancel()
        delay = max(0.0, (deadline - self._clock()) / 1e9) + 0.001
        self._reaper_at = deadline
        self._reaper = asyncio.get_running_loop().call_later(delay, self._reap)

    def _reap(self) -> None:
        self._reaper = None
        self._expire()
        self._arm_reaper()

    async def _work(self, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pick = self._pick(lane)
            if not pick.slots:
                lane.wake.clear()
                timer = None
                if pick.wake_at_ns is not None:
                    timer = loop.call_later(max(0.0, (pick.wake_at_ns - self._clock()) / 1e9), lane.wake.set)
                await lane.wake.wait()
                if timer is not None:
                    timer.cancel()
                continue
            batch = [lane.queues[s].popleft() for s in pick.slots]
            lane.running = pick.slots
            try:
                await self._run(lane, batch)
            finally:
                lane.running = ()

    def _pick(self, lane: _Lane) -> Pick:
        if self._oldest is not None:
            return pick_oldest(lane.queues, self._oldest, self._clock())
        pick = pick_direct(lane.queues, self.max_batch_size > 0, lane.next_slot, self._direct_wait, self._clock())
        if pick.slots and self.max_batch_size <= 0:
            lane.next_slot = (pick.slots[0] + 1) % len(lane.queues)
        return pick

    def _prepare(self, item: _Item) -> None:
        batching = self.max_batch_size > 0
        add_controls(item.request, self.controls, batching)
        if self.states:
            add_states(item.request, self.states, self._stored.get(item.key), batching)

    async def _run(self, lane: _Lane, batch: list[_Item]) -> None:
        started = time.perf_counter_ns()
        for item in batch:
            self._prepare(item)
            item.request.set_state(RequestState.EXECUTING)
        try:
            responses, compute_ns = await lane.runner.run([item.request for item in batch])
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
            if item.request.flags & FLAG_SEQUENCE_END:
                self._forget(item.key)
            if failure is not None:
                self.stats.fail.add(done - item.stats_arrived)
                if not item.future.done():
                    item.future.set_exception(failure)
                continue
            self._keep_state(item, response)
            ok += 1
            self.stats.record_request(item.stats_arrived, started, done, compute_ns)
            if not item.future.done():
                item.future.set_result(response)
        if ok:
            self.stats.record_execution(ok, ok, compute_ns, done)

    def _keep_state(self, item: _Item, response: InferenceResponse) -> None:
        """The response's state outputs become its sequence's next state inputs, while the run lives."""
        if not self.states:
            return
        new = take_states(response, self.states, self.visible_outputs)
        if item.key in self._live:  # not when the run ended, was restarted or was reaped meanwhile
            self._stored[item.key] = new

    def _forget(self, key: int) -> None:
        self._live.discard(key)
        self._stored.pop(key, None)

    async def stop(self) -> None:
        self._stopping = True
        # backlogged sequences could wait forever for a slot: they fail now, the rest finish
        for _, waiting in self._backlog.drain():
            self._fail_waiting(waiting, TritonError(ErrorCode.UNAVAILABLE, "model is unloading"))
        while self._inflight:
            await asyncio.sleep(0.01)
        if self._reaper is not None:
            self._reaper.cancel()
        for lane in self._lanes:
            if lane.task is not None:
                lane.task.cancel()
            lane.runner.close()
