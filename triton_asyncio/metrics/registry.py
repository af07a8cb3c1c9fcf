"""Triton's metric families on a prometheus_client `CollectorRegistry`, rendered per scrape.

Rules: one `TritonCollector` per server yields every family from its sources at collect time
(models from a callable the transport supplies, CPU and GPU samplers refreshed by the transport
every --metrics-interval-ms); `render` turns the registry's families into Triton's text format.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from .exposition import render as render_families
from .gpu import GpuSampler
from .latency import MetricsSettings
from .model_metrics import ModelRow, model_families
from .system import CpuSampler

CONTENT_TYPE = b"text/plain; charset=utf-8"


class TritonCollector(Collector):
    def __init__(self, models: Callable[[], Iterable[ModelRow]], settings: MetricsSettings,
                 cpu: CpuSampler | None = None, gpu: GpuSampler | None = None) -> None:
        self.models = models
        self.settings = settings
        self.cpu = cpu
        self.gpu = gpu

    def collect(self) -> Iterator[Metric]:
        yield from model_families(self.models(), self.settings)
        if self.gpu is not None:
            yield from self.gpu.families()
        if self.cpu is not None:
            yield from self.cpu.families()

    def sample(self) -> None:
        """Refresh the per-interval gauges (CPU here; GPU is sampled off the loop by the caller)."""
        if self.cpu is not None:
            self.cpu.sample()


def make_registry(collector: TritonCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return render_families(registry.collect())
