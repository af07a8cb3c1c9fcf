"""--http-restricted-api (403 without the header) and --exit-grace-secs (not ready, still serving)."""
from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from .conftest import start_server, stop_server

GRACE_S = 6


def get(srv, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://{srv.http_url}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _inputs():
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(a)
    return inputs


def test_restricted_api(example_repo, tmp_path):
    srv = start_server(example_repo, str(tmp_path / "server.log"),
                       "--http-restricted-api=inference,logging:infer-key=secret")
    try:
        assert get(srv, "/v2/logging") == (403, json.dumps(
            {"error": "This API is restricted, expecting header 'infer-key'"}, separators=(",", ":")).encode())
        assert get(srv, "/v2/logging", {"infer-key": "wrong"})[0] == 403
        assert get(srv, "/v2/logging", {"infer-key": "secret"})[0] == 200
        assert get(srv, "/v2/health/ready")[0] == 200  # unrestricted category

        client = httpclient.InferenceServerClient(srv.http_url)
        with pytest.raises(InferenceServerException, match="This API is restricted, expecting header 'infer-key'"):
            client.infer("simple", _inputs())
        result = client.infer("simple", _inputs(), headers={"infer-key": "secret"})
        assert result.as_numpy("OUTPUT0") is not None
    finally:
        assert stop_server(srv) == 0, srv.log()


def test_exit_grace_keeps_serving_while_not_ready(example_repo, tmp_path):
    srv = start_server(example_repo, str(tmp_path / "server.log"), f"--exit-grace-secs={GRACE_S}")
    client = httpclient.InferenceServerClient(srv.http_url)
    grpc_client = grpcclient.InferenceServerClient(srv.grpc_url)
    assert client.is_server_ready() and grpc_client.is_server_ready()
    srv.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    deadline = signalled + GRACE_S
    while client.is_server_ready():
        assert time.monotonic() < deadline, "still ready after SIGTERM"
        time.sleep(0.05)
    assert not grpc_client.is_server_ready()
    assert client.is_server_live()
    result = client.infer("simple", _inputs())  # inference still works during the grace
    assert result.as_numpy("OUTPUT0") is not None
    if time.monotonic() - signalled < GRACE_S - 1:  # only meaningful while the grace certainly lasts
        assert srv.proc.poll() is None
    assert srv.proc.wait(timeout=GRACE_S + 30) == 0, srv.log()
    assert time.monotonic() - signalled >= GRACE_S - 0.5, "exited before the grace ended"
    assert stop_server(srv) == 0
