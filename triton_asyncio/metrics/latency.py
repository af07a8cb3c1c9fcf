"""`--metrics-config` settings and per-request latency observations (summaries, histograms).

Rules: observations exist only while `summary_latencies` or `histogram_latencies` is on; then
`install` sets `ModelStats.observer`, which the schedulers call once per successful request
(a class attribute check when off). Summaries follow Triton's: quantiles over the last 60 s of
observations (prometheus-cpp's max_age), cumulative count and sum; the request summary is off
when a response cache is on. The first-response histogram has Triton's buckets (ms).
"""
from __future__ import annotations

import bisect
import collections
import time
from dataclasses import dataclass

from ..core.stats import ModelStats

DEFAULT_QUANTILES = ((0.5, 0.05), (0.9, 0.01), (0.95, 0.001), (0.99, 0.001), (0.999, 0.001))
HISTOGRAM_BUCKETS_MS = (100.0, 500.0, 2000.0, 5000.0)
SUMMARY_KINDS = ("request", "queue", "compute_input", "compute_infer", "compute_output")
MAX_AGE_NS = 60 * 10**9
_WINDOW_MAX = 8192  # observations kept per summary; older ones drop out early under heavy load


def _bool(setting: str, value: str) -> bool:
    if value.lower() in ("true", "1", "on"):
        return True
    if value.lower() in ("false", "0", "off"):
        return False
    raise ValueError(f"invalid value for bool option {setting}: {value}")


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    counter_latencies: bool = True
    summary_latencies: bool = False
    histogram_latencies: bool = False
    quantiles: tuple[tuple[float, float], ...] = DEFAULT_QUANTILES

    @classmethod
    def from_pairs(cls, pairs: tuple[tuple[str, str], ...]) -> MetricsSettings:
        """(setting, value) pairs as --metrics-config gave them; unknown settings are ignored."""
        values: dict[str, object] = {}
        for setting, value in pairs:
            if setting in ("counter_latencies", "summary_latencies", "histogram_latencies"):
                values[setting] = _bool(setting, value)
            elif setting == "summary_quantiles":
                values["quantiles"] = tuple(
                    (float(q), float(e)) for q, e in (p.split(":", 1) for p in value.strip('"').split(",") if p))
        return cls(**values)  # type: ignore[arg-type]

    @property
    def observing(self) -> bool:
        return self.summary_latencies or self.histogram_latencies


class Window:
    """One summary: cumulative count/sum, quantiles over recent observations."""

    __slots__ = ("count", "sum", "_recent")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self._recent: collections.deque[tuple[int, float]] = collections.deque(maxlen=_WINDOW_MAX)

    def observe(self, now_ns: int, value: float) -> None:
        self.count += 1
        self.sum += value
        self._recent.append((now_ns, value))

    def quantiles(self, qs: tuple[tuple[float, float], ...], now_ns: int) -> list[tuple[float, float]]:
        recent = self._recent
        while recent and now_ns - recent[0][0] > MAX_AGE_NS:
            recent.popleft()
        values = sorted(v for _, v in recent)
        if not values:
            return [(q, float("nan")) for q, _ in qs]
        return [(q, values[min(len(values) - 1, int(q * len(values)))]) for q, _ in qs]


class Latencies:
    """A model version's observations (ModelStats.recorder)."""

    __slots__ = ("summaries", "buckets", "hist_count", "hist_sum")

    def __init__(self, settings: MetricsSettings) -> None:
        self.summaries = {k: Window() for k in SUMMARY_KINDS} if settings.summary_latencies else None
        self.buckets = [0] * (len(HISTOGRAM_BUCKETS_MS) + 1) if settings.histogram_latencies else None
        self.hist_count = 0
        self.hist_sum = 0.0

    def observe(self, arrived: int, started: int, done: int, compute_ns: int) -> None:
        s = self.summaries
        if s is not None:
            s["request"].observe(done, (done - arrived) / 1000)
            s["queue"].observe(done, (started - arrived) / 1000)
            s["compute_input"].observe(done, 0.0)  # core.stats times compute as one span
            s["compute_infer"].observe(done, compute_ns / 1000)
            s["compute_output"].observe(done, 0.0)
        if self.buckets is not None:
            ms = (done - arrived) / 1e6
            self.buckets[bisect.bisect_left(HISTOGRAM_BUCKETS_MS, ms)] += 1
            self.hist_count += 1
            self.hist_sum += ms


def install(settings: MetricsSettings) -> None:
    """Start (or stop) per-request observation for every model's statistics."""
    if not settings.observing:
        ModelStats.observer = None
        return

    def observe(stats: ModelStats, arrived: int, started: int, done: int, compute_ns: int) -> None:
        rec = stats.recorder
        if rec is None:
            rec = stats.recorder = Latencies(settings)
        rec.observe(arrived, started, done, compute_ns)

    ModelStats.observer = staticmethod(observe)  # type: ignore[assignment]  # read through instances


def now_ns() -> int:
    return time.perf_counter_ns()  # the schedulers' clock: observations are stamped with it
