"""GPU metrics with a stand-in NVML module: families per device, and none without NVML."""
from __future__ import annotations

import sys
import types

from triton_asyncio.metrics.exposition import render
from triton_asyncio.metrics.gpu import GpuSampler


def _fake_nvml() -> types.ModuleType:
    nvml = types.ModuleType("pynvml")
    energy = iter([1_000_000, 1_500_000])  # mJ at start, then at the sample
    nvml.nvmlInit = lambda: None
    nvml.nvmlDeviceGetCount = lambda: 1
    nvml.nvmlDeviceGetHandleByIndex = lambda i: f"h{i}"
    nvml.nvmlDeviceGetUUID = lambda h: b"GPU-1234"
    nvml.nvmlDeviceGetTotalEnergyConsumption = lambda h: next(energy)
    nvml.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=25)
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=80, used=20)
    nvml.nvmlDeviceGetPowerUsage = lambda h: 150_000
    nvml.nvmlDeviceGetPowerManagementLimit = lambda h: 700_000
    return nvml


def test_gpu_families(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml())
    sampler = GpuSampler()
    assert sampler.available
    sampler.sample()
    text = render(sampler.families()).decode()
    assert 'nv_gpu_utilization{gpu_uuid="GPU-1234"} 0.25\n' in text
    assert 'nv_gpu_memory_total_bytes{gpu_uuid="GPU-1234"} 80\n' in text
    assert 'nv_gpu_power_usage{gpu_uuid="GPU-1234"} 150\n' in text
    assert 'nv_energy_consumption{gpu_uuid="GPU-1234"} 500\n' in text


def test_no_nvml_no_families(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    sampler = GpuSampler()
    assert not sampler.available and list(sampler.families()) == []
