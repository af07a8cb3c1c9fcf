"""Malformed and wrong input over raw sockets and http.client: Triton's status and error body,
the connection state stays right, and the server keeps serving."""
from __future__ import annotations

import http.client
import json
import os
import shutil
import socket

import numpy as np
import pytest

from .conftest import start_server, stop_server


def _request(port, method, path, body=b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), data


def _raw(port, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def _simple_body(shape=(1, 16), dtype="INT32", data=None):
    data = data if data is not None else list(range(16))
    return json.dumps({"inputs": [
        {"name": "INPUT0", "shape": list(shape), "datatype": dtype, "data": data},
        {"name": "INPUT1", "shape": list(shape), "datatype": dtype, "data": data}]}).encode()


def test_not_found_and_method_not_allowed(server):
    status, _, body = _request(server.http_port, "GET", "/v2/nothing/here")
    assert status == 404 and json.loads(body) == {"error": "Not Found"}
    status, _, body = _request(server.http_port, "POST", "/v2/health/live")
    assert status == 405 and json.loads(body) == {"error": "Method Not Allowed"}


def test_malformed_request_line_gets_400_and_server_survives(server):
    reply = _raw(server.http_port, b"THIS IS NOT HTTP\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400")
    status, _, _ = _request(server.http_port, "GET", "/v2/health/ready")
    assert status == 200


def test_invalid_json(server):
    # Triton reports JSON parse errors as INTERNAL (500)
    status, _, body = _request(server.http_port, "POST", "/v2/models/simple/infer", b"{not json")
    assert status == 500 and "failed to parse the request JSON buffer" in json.loads(body)["error"]


def test_json_infer_with_curl_like_body(server):
    status, headers, body = _request(server.http_port, "POST", "/v2/models/simple/infer", _simple_body())
    assert status == 200, body
    out = {o["name"]: o for o in json.loads(body)["outputs"]}
    assert out["OUTPUT0"]["data"] == [2 * i for i in range(16)]
    assert out["OUTPUT1"]["data"] == [0] * 16


def test_missing_input_and_unknown_output(server):
    body = json.dumps({"inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "INT32",
                                   "data": list(range(16))}]}).encode()
    status, _, reply = _request(server.http_port, "POST", "/v2/models/simple/infer", body)
    assert status == 400
    assert "expected 2 inputs but got 1 inputs for model 'simple'" in json.loads(reply)["error"]
    body = json.loads(_simple_body())
    body["outputs"] = [{"name": "NOPE"}]
    status, _, reply = _request(server.http_port, "POST", "/v2/models/simple/infer", json.dumps(body).encode())
    assert status == 400 and "unexpected inference output 'NOPE' for model 'simple'" in json.loads(reply)["error"]


def test_wrong_data_count(server):
    status, _, reply = _request(server.http_port, "POST", "/v2/models/simple/infer",
                                _simple_body(data=list(range(15))))
    assert status == 500
    assert "Unable to parse 'data': Shape does not match true shape of 'data' field" in json.loads(reply)["error"]


def test_binary_header_length_out_of_range(server):
    header = json.dumps({"inputs": [{"name": "INPUT0", "shape": [1, 16], "datatype": "INT32",
                                     "parameters": {"binary_data_size": 64}}]}).encode()
    status, _, reply = _request(server.http_port, "POST", "/v2/models/simple/infer", header,
                                {"Inference-Header-Content-Length": str(len(header) + 100)})
    assert status == 400
    assert "inference header size should be in range" in json.loads(reply)["error"]


def test_binary_too_few_bytes(server):
    header = json.dumps({"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": 64}},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": 64}}]}).encode()
    payload = header + np.arange(16, dtype=np.int32).tobytes()
    status, _, reply = _request(server.http_port, "POST", "/v2/models/simple/infer", payload,
                                {"Inference-Header-Content-Length": str(len(header))})
    assert status == 400
    assert "unexpected size for input 'INPUT1', expecting 64 additional bytes for model 'simple'" \
        in json.loads(reply)["error"]


