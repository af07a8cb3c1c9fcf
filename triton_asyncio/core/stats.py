"""Per-model-version counters and durations in nanoseconds, as Triton's statistics report them.

Rules: plain counters updated by the scheduler and backends; rendering belongs to the codecs.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

# Triton's failure reasons (nv_inference_request_failure's `reason` label). A failure recorded
# without a reason (`fail.add`) is a BACKEND one: the scheduler saw the execute fail.
REJECTED, CANCELED, OTHER = "REJECTED", "CANCELED", "OTHER"

# perf_counter_ns() + this = ns since the epoch: schedulers read one clock per request, not two
EPOCH_OFFSET_NS = time.time_ns() - time.perf_counter_ns()


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns


@dataclass(slots=True)
class BatchStats:
    batch_size: int
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class ModelStats:
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    cache_hit: Duration = field(default_factory=Duration)
    cache_miss: Duration = field(default_factory=Duration)
    batches: dict[int, BatchStats] = field(default_factory=dict)
    # failures whose reason the scheduler knew, by reason; the rest of fail.count is BACKEND
    fail_reasons: dict[str, int] = field(default_factory=dict)
    # per-request latency observations, owned by whoever installed `observer` (metrics)
    recorder: Any = None
    # Called as observer(stats, arrived, started, done, compute_ns) for every successful request,
    # only while latency summaries or histograms are enabled: one class attribute check otherwise.
    # Installed as a staticmethod, so reading it through an instance does not bind it.
    observer: ClassVar[Callable[[ModelStats, int, int, int, int], None] | None] = None

    def record_failure(self, ns: int, reason: str) -> None:
        """A failed request whose reason is not the backend (REJECTED, CANCELED, OTHER)."""
        self.fail.add(ns)
        self.fail_reasons[reason] = self.fail_reasons.get(reason, 0) + 1

    def batch(self, size: int) -> BatchStats:
        b = self.batches.get(size)
        if b is None:
            b = self.batches[size] = BatchStats(size)
        return b

    # Field by field rather than Duration.add: these run once per request on the event loop.
    def record_request(self, arrived: int, started: int, done: int, compute_ns: int) -> None:
        """One successful request (perf_counter ns): end to end, queued, and its execution's compute
        time, which Triton reports for every request of a batch."""
        d = self.success
        d.count += 1
        d.ns += done - arrived
        d = self.queue
        d.count += 1
        d.ns += started - arrived
        self.compute_input.count += 1
        d = self.compute_infer
        d.count += 1
        d.ns += compute_ns
        self.compute_output.count += 1
        if self.observer is not None:
            self.observer(self, arrived, started, done, compute_ns)

    def record_execution(self, inferences: int, batch_size: int, compute_ns: int, done: int) -> None:
        """One execution of `batch_size` rows, `inferences` of them successful, ended at `done`."""
        self.last_inference_ms = (done + EPOCH_OFFSET_NS) // 1_000_000
        self.inference_count += inferences
        self.execution_count += 1
        b = self.batches.get(batch_size) or self.batch(batch_size)
        b.compute_input.count += 1
        d = b.compute_infer
        d.count += 1
        d.ns += compute_ns
        b.compute_output.count += 1
