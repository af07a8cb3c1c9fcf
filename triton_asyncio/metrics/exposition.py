"""Prometheus text format 0.0.4 in Triton's exact style.

Rules: prometheus_client renders counters as `<name>_total` in HELP/TYPE and every value as a
float (`2.0`); Triton's families (`nv_inference_request_success`) and integral values (`2`) are
what dashboards and perf_analyzer match on, so families are rendered here (see docs/decisions.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Family:
    name: str
    help: str
    type: str  # "counter" | "gauge"
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int) or (value == value and value.is_integer() and abs(value) < 2**53):
        return str(int(value))
    return repr(float(value))


def render(families: list[Family]) -> bytes:
    lines: list[str] = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {fam.help}")
        lines.append(f"# TYPE {fam.name} {fam.type}")
        for labels, value in fam.samples:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{fam.name}{{{text}}} {_number(value)}" if text else f"{fam.name} {_number(value)}")
    return ("\n".join(lines) + "\n").encode() if lines else b""