def test_a_repeated_binary_header_still_gets_each_bodys_answer_and_errors(server):
    """The server remembers how a repeated JSON header decodes: every request still gets its own
    outputs, and a body that no longer fits the header gets Triton's error, on one connection."""
    header = json.dumps({"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": 64}},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": 64}}],
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)

    def post(payload):
        conn.request("POST", "/v2/models/simple/infer", body=payload,
                     headers={"Inference-Header-Content-Length": str(len(header))})
        r = conn.getresponse()
        return r.status, r.getheader("Inference-Header-Content-Length"), r.read()
    ones = np.ones(16, dtype=np.int32).tobytes()
    for k in range(3):
        status, length, reply = post(header + np.full(16, k, dtype=np.int32).tobytes() + ones)
        assert status == 200
        out = json.loads(reply[:int(length)])["outputs"]
        assert [o["name"] for o in out] == ["OUTPUT0"]
        assert np.frombuffer(reply[int(length):], dtype=np.int32).tolist() == [k + 1] * 16
    status, _, reply = post(header + ones)  # INPUT1's bytes missing
    assert status == 400 and json.loads(reply)["error"] == (
        "unexpected size for input 'INPUT1', expecting 64 additional bytes for model 'simple'")
    status, _, reply = post(header + ones + ones + b"x")
    assert status == 400 and json.loads(reply)["error"] == "unexpected additional input data for model 'simple'"
    bad = header.replace(b"[1, 16]", b"[1, 15]")
    header = bad
    status, _, reply = post(bad + ones[:60] + ones[:60] + b"\0" * 8)
    assert status == 400 and "INPUT0" in json.loads(reply)["error"]
    conn.close()


def test_unknown_version(server):
    status, _, reply = _request(server.http_port, "GET", "/v2/models/simple/versions/9/ready")
    assert status == 404
    assert json.loads(reply)["error"] == "Request for unknown model: 'simple' version 9 is not found"


def test_keep_alive_survives_errors(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
    conn.request("POST", "/v2/models/simple/infer", body=b"[]")
    r = conn.getresponse()
    r.read()
    assert r.status in (400, 500)
    conn.request("POST", "/v2/models/simple/infer", body=_simple_body())
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["model_name"] == "simple"
    conn.close()


def test_pipelined_requests_answered_in_order(server):
    one = b"GET /v2/models/simple/ready HTTP/1.1\r\nHost: x\r\n\r\n"
    two = b"GET /v2/models/nope/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    reply = _raw(server.http_port, one + two)
    first = reply.find(b"HTTP/1.1 200")
    second = reply.find(b"HTTP/1.1 404")
    assert 0 <= first < second


def test_unsupported_compression(server):
    status, headers, reply = _request(server.http_port, "POST", "/v2/models/simple/infer", _simple_body(),
                                      {"Content-Encoding": "br"})
    assert status == 501 and json.loads(reply)["error"] == "Unsupported compression type"


@pytest.fixture(scope="module")
def broken_server(example_repo, tmp_path_factory):
    repo = tmp_path_factory.mktemp("broken_repo")
    shutil.copytree(os.path.join(example_repo, "simple"), repo / "simple")
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"this is not an onnx file")
    (repo / "broken" / "config.pbtxt").write_text('platform: "onnxruntime_onnx"\nmax_batch_size: 0\n')
    srv = start_server(str(repo), str(tmp_path_factory.mktemp("log") / "broken.log"),
                       "--exit-on-error", "false", "--http-max-input-size", "4096")
    yield srv
    stop_server(srv)


def test_broken_model_is_unavailable_and_others_serve(broken_server):
    status, _, body = _request(broken_server.http_port, "POST", "/v2/repository/index")
    index = {e["name"]: e for e in json.loads(body)}
    assert index["broken"]["state"] == "UNAVAILABLE" and index["broken"]["reason"]
    assert index["simple"]["state"] == "READY"
    status, _, _ = _request(broken_server.http_port, "GET", "/v2/health/ready")
    assert status == 400  # strict readiness: a model failed to load
    status, _, _ = _request(broken_server.http_port, "POST", "/v2/models/simple/infer", _simple_body())
    assert status == 200
    log = broken_server.log()
    assert "| broken" in log and "UNAVAILABLE" in log


def test_json_body_over_max_input_size(broken_server):
    body = _simple_body()
    big = json.loads(body)
    big["parameters"] = {"pad": "x" * 5000}
    status, _, reply = _request(broken_server.http_port, "POST", "/v2/models/simple/infer", json.dumps(big).encode())
    assert status == 400 and "exceeds the maximum allowed input size of 4096 bytes" in json.loads(reply)["error"]


def test_exit_on_error_true_fails_startup(example_repo, tmp_path):
    repo = tmp_path / "repo"
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"junk")
    srv = start_server(str(repo), str(tmp_path / "log"), wait_ready=False)
    assert srv.proc.wait(60) == 1
    assert "failed to load all models" in srv.log()
