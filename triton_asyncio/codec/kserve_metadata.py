"""JSON bodies for the non-inference REST endpoints: server and model metadata, statistics and
the repository index, in Triton's key order (spec 1.4, 1.5, 1.8, 1.9).

Rules: rendering only; the caller decides what is reported (READY versions, shapes with the
batch dim, index rows). Pure: no I/O.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from ..core.stats import BatchStats, Duration, ModelStats

_STAT_NAMES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
               "cache_hit", "cache_miss")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogateescape")


def encode_server_metadata(name: str, version: str, extensions: Sequence[str]) -> bytes:
    return _dumps({"name": name, "version": version, "extensions": list(extensions)})


def _tensors(items: Iterable[tuple[str, str, Sequence[int]]]) -> list[dict]:
    return [{"name": n, "datatype": dt, "shape": [int(d) for d in shape]} for n, dt, shape in items]


def encode_model_metadata(name: str, versions: Sequence[str], platform: str,
                          inputs: Iterable[tuple[str, str, Sequence[int]]],
                          outputs: Iterable[tuple[str, str, Sequence[int]]]) -> bytes:
    """`shape` is as Triton reports it: the caller prepends -1 when max_batch_size > 0."""
    return _dumps({"name": name, "versions": list(versions), "platform": platform,
                   "inputs": _tensors(inputs), "outputs": _tensors(outputs)})


def _duration(d: Duration) -> dict:
    return {"count": d.count, "ns": d.ns}


def _batch(b: BatchStats) -> dict:
    return {"batch_size": b.batch_size, "compute_input": _duration(b.compute_input),
            "compute_infer": _duration(b.compute_infer), "compute_output": _duration(b.compute_output)}


def model_stats_entry(name: str, version: str, stats: ModelStats) -> dict:
    return {
        "name": name,
        "version": version,
        "last_inference": stats.last_inference_ms,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "inference_stats": {k: _duration(getattr(stats, k)) for k in _STAT_NAMES},
        "response_stats": {},
        "batch_stats": [_batch(stats.batches[size]) for size in sorted(stats.batches)],
        "memory_usage": [],
    }


def encode_model_stats(entries: Iterable[tuple[str, str, ModelStats]]) -> bytes:
    return _dumps({"model_stats": [model_stats_entry(n, v, s) for n, v, s in entries]})


def index_entry(name: str, version: str | None, state: str | None, reason: str | None) -> dict:
    entry: dict = {"name": name}
    if version is not None:
        entry["version"] = version
    if state is not None:
        entry["state"] = state
    if reason:
        entry["reason"] = reason
    return entry


def encode_repository_index(rows: Iterable[tuple[str, str | None, str | None, str | None]]) -> bytes:
    """Rows are (name, version, state, reason); None/"" members are left out, as Triton does."""
    return _dumps([index_entry(*row) for row in rows])
