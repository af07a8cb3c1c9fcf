"""CPU and host-memory gauges (`nv_cpu_*`), sampled from /proc every --metrics-interval-ms.

Rules: `sample()` reads /proc/stat and /proc/meminfo (no third-party library); utilization is
the busy share of the jiffies elapsed since the previous sample, as Triton computes it
(idle = idle + iowait); used memory = MemTotal - MemAvailable. A host without /proc reports
nothing rather than failing.
"""
from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import Metric


def _cpu_times(path: str) -> tuple[int, int] | None:
    """(idle, total) jiffies over all CPUs, or None when unreadable."""
    try:
        with open(path, encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return values[3] + values[4], sum(values)


def _meminfo(path: str) -> tuple[int, int] | None:
    """(total, used) bytes, or None when unreadable."""
    info: dict[str, int] = {}
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    total = info.get("MemTotal", 0)
    return total, total - info.get("MemAvailable", info.get("MemFree", 0))


class CpuSampler:
    def __init__(self, proc: str = "/proc") -> None:
        self._stat, self._meminfo = f"{proc}/stat", f"{proc}/meminfo"
        self._last = _cpu_times(self._stat)
        self.utilization = 0.0
        self.memory: tuple[int, int] | None = None
        self.sample()

    def sample(self) -> None:
        now = _cpu_times(self._stat)
        if now is not None and self._last is not None:
            idle, total = now[0] - self._last[0], now[1] - self._last[1]
            if total > 0:
                self.utilization = max(0.0, min(1.0, 1.0 - idle / total))
        self._last = now or self._last
        self.memory = _meminfo(self._meminfo)

    def families(self) -> Iterator[Metric]:
        if self._last is None and self.memory is None:
            return
        util = Metric("nv_cpu_utilization", "CPU utilization rate [0.0 - 1.0]", "gauge")
        util.add_sample(util.name, {}, self.utilization)
        yield util
        if self.memory is not None:
            total = Metric("nv_cpu_memory_total_bytes", "CPU total memory (RAM), in bytes", "gauge")
            total.add_sample(total.name, {}, self.memory[0])
            used = Metric("nv_cpu_memory_used_bytes", "CPU used memory (RAM), in bytes", "gauge")
            used.add_sample(used.name, {}, self.memory[1])
            yield from (total, used)
