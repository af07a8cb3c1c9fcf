"""Metrics families, exposition style, latency windows and /proc sampling, without a server."""
from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from triton_asyncio.core.stats import CANCELED, REJECTED, ModelStats
from triton_asyncio.metrics.exposition import render
from triton_asyncio.metrics.latency import Latencies, MetricsSettings, Window, install
from triton_asyncio.metrics.model_metrics import ModelRow, model_families
from triton_asyncio.metrics.registry import TritonCollector, make_registry
from triton_asyncio.metrics.registry import render as render_registry
from triton_asyncio.metrics.system import CpuSampler


def _stats() -> ModelStats:
    s = ModelStats()
    s.record_request(0, 1_000, 5_000, 3_000)
    s.record_execution(1, 1, 3_000, 5_000)
    s.fail.add(2_000)  # a backend failure
    s.record_failure(1_000, REJECTED)
    s.record_failure(1_000, CANCELED)
    return s


def test_failure_reasons_and_style():
    text = render(model_families([ModelRow("m", "1", _stats(), 0, False)])).decode()
    assert 'nv_inference_request_failure{model="m",reason="BACKEND",version="1"} 1\n' in text
    assert 'nv_inference_request_failure{model="m",reason="REJECTED",version="1"} 1\n' in text
    assert 'nv_inference_request_failure{model="m",reason="OTHER",version="1"} 0\n' in text
    assert 'nv_inference_request_success{model="m",version="1"} 1\n' in text
    assert "nv_cache_num_hits_per_model" not in text  # no model uses the cache
    assert "_summary_us" not in text and "nv_inference_request_duration_us{" in text
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {"nv_inference_request_success", "nv_inference_pending_request_count"} <= families


def test_counter_latencies_off_drops_duration_counters():
    settings = MetricsSettings.from_pairs((("counter_latencies", "false"),))
    text = render(model_families([ModelRow("m", "1", ModelStats(), 0, False)], settings)).decode()
    assert "nv_inference_request_duration_us" not in text and "nv_inference_count{" in text


def test_observer_feeds_summaries_and_histogram():
    settings = MetricsSettings.from_pairs((("summary_latencies", "true"), ("histogram_latencies", "true"),
                                           ("summary_quantiles", "0.5:0.05,0.9:0.01")))
    assert settings.quantiles == ((0.5, 0.05), (0.9, 0.01))
    install(settings)
    try:
        s = ModelStats()
        start = time.perf_counter_ns()  # the schedulers' clock, which the 60 s window follows
        for i in range(10):
            s.record_request(start, start, start + (i + 1) * 1_000_000, 0)  # 1 ms .. 10 ms end to end
        assert isinstance(s.recorder, Latencies)
        text = render(model_families([ModelRow("m", "1", s, 0, False)], settings)).decode()
    finally:
        install(MetricsSettings())
    assert ModelStats.observer is None
    assert 'nv_inference_request_summary_us_count{model="m",version="1"} 10\n' in text
    assert 'nv_inference_request_summary_us{model="m",version="1",quantile="0.5"} 6000\n' in text
    assert 'nv_inference_first_response_histogram_ms_bucket{model="m",version="1",le="100"} 10\n' in text
    assert 'nv_inference_first_response_histogram_ms_bucket{model="m",version="1",le="+Inf"} 10\n' in text


def test_window_forgets_old_observations():
    w = Window()
    w.observe(0, 5.0)
    w.observe(61 * 10**9, 7.0)
    assert w.quantiles(((0.5, 0.05),), 61 * 10**9) == [(0.5, 7.0)]
    assert (w.count, w.sum) == (2, 12.0)


def test_cpu_sampler_reads_proc(tmp_path):
    (tmp_path / "stat").write_text("cpu  100 0 100 800 0 0 0 0 0 0\n")
    (tmp_path / "meminfo").write_text("MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 400 kB\n")
    sampler = CpuSampler(str(tmp_path))
    (tmp_path / "stat").write_text("cpu  200 0 200 900 0 0 0 0 0 0\n")  # 200 busy of 300 jiffies
    sampler.sample()
    registry = make_registry(TritonCollector(lambda: [], MetricsSettings(), cpu=sampler))
    text = render_registry(registry).decode()
    assert "nv_cpu_utilization 0.6666666666666667\n" in text or "nv_cpu_utilization 0.666666666666666" in text
    assert "nv_cpu_memory_total_bytes 1024000\n" in text and "nv_cpu_memory_used_bytes 614400\n" in text


def test_cpu_sampler_without_proc(tmp_path):
    sampler = CpuSampler(str(tmp_path / "missing"))
    assert list(sampler.families()) == []
