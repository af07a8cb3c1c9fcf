"""Triton's per-model families (`nv_inference_*`, `nv_cache_*_per_model`), read from core.stats.

Rules: counters are read from the loaded models' statistics at scrape time, so the request path
pays nothing for them; summaries and histograms come from `latency` observations, which exist
only when enabled. Every loaded version gets every series (zeros included), all four failure
reasons pre-created: a failure without a known reason is BACKEND.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from prometheus_client.metrics_core import Metric

from ..core.stats import CANCELED, OTHER, REJECTED, ModelStats
from .latency import HISTOGRAM_BUCKETS_MS, SUMMARY_KINDS, Latencies, MetricsSettings, now_ns


class ModelRow(NamedTuple):
    name: str
    version: str
    stats: ModelStats
    pending: int  # requests received and not finished
    cache: bool  # the model uses the response cache (and the server has one)


_DURATIONS = (
    ("nv_inference_request_duration_us",
     "Cumulative inference request duration in microseconds (includes cached requests)"),
    ("nv_inference_queue_duration_us",
     "Cumulative inference queuing duration in microseconds (includes cached requests)"),
    ("nv_inference_compute_input_duration_us",
     "Cumulative compute input duration in microseconds (does not include cached requests)"),
    ("nv_inference_compute_infer_duration_us",
     "Cumulative compute inference duration in microseconds (does not include cached requests)"),
    ("nv_inference_compute_output_duration_us",
     "Cumulative inference compute output duration in microseconds (does not include cached requests)"),
)
_SUMMARY_HELP = {
    "request": "Cumulative inference request duration in microseconds (includes cached requests)",
    "queue": "Cumulative inference queuing duration in microseconds (includes cached requests)",
    "compute_input": "Cumulative compute input duration in microseconds (does not include cached requests)",
    "compute_infer": "Cumulative compute inference duration in microseconds (does not include cached requests)",
    "compute_output": "Cumulative inference compute output duration in microseconds (does not include cached "
                      "requests)",
}
_REASONS = ("BACKEND", CANCELED, OTHER, REJECTED)


def _labels(row: ModelRow) -> dict[str, str]:
    return {"model": row.name, "version": row.version}


def _counters(rows: list[ModelRow], settings: MetricsSettings) -> Iterator[Metric]:
    success = Metric("nv_inference_request_success", "Number of successful inference requests, all batch sizes",
                     "counter")
    failure = Metric("nv_inference_request_failure", "Number of failed inference requests, all batch sizes",
                     "counter")
    count = Metric("nv_inference_count", "Number of inferences performed (does not include cached requests)",
                   "counter")
    execs = Metric("nv_inference_exec_count",
                   "Number of model executions performed (does not include cached requests)", "counter")
    pending = Metric("nv_inference_pending_request_count",
                     "Instantaneous number of pending requests awaiting execution per-model.", "gauge")
    durations = [Metric(name, text, "counter") for name, text in _DURATIONS]
    for row in rows:
        s, lab = row.stats, _labels(row)
        success.add_sample(success.name, lab, s.success.count)
        known = sum(s.fail_reasons.values())
        for reason in _REASONS:
            value = s.fail.count - known if reason == "BACKEND" else s.fail_reasons.get(reason, 0)
            failure.add_sample(failure.name, {**lab, "reason": reason}, value)
        count.add_sample(count.name, lab, s.inference_count)
        execs.add_sample(execs.name, lab, s.execution_count)
        pending.add_sample(pending.name, lab, row.pending)
        if settings.counter_latencies:
            ns = (s.success.ns + s.fail.ns, s.queue.ns, s.compute_input.ns, s.compute_infer.ns, s.compute_output.ns)
            for fam, value in zip(durations, ns, strict=True):
                fam.add_sample(fam.name, lab, value // 1000)
    yield from (success, failure, count, execs, pending)
    if settings.counter_latencies:
        yield from durations


def _cache(rows: list[ModelRow]) -> Iterator[Metric]:
    hits = Metric("nv_cache_num_hits_per_model", "Number of cache hits per model", "counter")
    misses = Metric("nv_cache_num_misses_per_model", "Number of cache misses per model", "counter")
    hit_us = Metric("nv_cache_hit_duration_per_model",
                    "Total cache hit duration per model, in microseconds", "counter")
    miss_us = Metric("nv_cache_miss_duration_per_model",
                     "Total cache miss (insert+lookup) duration per model, in microseconds", "counter")
    for row in rows:
        if not row.cache:
            continue
        s, lab = row.stats, _labels(row)
        hits.add_sample(hits.name, lab, s.cache_hit.count)
        misses.add_sample(misses.name, lab, s.cache_miss.count)
        hit_us.add_sample(hit_us.name, lab, s.cache_hit.ns // 1000)
        miss_us.add_sample(miss_us.name, lab, s.cache_miss.ns // 1000)
    yield from (hits, misses, hit_us, miss_us)


def _summaries(rows: list[ModelRow], settings: MetricsSettings) -> Iterator[Metric]:
    now = now_ns()
    fams = {k: Metric(f"nv_inference_{k}_summary_us", _SUMMARY_HELP[k], "summary") for k in SUMMARY_KINDS}
    for row in rows:
        rec: Latencies = row.stats.recorder or Latencies(settings)
        if rec.summaries is None:
            continue
        lab = _labels(row)
        for kind, fam in fams.items():
            if kind == "request" and row.cache:
                continue  # Triton: the request summary is disabled when the cache is on
            window = rec.summaries[kind]
            for q, value in window.quantiles(settings.quantiles, now):
                fam.add_sample(fam.name, {**lab, "quantile": floatstr(q)}, value)
            fam.add_sample(fam.name + "_count", lab, window.count)
            fam.add_sample(fam.name + "_sum", lab, window.sum)
    yield from fams.values()


def _histograms(rows: list[ModelRow], settings: MetricsSettings) -> Iterator[Metric]:
    fam = Metric("nv_inference_first_response_histogram_ms",
                 "Duration from request to first response in milliseconds", "histogram")
    for row in rows:
        rec: Latencies = row.stats.recorder or Latencies(settings)
        if rec.buckets is None:
            continue
        lab = _labels(row)
        total = 0
        for bound, n in zip((*HISTOGRAM_BUCKETS_MS, math.inf), rec.buckets, strict=True):
            total += n
            fam.add_sample(fam.name + "_bucket", {**lab, "le": floatstr(bound)}, total)
        fam.add_sample(fam.name + "_count", lab, rec.hist_count)
        fam.add_sample(fam.name + "_sum", lab, rec.hist_sum)
    yield fam


def floatstr(value: float) -> str:
    """A label value as prometheus-cpp prints it: `+Inf`, `100`, `0.5`."""
    if math.isinf(value):
        return "+Inf"
    return str(int(value)) if float(value).is_integer() else repr(value)


def model_families(rows: Iterable[ModelRow], settings: MetricsSettings = MetricsSettings()) -> Iterator[Metric]:
    rows = list(rows)
    yield from _counters(rows, settings)
    yield from _cache(rows)
    if settings.summary_latencies:
        yield from _summaries(rows, settings)
    if settings.histogram_latencies:
        yield from _histograms(rows, settings)
