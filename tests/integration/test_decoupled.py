"""Decoupled models (zero or more responses per request) through gRPC streaming and HTTP streams.

The models are identity models in decoupled mode (backends/identity.py): each sends its response
`repeat` times, then the final flag alone, so the tests check the transports, not a model.
"""
from __future__ import annotations

import os
import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from .conftest import start_server, stop_server

_CONFIG = """name: "{name}"
backend: "identity"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
parameters {{ key: "repeat" value {{ string_value: "{repeat}" }} }}
input [ {{ name: "IN" data_type: TYPE_INT32 dims: [ -1 ] }} ]
output [ {{ name: "OUT" data_type: TYPE_INT32 dims: [ -1 ] }} ]
"""


@pytest.fixture(scope="module")
def dserver(tmp_path_factory):
    repo = tmp_path_factory.mktemp("decoupled_repo")
    for name, repeat in (("repeat3", 3), ("repeat0", 0)):
        os.makedirs(repo / name / "1")
        (repo / name / "config.pbtxt").write_text(_CONFIG.format(name=name, repeat=repeat))
    srv = start_server(str(repo), str(tmp_path_factory.mktemp("dlog") / "server.log"))
    yield srv
    assert stop_server(srv) == 0, srv.log()


def _input(values):
    inp = grpcclient.InferInput("IN", [len(values)], "INT32")
    inp.set_data_from_numpy(np.array(values, dtype=np.int32))
    return inp


def _collect(url, sends, *, expected_finals, **stream_kwargs):
    """Open a stream, send (model, values, kwargs) requests, gather results until every final."""
    results: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: results.put((result, error)), **stream_kwargs)
    try:
        for model, values, kwargs in sends:
            client.async_stream_infer(model, [_input(values)], **kwargs)
        got, finals = [], 0
        while finals < expected_finals:
            result, error = results.get(timeout=30)
            got.append((result, error))
            if error is not None:
                finals += 1
                continue
            params = result.get_response().parameters
            if params["triton_final_response"].bool_param:
                finals += 1
        return got
    finally:
        client.stop_stream()
        client.close()


def test_grpc_stream_without_empty_final(dserver):
    # The final flag alone is not written by default: the three data responses are all non-final.
    # The second request asks for the empty final, which proves the first wrote nothing more.
    sends = [("repeat3", [1, 2, 3], {"request_id": "a"}),
             ("repeat0", [0], {"request_id": "end", "enable_empty_final_response": True})]
    got = _collect(dserver.grpc_url, sends, expected_finals=1)
    assert all(e is None for _, e in got)
    ids = [(r.get_response().id, r.get_response().parameters["triton_final_response"].bool_param) for r, _ in got]
    assert sorted(ids) == [("a", False)] * 3 + [("end", True)]


def test_grpc_stream_empty_final_response(dserver):
    sends = [("repeat3", [4, 5], {"request_id": "b", "enable_empty_final_response": True})]
    got = _collect(dserver.grpc_url, sends, expected_finals=1)
    assert len(got) == 4 and all(e is None for _, e in got)
    for result, _ in got[:3]:
        assert result.as_numpy("OUT").tolist() == [4, 5]
        assert result.get_response().id == "b"
        assert result.get_response().parameters["triton_final_response"].bool_param is False
    last = got[3][0].get_response()
    assert last.parameters["triton_final_response"].bool_param is True
    assert last.id == "b" and last.model_name == "repeat3" and not last.outputs


def test_grpc_stream_zero_responses_and_interleaving(dserver):
    sends = [("repeat0", [1], {"request_id": "z", "enable_empty_final_response": True}),
             ("repeat3", [7], {"request_id": "y", "enable_empty_final_response": True}),
             ("repeat0", [1], {"request_id": "x", "enable_empty_final_response": True})]
    got = _collect(dserver.grpc_url, sends, expected_finals=3)
    by_id: dict[str, list] = {}
    for result, error in got:
        assert error is None
        by_id.setdefault(result.get_response().id, []).append(result)
    assert {k: len(v) for k, v in by_id.items()} == {"z": 1, "y": 4, "x": 1}
    assert [r.as_numpy("OUT").tolist() for r in by_id["y"][:3]] == [[7], [7], [7]]


