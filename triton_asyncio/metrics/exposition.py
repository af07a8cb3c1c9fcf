"""Prometheus text format 0.0.4 in Triton's exact style, from prometheus_client's metric families.

Rules: the families are prometheus_client `Metric` objects collected from a `CollectorRegistry`
(registry.py); only the last step, text rendering, is ours. prometheus_client's
`generate_latest` renames every counter family `<name>_total` and prints every value as a float
(`2.0`); Triton's families are `nv_inference_request_success` with integral values printed as `2`,
and dashboards and perf_analyzer match those (see docs/decisions.md). Labels are printed in
alphabetical order, the summary `quantile` and histogram `le` labels last (prometheus-cpp's order).
"""
from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

_LAST = ("quantile", "le")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int) or (value == value and float(value).is_integer() and abs(value) < 2**53):
        return str(int(value))
    return floatToGoString(value)


def _labels(labels: dict[str, str]) -> str:
    keys = sorted(k for k in labels if k not in _LAST) + [k for k in _LAST if k in labels]
    return ",".join(f'{k}="{_escape(labels[k])}"' for k in keys)


def render(families: Iterable[Metric]) -> bytes:
    lines: list[str] = []
    for fam in families:
        if not fam.samples:
            continue  # a family with no series is not printed, as prometheus-cpp does
        lines.append(f"# HELP {fam.name} {fam.documentation}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for sample in fam.samples:
            text = _labels(sample.labels)
            value = _number(sample.value)
            lines.append(f"{sample.name}{{{text}}} {value}" if text else f"{sample.name} {value}")
    return ("\n".join(lines) + "\n").encode() if lines else b""
