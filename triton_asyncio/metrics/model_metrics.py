"""Triton's per-model `nv_inference_*` families, read from core.stats at scrape time.

Rules: nothing is updated per request for metrics; a scrape walks the loaded models' counters,
so the hot path pays nothing.
"""
from __future__ import annotations

from collections.abc import Iterable

from ..core.stats import ModelStats
from .exposition import Family

_FAMILIES = (
    ("nv_inference_request_success", "Number of successful inference requests, all batch sizes"),
    ("nv_inference_request_failure", "Number of failed inference requests, all batch sizes"),
    ("nv_inference_count", "Number of inferences performed (does not include cached requests)"),
    ("nv_inference_exec_count", "Number of model executions performed (does not include cached requests)"),
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
_REASONS = ("BACKEND", "CANCELED", "OTHER", "REJECTED")


def model_families(models: Iterable[tuple[str, str, ModelStats, int]]) -> list[Family]:
    """models: (name, version, stats, pending request count) for every loaded version."""
    fams = {name: Family(name, text, "counter") for name, text in _FAMILIES}
    pending = Family("nv_inference_pending_request_count",
                     "Instantaneous number of pending requests awaiting execution per-model.", "gauge")
    for name, version, s, queued in models:
        lab = {"model": name, "version": version}
        fams["nv_inference_request_success"].samples.append((lab, s.success.count))
        for reason in _REASONS:
            value = s.fail.count if reason == "BACKEND" else 0
            fams["nv_inference_request_failure"].samples.append(({**lab, "reason": reason}, value))
        fams["nv_inference_count"].samples.append((lab, s.inference_count))
        fams["nv_inference_exec_count"].samples.append((lab, s.execution_count))
        fams["nv_inference_request_duration_us"].samples.append((lab, (s.success.ns + s.fail.ns) // 1000))
        fams["nv_inference_queue_duration_us"].samples.append((lab, s.queue.ns // 1000))
        fams["nv_inference_compute_input_duration_us"].samples.append((lab, s.compute_input.ns // 1000))
        fams["nv_inference_compute_infer_duration_us"].samples.append((lab, s.compute_infer.ns // 1000))
        fams["nv_inference_compute_output_duration_us"].samples.append((lab, s.compute_output.ns // 1000))
        pending.samples.append((lab, queued))
    return [*fams.values(), pending]
