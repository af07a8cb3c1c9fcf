"""Clients that vanish mid-request, mid-response and mid-stream, through the cutting proxy.

Each test cuts connections at many byte offsets (in the head, in the body, right after the whole
request while the model runs, inside a 1 MiB response) and then checks that the server still
answers correctly and that its tasks and RSS come back to where they were.
"""
from __future__ import annotations

import queue
import socket
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from .conftest import baseline, check_recovered
from .proxy import CuttingProxy

BIG = 262144  # elements of the `big` model's FP32 tensor: 1 MiB each way
CLIENT_TIMEOUT = 10.0


def _simple_inputs(module):
    inputs = [module.InferInput("INPUT0", [1, 16], "INT32"), module.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(np.arange(16, dtype=np.int32).reshape(1, 16))
    inputs[1].set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
    return inputs


def _big_inputs(module):
    inputs = [module.InferInput("INPUT0", [1, BIG], "FP32")]
    inputs[0].set_data_from_numpy(np.linspace(0, 1, BIG, dtype=np.float32).reshape(1, BIG))
    return inputs


def _http_request(model: str, inputs) -> bytes:
    """The raw bytes of one binary-tensor infer request, as tritonclient would send them."""
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs)
    # Connection: close, so that an uncut exchange ends with the server's close, not a keep-alive wait
    head = (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Inference-Header-Content-Length: {json_size}\r\n\r\n").encode()
    return head + body


def _send_and_drain(port: int, payload: bytes) -> bytes:
    """Send `payload` and read until the connection ends; the proxy may cut it anywhere."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as s:
        try:
            s.sendall(payload)
            while chunk := s.recv(65536):
                received += chunk
        except (ConnectionError, TimeoutError):
            pass
    return bytes(received)


def _cut_points(total: int) -> list[int]:
    """Offsets from the first byte to the last: the head, every power of two, the very end."""
    points = {0, 1, 17, 40, 100, total - 1, total}
    points.update(2**k for k in range(7, total.bit_length()))
    return sorted(p for p in points if 0 <= p <= total)


def test_http_client_cut_mid_request(debug_server):
    base = baseline(debug_server)
    simple = _http_request("simple", _simple_inputs(httpclient))
    # a body that never finishes: Content-Length promises more than will ever come
    endless = (b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n\r\n"
               + b"{" * 600_000)
    with CuttingProxy(debug_server.http_port) as proxy:
        for payload in (simple, endless):
            for cut in _cut_points(len(payload)):
                proxy.configure(cut_up=cut)
                _send_and_drain(proxy.port, payload)
        _wait_finished(proxy)
        print(f"http mid-request: {proxy.stats}")
    check_recovered(debug_server, base, "http mid-request")


def test_http_client_cut_mid_response(debug_server):
    base = baseline(debug_server)
    payload = _http_request("big", _big_inputs(httpclient))
    with CuttingProxy(debug_server.http_port) as proxy:
        for cut in _cut_points(BIG * 4 + 400):
            proxy.configure(cut_down=cut)
            _send_and_drain(proxy.port, payload)
        _wait_finished(proxy)
        print(f"http mid-response: {proxy.stats}")
    check_recovered(debug_server, base, "http mid-response")


@pytest.mark.parametrize("direction", ["up", "down"])
def test_grpc_client_cut_mid_call(debug_server, direction):
    base = baseline(debug_server)
    outcomes = {"ok": 0, "error": 0}
    with CuttingProxy(debug_server.grpc_port) as proxy:
        for cut in [*_cut_points(BIG * 4 + 400), 2**24]:  # the last one lets the call through
            proxy.configure(**{f"cut_{direction}": cut})
            client = grpcclient.InferenceServerClient(proxy.url)
            try:
                result = client.infer("big", _big_inputs(grpcclient), client_timeout=CLIENT_TIMEOUT)
                assert result.as_numpy("OUTPUT0").shape == (1, BIG)
                outcomes["ok"] += 1
            except InferenceServerException:
                outcomes["error"] += 1
            finally:
                client.close()
        _wait_finished(proxy)
        print(f"grpc cut {direction}: {outcomes} {proxy.stats}")
    assert outcomes["error"] > 0 and outcomes["ok"] > 0
    check_recovered(debug_server, base, f"grpc cut {direction}")


def test_grpc_stream_cut_mid_stream(debug_server):
    """ModelStreamInfer: 20 requests on one stream, the connection cut after N response bytes."""
    base = baseline(debug_server)
    counts = {"responses": 0, "errors": 0}
    with CuttingProxy(debug_server.grpc_port) as proxy:
        for cut in (0, 50, 200, 400, 800, 1600, 3200, 6400):
            proxy.configure(cut_down=cut)
            results: queue.Queue = queue.Queue()
            client = grpcclient.InferenceServerClient(proxy.url)
            try:
                client.start_stream(callback=lambda result, error, q=results: q.put(error))
                for i in range(20):
                    client.async_stream_infer("simple", _simple_inputs(grpcclient), request_id=str(i))
                deadline = time.monotonic() + CLIENT_TIMEOUT
                got = 0
                while got < 20 and time.monotonic() < deadline:
                    try:
                        error = results.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    got += 1
                    counts["errors" if error is not None else "responses"] += 1
                    if error is not None:
                        break
            except InferenceServerException:
                counts["errors"] += 1
            finally:
                client.stop_stream(cancel_requests=True)
                client.close()
        _wait_finished(proxy)
        print(f"grpc mid-stream: {counts} {proxy.stats}")
    assert counts["errors"] > 0
    check_recovered(debug_server, base, "grpc mid-stream")


def _wait_finished(proxy: CuttingProxy, timeout: float = 10.0) -> None:
    """The proxy has torn down every connection it accepted (so has the server's side)."""
    deadline = time.monotonic() + timeout
    while proxy.stats.finished < proxy.stats.accepted and time.monotonic() < deadline:
        time.sleep(0.05)
