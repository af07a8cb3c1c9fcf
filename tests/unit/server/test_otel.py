"""server/otel.py without a network: settings parsing and the missing-packages error."""
from __future__ import annotations

import sys

import pytest

from triton_asyncio.errors import TritonError
from triton_asyncio.server.otel import DEFAULT_URL, OtelExporter, parse_settings
from triton_asyncio.server.trace import TraceManager


def test_defaults_and_overrides():
    assert parse_settings(()) == {"url": DEFAULT_URL, "resource": {"service.name": "triton-inference-server"},
                                  "bsp_max_queue_size": 2048, "bsp_schedule_delay": 5000,
                                  "bsp_max_export_batch_size": 512}
    got = parse_settings([("opentelemetry", "url", "collector:4318/v1/traces"), ("", "rate", "1"),
                          ("opentelemetry", "resource", "service.name=t"), ("opentelemetry", "resource", "a=b=c"),
                          ("opentelemetry", "bsp_schedule_delay", "10"), ("triton", "file", "x")])
    assert got["url"] == "http://collector:4318/v1/traces"
    assert got["resource"] == {"service.name": "t", "a": "b=c"}
    assert got["bsp_schedule_delay"] == 10


@pytest.mark.parametrize("key, value, message", [
    ("bsp_max_queue_size", "x", "expects an integer"), ("bsp_schedule_delay", "0", "must be positive"),
    ("bsp_max_export_batch_size", "4096", "must be <= bsp_max_queue_size"), ("resource", "novalue", "<key>=<value>"),
])
def test_bad_settings(key, value, message):
    with pytest.raises(ValueError, match=message):
        parse_settings([("opentelemetry", key, value)])
    with pytest.raises(TritonError, match=message):
        TraceManager(mode="opentelemetry", config=(("opentelemetry", key, value),))


def test_missing_packages_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # import now raises ImportError
    with pytest.raises(RuntimeError, match=r"triton_asyncio\[trace\]"):
        OtelExporter(parse_settings(()))
