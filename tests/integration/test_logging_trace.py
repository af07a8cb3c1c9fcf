"""Logging and trace extensions through a real server: settings round trips, validation, effects."""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from .conftest import start_server, stop_server

_STAMPS = ["REQUEST_START", "QUEUE_START", "COMPUTE_START", "COMPUTE_END", "REQUEST_END"]


def call(srv, path: str, body: object | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{srv.http_url}{path}", data=data, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _infer(srv, n: int) -> None:
    client = httpclient.InferenceServerClient(srv.http_url)
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(a)
    for _ in range(n):
        client.infer("simple", inputs)


@pytest.fixture
def traced(example_repo, tmp_path):
    trace_file = tmp_path / "trace.json"
    srv = start_server(example_repo, str(tmp_path / "server.log"), "--trace-config", "level=TIMESTAMPS",
                       "--trace-config", "rate=1", "--trace-config", f"triton,file={trace_file}")
    yield srv, trace_file
    stop_server(srv)


def test_logging_round_trip_validation_and_effect(traced):
    srv, _ = traced
    default = {"log_file": "", "log_info": True, "log_warning": True, "log_error": True,
               "log_verbose_level": 0, "log_format": "default"}
    assert call(srv, "/v2/logging") == (200, default)
    assert call(srv, "/v2/logging", {"log_verbose_level": 2, "log_warning": None}) == (
        200, {**default, "log_verbose_level": 2})
    assert call(srv, "/v2/logging", {"log_file": "x.log"}) == (
        501, {"error": "log file location can not be updated through network protocol"})
    assert call(srv, "/v2/logging", {"log_info": "yes"}) == (400, {"error": "expect boolean for 'log_info'"})
    assert call(srv, "/v2/logging", {"log_format": "xml"}) == (
        503, {"error": "invalid argument for --log_format, got: xml"})

    client = grpcclient.InferenceServerClient(srv.grpc_url)
    settings = client.get_log_settings(as_json=True)["settings"]
    assert settings["log_verbose_level"] == {"uint32_param": 2} and settings["log_info"] == {"bool_param": True}
    client.update_log_settings({"log_format": "ISO8601", "log_verbose_level": 0})
    assert call(srv, "/v2/logging")[1]["log_format"] == "ISO8601"

    # the effect: lines logged from now on (the shutdown's) use the ISO8601 format
    assert stop_server(srv) == 0
    tail = srv.log().split("Signal (15) received.", 1)[1]
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ I \d+ \S+:\d+\] \"Waiting for in-flight", tail, re.M), tail


def test_trace_settings_round_trip(traced):
    srv, trace_file = traced
    expected = {"trace_level": ["TIMESTAMPS"], "trace_rate": "1", "trace_count": "-1", "log_frequency": "0",
                "trace_file": str(trace_file), "trace_mode": "triton"}
    assert call(srv, "/v2/trace/setting") == (200, expected)
    status, body = call(srv, "/v2/models/simple/trace/setting", {"trace_rate": "3", "trace_level": ["TIMESTAMPS", "TENSORS"]})
    assert status == 200 and body == {**expected, "trace_rate": "3", "trace_level": ["TIMESTAMPS", "TENSORS"]}
    assert call(srv, "/v2/trace/setting")[1] == expected  # the global settings did not move
    assert call(srv, "/v2/models/simple/trace/setting", {"trace_rate": None, "trace_level": None}) == (200, expected)

    assert call(srv, "/v2/trace/setting", {"trace_file": "other.json"}) == (
        501, {"error": "trace file location can not be updated through network protocol"})
    assert call(srv, "/v2/trace/setting", {"trace_level": ["OFF", "TIMESTAMPS"]})[0] == 400
    assert call(srv, "/v2/trace/setting", {"trace_count": "-2"})[0] == 400
    assert call(srv, "/v2/trace/setting", {"trace_rate": 5})[0] == 400  # numbers travel as strings
    assert call(srv, "/v2/models/nope/trace/setting") == (400, {"error": "Request for unknown model : nope"})

    client = grpcclient.InferenceServerClient(srv.grpc_url)
    client.update_trace_settings("simple", {"trace_count": "5"})
    settings = client.get_trace_settings("simple", as_json=True)["settings"]
    assert settings["trace_count"] == {"value": ["5"]} and settings["trace_level"] == {"value": ["TIMESTAMPS"]}


def test_trace_file_has_timestamps(traced):
    srv, trace_file = traced
    _infer(srv, 3)
    assert stop_server(srv) == 0, srv.log()
    deadline = time.monotonic() + 10
    while not trace_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    doc = json.loads(trace_file.read_text())
    heads = [d for d in doc if "model_name" in d]
    assert [(h["id"], h["model_name"], h["model_version"]) for h in heads] == [(i, "simple", 1) for i in (1, 2, 3)]
    for entry in (d for d in doc if "timestamps" in d):
        names = [t["name"] for t in entry["timestamps"]]
        assert names == _STAMPS, names
        stamps = [t["ns"] for t in entry["timestamps"]]
        assert stamps == sorted(stamps)
