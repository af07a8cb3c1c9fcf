"""Trace settings, sampling and the trace file; log settings validation."""
from __future__ import annotations

import json

import pytest

from triton_asyncio.core.request import InferenceRequest, RequestState
from triton_asyncio.errors import ErrorCode, TritonError
from triton_asyncio.server import logging_settings
from triton_asyncio.server.trace import TracedRequest, TraceManager


def _run(tracer: TraceManager, model: str = "m") -> InferenceRequest:
    request = InferenceRequest(model, id="r")
    if tracer.active:
        tracer.start(request, model, 1)
    for state in (RequestState.PENDING, RequestState.EXECUTING, RequestState.RELEASED):
        request.set_state(state)
    tracer.end(request)
    return request


def test_off_by_default_and_untraced_requests_keep_their_class():
    tracer = TraceManager()
    assert not tracer.active
    assert type(_run(tracer)) is InferenceRequest
    assert tracer.settings()["trace_level"] == ["OFF"]


def test_rate_count_and_file(tmp_path):
    path = tmp_path / "t.json"
    tracer = TraceManager(level=("TIMESTAMPS",), rate=2, count=2, file=str(path))
    requests = [_run(tracer) for _ in range(6)]
    assert [type(r) is TracedRequest for r in requests] == [True, False, True, False, False, False]
    assert tracer.settings()["trace_count"] == "0"
    tracer.close()
    doc = json.loads(path.read_text())
    assert doc[0] == {"id": 1, "model_name": "m", "model_version": 1, "request_id": "r"}
    assert [t["name"] for t in doc[1]["timestamps"]] == [
        "REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_END", "REQUEST_END"]


def test_log_frequency_writes_numbered_files(tmp_path):
    tracer = TraceManager(level=("TIMESTAMPS",), rate=1, log_frequency=2, file=str(tmp_path / "t.json"))
    for _ in range(5):
        _run(tracer)
    tracer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json.0", "t.json.1", "t.json.2"]


def test_model_override_and_clear():
    tracer = TraceManager()
    assert tracer.update({"trace_level": ["TIMESTAMPS"]}, "m")["trace_level"] == ["TIMESTAMPS"]
    assert tracer.active and tracer.settings()["trace_level"] == ["OFF"]
    assert type(_run(tracer, "other")) is InferenceRequest
    tracer.update({"trace_level": None}, "m")
    assert not tracer.active and tracer.settings("m")["trace_level"] == ["OFF"]


@pytest.mark.parametrize("body, code", [
    ({"trace_file": "x"}, ErrorCode.UNSUPPORTED),
    ({"trace_level": ["OFF", "TENSORS"]}, ErrorCode.INVALID_ARG),
    ({"trace_level": ["LOUD"]}, ErrorCode.INVALID_ARG),
    ({"trace_rate": "x"}, ErrorCode.INVALID_ARG),
    ({"trace_count": "-2"}, ErrorCode.INVALID_ARG),
    ({"log_frequency": 3}, ErrorCode.INVALID_ARG),
    ({"colour": "1"}, ErrorCode.INVALID_ARG),
])
def test_trace_validation(body, code):
    tracer = TraceManager()
    with pytest.raises(TritonError) as info:
        tracer.update(body)
    assert info.value.code is code
    assert tracer.settings()["trace_rate"] == "1000"  # nothing applied


@pytest.mark.parametrize("body, code, message", [
    ({"log_file": ""}, ErrorCode.UNSUPPORTED, "log file location can not be updated through network protocol"),
    ({"log_info": 1}, ErrorCode.INVALID_ARG, "expect boolean for 'log_info'"),
    ({"log_verbose_level": -1}, ErrorCode.INVALID_ARG, "expect unsigned integer for 'log_verbose_level'"),
    ({"log_verbose_level": True}, ErrorCode.INVALID_ARG, "expect unsigned integer for 'log_verbose_level'"),
    ({"log_format": "xml"}, ErrorCode.UNAVAILABLE, "invalid argument for --log_format, got: xml"),
])
def test_log_settings_validation(body, code, message):
    with pytest.raises(TritonError) as info:
        logging_settings.validate(body)
    assert (info.value.code, info.value.message) == (code, message)


def test_log_settings_nulls_change_nothing():
    assert logging_settings.validate({"log_info": None, "log_verbose_level": 3}) == {"log_verbose_level": 3}
