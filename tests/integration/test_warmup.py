"""model_warmup against the real server: a warmed-up model is READY and serves; a failing one is not."""
from __future__ import annotations

import json
import os
import shutil
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient

from .conftest import start_server, stop_server

WARMUP = """
model_warmup {{
  name: "sample"
  batch_size: 2
  count: 2
  inputs {{ key: "INPUT0" value {{ data_type: TYPE_INT32 dims: [16] {input0} }} }}
  inputs {{ key: "INPUT1" value {{ data_type: TYPE_INT32 dims: [16] random_data: true }} }}
}}
"""


def _warmed_repo(example_repo, root, input0: str, data: bytes | None = None) -> str:
    shutil.copytree(os.path.join(example_repo, "simple"), root / "simple")
    with open(root / "simple" / "config.pbtxt", "a", encoding="utf-8") as f:
        f.write(WARMUP.format(input0=input0))
    if data is not None:
        (root / "simple" / "warmup").mkdir()
        (root / "simple" / "warmup" / "input0.bin").write_bytes(data)
    return str(root)


def _index(server) -> dict[str, dict]:
    req = urllib.request.Request(f"http://{server.http_url}/v2/repository/index", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return {e["name"]: e for e in json.loads(r.read())}


@pytest.fixture(scope="module")
def warmed_server(example_repo, tmp_path_factory):
    data = np.arange(16, dtype=np.int32).tobytes()
    repo = _warmed_repo(example_repo, tmp_path_factory.mktemp("warm_repo"), 'input_data_file: "input0.bin"', data)
    srv = start_server(repo, str(tmp_path_factory.mktemp("log") / "warm.log"), "--log-verbose", "1")
    yield srv
    assert stop_server(srv) == 0, srv.log()


def test_warmed_model_is_ready_and_serves(warmed_server):
    assert _index(warmed_server)["simple"]["state"] == "READY"
    client = httpclient.InferenceServerClient(warmed_server.http_url)
    assert client.is_model_ready("simple")
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(np.ones_like(a))
    result = client.infer("simple", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + 1)
    assert "running warmup sample 'sample'" in warmed_server.log()


def test_missing_warmup_file_makes_the_model_unavailable(example_repo, tmp_path_factory):
    repo = _warmed_repo(example_repo, tmp_path_factory.mktemp("cold_repo"), 'input_data_file: "missing.bin"')
    srv = start_server(repo, str(tmp_path_factory.mktemp("log") / "cold.log"), "--exit-on-error", "false")
    try:
        entry = _index(srv)["simple"]
        assert entry["state"] == "UNAVAILABLE"
        assert "failed to open text file for read" in entry["reason"] and "missing.bin" in entry["reason"]
    finally:
        stop_server(srv)
