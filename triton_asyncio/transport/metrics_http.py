"""The `/metrics` listener (port 8002), reusing HttpProtocol with a tiny app.

Rules: path `/metrics` or `/metrics/` renders; any other path is 200 with an empty body (Triton's
quirk); non-GET is 405. Per-model families are read at scrape time; CPU and GPU gauges are
refreshed every --metrics-interval-ms by `MetricsService.run` (GPU sampling in a thread: NVML
calls may block), so a scrape never waits on /proc or NVML.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

from ..metrics.gpu import GpuSampler
from ..metrics.latency import MetricsSettings, install
from ..metrics.model_metrics import ModelRow
from ..metrics.registry import CONTENT_TYPE, TritonCollector, make_registry, render
from ..metrics.system import CpuSampler
from ..server.inference_server import InferenceServer
from .http.messages import HttpRequest, HttpResponse

log = logging.getLogger("triton_asyncio.metrics")

_TEXT = [(b"content-type", CONTENT_TYPE)]


def _rows(server: InferenceServer) -> Iterator[ModelRow]:
    cache_on = server.response_cache is not None
    for name in sorted(server.manager.models):
        for m in server.manager.ready_versions(name):
            yield ModelRow(m.name, m.version_str, m.stats, m.scheduler.inflight_count(),
                           cache_on and bool(m.config.response_cache.enable))


class MetricsService:
    """The metrics endpoint's state: registry, samplers and their refresh loop."""

    def __init__(self, server: InferenceServer, *, settings: MetricsSettings = MetricsSettings(),
                 cpu: bool = True, gpu: bool = True, interval_ms: float = 2000) -> None:
        install(settings)
        self.gpu = GpuSampler() if gpu else None
        if self.gpu is not None and not self.gpu.available:
            self.gpu = None
        self.collector = TritonCollector(lambda: _rows(server), settings, CpuSampler() if cpu else None, self.gpu)
        self.registry = make_registry(self.collector)
        self.interval_s = max(0.001, interval_ms / 1000)

    def app(self) -> Callable[[HttpRequest], HttpResponse]:
        registry = self.registry

        def app(request: HttpRequest) -> HttpResponse:
            if request.method not in (b"GET", b"HEAD"):
                return HttpResponse(405, list(_TEXT), [])
            path = request.target.split(b"?", 1)[0]
            if path not in (b"/metrics", b"/metrics/"):
                return HttpResponse(200, list(_TEXT), [])
            return HttpResponse(200, list(_TEXT), [render(registry)])

        return app

    async def run(self) -> None:
        """Refresh the per-interval gauges until cancelled."""
        while True:
            try:
                self.collector.sample()
                if self.gpu is not None:
                    await asyncio.to_thread(self.gpu.sample)
            except Exception:  # a failed sample keeps the last values; the next one may work
                log.exception("failed to sample CPU/GPU metrics")
            await asyncio.sleep(self.interval_s)


def metrics_app(server: InferenceServer) -> Callable[[HttpRequest], HttpResponse]:
    """The app with default settings and no per-interval sampling (tests, embedding)."""
    return MetricsService(server, cpu=False, gpu=False).app()