def test_grpc_stream_bad_request_then_good(dserver):
    sends = [("repeat3", [1], {"request_id": "bad", "model_version": "9"}),
             ("repeat3", [2], {"request_id": "good", "enable_empty_final_response": True})]
    got = _collect(dserver.grpc_url, sends, expected_finals=2)
    errors = [e for _, e in got if e is not None]
    assert len(errors) == 1 and "unknown model" in str(errors[0])
    assert sum(1 for r, e in got if e is None) == 4


def test_unary_and_http_infer_rejected(dserver):
    client = grpcclient.InferenceServerClient(dserver.grpc_url)
    with pytest.raises(InferenceServerException) as info:
        client.infer("repeat3", [_input([1])])
    assert "doesn't support models with decoupled transaction policy" in info.value.message()
    client.close()


def _post(url: str, path: str, body: dict, headers: dict | None = None):
    import http.client
    import json
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    return conn, response


def _events(response) -> list[dict]:
    import json
    text = response.read().decode()
    assert text.endswith("\n\n")
    return [json.loads(chunk[len("data: "):]) for chunk in text.split("\n\n") if chunk]


def test_generate_stream_decoupled(dserver):
    conn, response = _post(dserver.http_url, "/v2/models/repeat3/generate_stream", {"IN": [1, 2], "id": "g"})
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/event-stream; charset=utf-8"
    assert response.getheader("Transfer-Encoding") == "chunked"
    events = _events(response)
    assert events == [{"model_name": "repeat3", "model_version": "1", "id": "g", "OUT": [1, 2]}] * 3
    # the connection stays usable after a stream
    conn.request("GET", "/v2/health/ready")
    assert conn.getresponse().status == 200
    conn.close()


def test_generate_requires_one_response(dserver):
    conn, response = _post(dserver.http_url, "/v2/models/repeat3/generate", {"IN": 5})
    assert response.status == 400
    assert "generate expects model to produce exactly 1 response" in response.read().decode()
    conn.close()


def test_generate_on_example_model(server):
    # the generate extension works for ordinary models too: simple adds and subtracts
    conn, response = _post(server.http_url, "/v2/models/simple/generate",
                           {"INPUT0": list(range(16)), "INPUT1": [1] * 16, "id": "s"})
    import json
    assert response.status == 200, response.read()
    doc = json.loads(response.read())
    assert doc["OUTPUT0"] == [i + 1 for i in range(16)] and doc["OUTPUT1"] == [i - 1 for i in range(16)]
    assert doc["id"] == "s" and doc["model_name"] == "simple"
    conn.request("POST", "/v2/models/simple/generate", json.dumps({"INPUT0": [1, 2, 3], "INPUT1": [1] * 16}))
    bad = conn.getresponse()
    assert bad.status == 400
    assert "The schema can not convert input 'INPUT0' to tensor with proper shape" in bad.read().decode()
    conn.close()


def test_http_infer_as_server_sent_events(dserver):
    body = {"id": "h", "inputs": [{"name": "IN", "shape": [2], "datatype": "INT32", "data": [3, 4]}]}
    conn, response = _post(dserver.http_url, "/v2/models/repeat3/infer", body, {"Accept": "text/event-stream"})
    assert response.status == 200
    events = _events(response)
    assert len(events) == 3
    assert events[0]["outputs"] == [{"name": "OUT", "datatype": "INT32", "shape": [2], "data": [3, 4]}]
    conn.close()
    conn, response = _post(dserver.http_url, "/v2/models/repeat0/infer", body, {"Accept": "text/event-stream"})
    assert response.status == 200 and response.read() == b""
    conn.close()
    conn, response = _post(dserver.http_url, "/v2/models/repeat3/infer", body)
    assert response.status == 501
    conn.close()
