"""Optional NVML sampling for Triton's `nv_gpu_*` gauges and `nv_energy_consumption`.

Rules: pynvml is imported lazily, once; without it, without a driver or without GPUs there are
no GPU families and no error. `sample()` runs every --metrics-interval-ms (off the event loop:
NVML calls can block); scrapes read the last sample. Energy is counted since the server started.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client.metrics_core import Metric

log = logging.getLogger("triton_asyncio.metrics")

_GAUGES = (
    ("nv_gpu_utilization", "GPU utilization rate [0.0 - 1.0)", "gauge"),
    ("nv_gpu_memory_total_bytes", "GPU total memory, in bytes", "gauge"),
    ("nv_gpu_memory_used_bytes", "GPU used memory, in bytes", "gauge"),
    ("nv_gpu_power_usage", "GPU power usage in watts", "gauge"),
    ("nv_gpu_power_limit", "GPU power management limit in watts", "gauge"),
    ("nv_energy_consumption", "GPU energy consumption in joules since the Triton Server started", "counter"),
)


class GpuSampler:
    def __init__(self) -> None:
        self._nvml: Any = None
        self._devices: list[tuple[str, Any, float]] = []  # (uuid, handle, energy at start in J)
        self.values: dict[str, tuple[float, ...]] = {}
        try:
            import pynvml  # optional: the `gpu` extra
            pynvml.nvmlInit()
            for i in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                uuid = pynvml.nvmlDeviceGetUUID(handle)
                uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
                self._devices.append((uuid, handle, self._energy(pynvml, handle)))
            self._nvml = pynvml
        except Exception as e:  # ImportError, NVMLError (no driver): no GPU metrics
            log.debug("GPU metrics unavailable: %s", e)
            self._devices = []

    @staticmethod
    def _energy(nvml: Any, handle: Any) -> float:
        try:
            return nvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0  # mJ -> J
        except Exception:
            return 0.0

    @property
    def available(self) -> bool:
        return bool(self._devices)

    def sample(self) -> None:
        nvml = self._nvml
        for uuid, handle, energy0 in self._devices:
            try:
                util = nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
                power = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0  # mW -> W
                limit = nvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000.0
                energy = max(0.0, self._energy(nvml, handle) - energy0)
            except Exception as e:  # a device that fails now keeps its last values
                log.debug("GPU %s sample failed: %s", uuid, e)
                continue
            self.values[uuid] = (util, mem.total, mem.used, power, limit, energy)

    def families(self) -> Iterator[Metric]:
        if not self.values:
            return
        for i, (name, text, kind) in enumerate(_GAUGES):
            fam = Metric(name, text, kind)
            for uuid, values in sorted(self.values.items()):
                fam.add_sample(name, {"gpu_uuid": uuid}, values[i])
            yield fam
