"""System shared memory through the real server, with tritonclient's shared-memory utilities."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException, serialize_byte_tensor

from .conftest import _load_repo_builder, start_server, stop_server

SIZE = 64  # 16 INT32


@pytest.fixture(scope="module")
def shm_server(tmp_path_factory):
    repo = str(tmp_path_factory.mktemp("shm_repo") / "repo")
    _load_repo_builder().build_repository(repo, ["simple", "simple_identity"])
    srv = start_server(repo, str(tmp_path_factory.mktemp("shm_log") / "server.log"), "--allow-client-shm=true")
    yield srv
    assert stop_server(srv) == 0, srv.log()


@pytest.fixture()
def regions():
    """Input (two tensors back to back) and output regions, destroyed after the test."""
    tag = uuid.uuid4().hex[:8]
    handles = {"in": shm.create_shared_memory_region(f"in_{tag}", f"/ta_in_{tag}", 2 * SIZE),
               "out": shm.create_shared_memory_region(f"out_{tag}", f"/ta_out_{tag}", 2 * SIZE)}
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 3, dtype=np.int32)
    shm.set_shared_memory_region(handles["in"], [a, b])
    yield tag, handles, a, b
    for h in handles.values():
        shm.destroy_shared_memory_region(h)


@pytest.mark.parametrize("module", [httpclient, grpcclient])
def test_inputs_and_outputs_in_system_shared_memory(shm_server, regions, module):
    tag, handles, a, b = regions
    url = shm_server.http_url if module is httpclient else shm_server.grpc_url
    client = module.InferenceServerClient(url)
    client.unregister_system_shared_memory()  # what the reference examples do first: must succeed
    client.register_system_shared_memory(f"in_{tag}", f"/ta_in_{tag}", 2 * SIZE)
    client.register_system_shared_memory(f"out_{tag}", f"/ta_out_{tag}", 2 * SIZE)
    inputs = [module.InferInput("INPUT0", [1, 16], "INT32"), module.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_shared_memory(f"in_{tag}", SIZE)
    inputs[1].set_shared_memory(f"in_{tag}", SIZE, offset=SIZE)
    outputs = [module.InferRequestedOutput("OUTPUT0"), module.InferRequestedOutput("OUTPUT1")]
    outputs[0].set_shared_memory(f"out_{tag}", SIZE)
    outputs[1].set_shared_memory(f"out_{tag}", SIZE, offset=SIZE)
    result = client.infer("simple", inputs, outputs=outputs)
    out0 = result.get_output("OUTPUT0")
    shape = out0["shape"] if module is httpclient else list(out0.shape)
    assert shape == [1, 16]
    if module is httpclient:
        assert "data" not in out0 and "binary_data_size" not in out0.get("parameters", {})
    got0 = shm.get_contents_as_numpy(handles["out"], np.int32, [1, 16])
    got1 = shm.get_contents_as_numpy(handles["out"], np.int32, [1, 16], offset=SIZE)
    assert (got0 == a + b).all() and (got1 == a - b).all()
    status = client.get_system_shared_memory_status()
    if module is httpclient:
        names = {r["name"]: r for r in status}
        assert names[f"in_{tag}"] == {"name": f"in_{tag}", "key": f"/ta_in_{tag}", "offset": 0, "byte_size": 128}
    else:
        assert status.regions[f"in_{tag}"].byte_size == 2 * SIZE
    client.unregister_system_shared_memory(f"in_{tag}")
    with pytest.raises(InferenceServerException, match=f"Unable to find shared memory region: 'in_{tag}'"):
        client.infer("simple", inputs, outputs=outputs)
    client.unregister_system_shared_memory()
    assert len(client.get_system_shared_memory_status() if module is httpclient
               else client.get_system_shared_memory_status().regions) == 0
    client.close()


def test_bytes_tensor_in_shared_memory(shm_server):
    tag = uuid.uuid4().hex[:8]
    data = np.array([[b"hello", b"", "wörld".encode()]], dtype=object)
    blob = serialize_byte_tensor(data)
    size = blob.size * blob.itemsize if blob.dtype != object else len(blob.item())
    handle_in = shm.create_shared_memory_region(f"bin_{tag}", f"/ta_bin_{tag}", size)
    handle_out = shm.create_shared_memory_region(f"bout_{tag}", f"/ta_bout_{tag}", size)
    try:
        shm.set_shared_memory_region(handle_in, [blob])
        client = httpclient.InferenceServerClient(shm_server.http_url)
        client.register_system_shared_memory(f"bin_{tag}", f"/ta_bin_{tag}", size)
        client.register_system_shared_memory(f"bout_{tag}", f"/ta_bout_{tag}", size)
        inp = httpclient.InferInput("INPUT0", [1, 3], "BYTES")
        inp.set_shared_memory(f"bin_{tag}", size)
        out = httpclient.InferRequestedOutput("OUTPUT0")
        out.set_shared_memory(f"bout_{tag}", size)
        client.infer("simple_identity", [inp], outputs=[out])
        got = shm.get_contents_as_numpy(handle_out, np.object_, [1, 3])
        assert got.tolist() == data.tolist()
        client.unregister_system_shared_memory()
        client.close()
    finally:
        shm.destroy_shared_memory_region(handle_in)
        shm.destroy_shared_memory_region(handle_out)


def _post(server, path: str, body) -> tuple[int, str]:
    request = urllib.request.Request(f"http://{server.http_url}{path}", data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_register_errors(shm_server, regions):
    tag = regions[0]
    key = f"/ta_in_{tag}"
    base = f"/v2/systemsharedmemory/region/r_{tag}/register"
    assert _post(shm_server, base, {"byte_size": 8}) == (
        400, '{"error":"Shared memory register request has no \'key\' field"}')
    assert _post(shm_server, base, {"key": key}) == (
        400, '{"error":"Shared memory register request has no \'byte_size\' field"}')
    assert _post(shm_server, base, {"key": key, "byte_size": 4096})[0] == 400  # past the end of the object
    assert "invalid args" in _post(shm_server, base, {"key": key, "byte_size": 64, "offset": 100})[1]
    status, body = _post(shm_server, base, {"key": "/no_such_key_ta", "byte_size": 8})
    assert status == 500 and "Unable to open shared memory region: '/no_such_key_ta'" in body
    assert "--ipc=host" in body
    status, body = _post(shm_server, base, {"key": "/triton_python_backend_shm_region_x", "byte_size": 8})
    assert status == 400 and "reserved prefix" in body
    assert _post(shm_server, base, {"key": "//", "byte_size": 8})[0] == 400
    assert _post(shm_server, base, {"key": key, "byte_size": 64}) == (200, "")
    status, body = _post(shm_server, base, {"key": key, "byte_size": 64})
    assert status == 400 and f"shared memory region 'r_{tag}' already in manager" in body
    assert _post(shm_server, "/v2/systemsharedmemory/region/nope/unregister", {})[0] == 200
    assert _post(shm_server, f"/v2/systemsharedmemory/region/r_{tag}/unregister", {})[0] == 200
    status, body = _post(shm_server, "/v2/cudasharedmemory/region/c/register",
                         {"raw_handle": {"b64": "AAAA"}, "device_id": 0, "byte_size": 8})
    assert status == 400 and "'raw_handle' must be a valid base64 encoded cudaIpcMemHandle_t" in body


def test_inference_bounds_errors(shm_server, regions):
    tag, _, _, _ = regions
    client = httpclient.InferenceServerClient(shm_server.http_url)
    client.register_system_shared_memory(f"in_{tag}", f"/ta_in_{tag}", 2 * SIZE)
    client.register_system_shared_memory(f"small_{tag}", f"/ta_out_{tag}", 8)
    try:
        def run(offset=0, size=SIZE, out_region=None):
            inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"),
                      httpclient.InferInput("INPUT1", [1, 16], "INT32")]
            inputs[0].set_shared_memory(f"in_{tag}", size, offset=offset)
            inputs[1].set_shared_memory(f"in_{tag}", SIZE)
            outputs = None
            if out_region:
                outputs = [httpclient.InferRequestedOutput("OUTPUT0")]
                outputs[0].set_shared_memory(out_region, 8)
            return client.infer("simple", inputs, outputs=outputs)

        with pytest.raises(InferenceServerException, match=f"Invalid offset for shared memory region: 'in_{tag}'"):
            run(offset=2 * SIZE)
        with pytest.raises(InferenceServerException, match="Invalid offset \\+ byte size for shared memory region"):
            run(offset=SIZE + 4)
        with pytest.raises(InferenceServerException, match="input byte size mismatch for input 'INPUT0'"):
            run(size=SIZE - 4)
        with pytest.raises(InferenceServerException, match="should be at least 64 bytes to hold the results"):
            run(out_region=f"small_{tag}")
        assert run().as_numpy("OUTPUT0") is not None  # and the server still serves
    finally:
        client.unregister_system_shared_memory()
        client.close()


def test_disabled_by_default(server):
    # the session server runs without --allow-client-shm
    status, body = _post(server, "/v2/systemsharedmemory/region/x/register", {"key": "/x", "byte_size": 8})
    assert status == 501 and "Start the server with '--allow-client-shm=true' to enable." in body
    with urllib.request.urlopen(f"http://{server.http_url}/v2/systemsharedmemory/status") as r:
        assert r.read() == b"[]"
    client = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException, match="Client shared memory is disabled"):
        client.register_system_shared_memory("x", "/x", 8)
    client.close()
    assert not os.path.exists("/dev/shm/x")


@pytest.mark.perf_analyzer
@pytest.mark.parametrize(("proto", "extra"), [("http", ()), ("http", ("--async",)), ("grpc", ()),
                                              ("grpc", ("--async",))])
def test_perf_analyzer_with_system_shared_memory(shm_server, proto, extra):
    from .test_perf_analyzer_smoke import _perf_analyzer, _run
    pa = _perf_analyzer()
    if pa is None:
        pytest.skip("perf_analyzer is not installed (scripts/install_perf_analyzer.sh)")
    url = shm_server.http_url if proto == "http" else shm_server.grpc_url
    _run(pa, url, "-i", proto, "--shared-memory=system", "--output-shared-memory-size=64", *extra)


def test_a_region_removed_or_truncated_by_its_client(shm_server):
    tag = uuid.uuid4().hex[:8]
    client = httpclient.InferenceServerClient(shm_server.http_url)
    handle = shm.create_shared_memory_region(f"gone_{tag}", f"/ta_gone_{tag}", 2 * SIZE)
    a, b = np.arange(16, dtype=np.int32).reshape(1, 16), np.ones((1, 16), dtype=np.int32)
    shm.set_shared_memory_region(handle, [a, b])
    client.register_system_shared_memory(f"gone_{tag}", f"/ta_gone_{tag}", 2 * SIZE)

    def infer():
        inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
        inputs[0].set_shared_memory(f"gone_{tag}", SIZE)
        inputs[1].set_shared_memory(f"gone_{tag}", SIZE, offset=SIZE)
        return client.infer("simple", inputs).as_numpy("OUTPUT0")

    try:
        os.truncate(f"/dev/shm/ta_gone_{tag}", SIZE)  # the client shrinks it under the server
        with pytest.raises(InferenceServerException, match="smaller than when it was registered"):
            infer()
        os.truncate(f"/dev/shm/ta_gone_{tag}", 2 * SIZE)
        shm.set_shared_memory_region(handle, [a, b])
        assert (infer() == a + b).all()
        os.unlink(f"/dev/shm/ta_gone_{tag}")  # removed without unregistering: the mapping lives on
        assert (infer() == a + b).all()
        assert client.is_server_live()
    finally:
        client.unregister_system_shared_memory()
        client.close()
        try:
            shm.destroy_shared_memory_region(handle)
        except Exception:  # noqa: BLE001 - already unlinked above
            pass
