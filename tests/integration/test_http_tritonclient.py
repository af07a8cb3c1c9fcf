"""tritonclient.http (sync, async_infer and aio) against the real server: Triton's answers."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient
from tritonclient.utils import InferenceServerException


@pytest.fixture(scope="module")
def client(server):
    c = httpclient.InferenceServerClient(server.http_url, concurrency=4)
    yield c
    c.close()


def _simple_inputs(binary: bool = True, batch: int = 1):
    a = np.arange(16 * batch, dtype=np.int32).reshape(batch, 16)
    b = np.ones((batch, 16), dtype=np.int32)
    inputs = [httpclient.InferInput("INPUT0", list(a.shape), "INT32"),
              httpclient.InferInput("INPUT1", list(b.shape), "INT32")]
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(b, binary_data=binary)
    return a, b, inputs


def test_health_and_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "triton"
    assert "binary_tensor_data" in meta["extensions"] and "statistics" in meta["extensions"]
    assert client.is_model_ready("simple")
    assert client.is_model_ready("simple", "1")
    assert not client.is_model_ready("no_such_model")


def test_model_metadata_and_config(client):
    meta = client.get_model_metadata("simple")
    assert meta["name"] == "simple" and meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"][0] == {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]}
    config = client.get_model_config("simple")
    assert config["name"] == "simple" and config["max_batch_size"] == 8
    assert [i["name"] for i in config["input"]] == ["INPUT0", "INPUT1"]
    assert config["input"][0]["data_type"] == "TYPE_INT32"


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("batch", [1, 8])
def test_simple_infer(client, binary, batch):
    a, b, inputs = _simple_inputs(binary, batch)
    outputs = [httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary),
               httpclient.InferRequestedOutput("OUTPUT1", binary_data=not binary)]
    result = client.infer("simple", inputs, outputs=outputs, request_id="7")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    response = result.get_response()
    assert response["id"] == "7" and response["model_name"] == "simple" and response["model_version"] == "1"


def test_all_outputs_when_none_requested(client):
    a, b, inputs = _simple_inputs()
    result = client.infer("simple", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compression(client, algorithm):
    a, b, inputs = _simple_inputs()
    result = client.infer("simple", inputs, request_compression_algorithm=algorithm,
                          response_compression_algorithm=algorithm)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)


@pytest.mark.parametrize("binary", [True, False])
def test_bytes_identity(client, binary):
    data = np.array([[b"hello", b"", "wörld".encode()]], dtype=np.object_)
    inp = httpclient.InferInput("INPUT0", [1, 3], "BYTES")
    inp.set_data_from_numpy(data, binary_data=binary)
    out = httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary)
    result = client.infer("simple_identity", [inp], outputs=[out])
    got = result.as_numpy("OUTPUT0")
    assert [bytes(x) if not isinstance(x, str) else x.encode() for x in got.reshape(-1)] == list(data.reshape(-1))


def test_int8(client):
    a = np.arange(16, dtype=np.int8).reshape(1, 16)
    inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT8"), httpclient.InferInput("INPUT1", [1, 16], "INT8")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(a)
    result = client.infer("simple_int8", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + a)


def test_classification_returns_labels(client):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data[:4].astype(np.float32)
    inp = httpclient.InferInput("INPUT", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    out = httpclient.InferRequestedOutput("PROBS", class_count=2)
    result = client.infer("digits", [inp], outputs=[out])
    top = result.as_numpy("PROBS")
    assert top.shape == (4, 2)
    first = [row[0].decode() if isinstance(row[0], bytes) else row[0] for row in top]
    parts = [f.split(":") for f in first]
    assert all(len(p) == 3 for p in parts)
    predicted = [int(p[1]) for p in parts]
    assert sum(int(p == t) for p, t in zip(predicted, digits.target[:4], strict=True)) >= 3


def test_statistics_and_index(client):
    _, _, inputs = _simple_inputs()
    client.infer("simple", inputs)
    stats = client.get_inference_statistics("simple")
    entry = stats["model_stats"][0]
    assert entry["name"] == "simple" and entry["version"] == "1"
    assert entry["inference_stats"]["success"]["count"] >= 1
    assert entry["execution_count"] >= 1
    index = client.get_model_repository_index()
    names = {e["name"] for e in index}
    assert {"simple", "simple_identity", "digits"} <= names
    assert all(e.get("state") == "READY" for e in index if e["name"] == "simple")


def test_async_infer(client):
    pending = []
    for _ in range(8):
        a, b, inputs = _simple_inputs()
        pending.append((a, b, client.async_infer("simple", inputs)))
    for a, b, handle in pending:
        np.testing.assert_array_equal(handle.get_result().as_numpy("OUTPUT0"), a + b)


def test_aio_client(server):
    async def run():
        async with aiohttpclient.InferenceServerClient(server.http_url) as c:
            assert await c.is_server_ready()
            a, b, _ = _simple_inputs()
            inputs = [aiohttpclient.InferInput("INPUT0", [1, 16], "INT32"),
                      aiohttpclient.InferInput("INPUT1", [1, 16], "INT32")]
            inputs[0].set_data_from_numpy(a)
            inputs[1].set_data_from_numpy(b)
            results = await asyncio.gather(*(c.infer("simple", inputs) for _ in range(16)))
            for r in results:
                np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)
            meta = await c.get_model_metadata("simple")
            assert meta["name"] == "simple"

    asyncio.run(run())


def test_unknown_model_error(client):
    _, _, inputs = _simple_inputs()
    with pytest.raises(InferenceServerException) as info:
        client.infer("nope", inputs)
    assert "Request for unknown model: 'nope' is not found" in str(info.value)
    assert info.value.status() == "404"


def test_wrong_dtype_and_shape(client):
    a = np.zeros((1, 16), dtype=np.float32)
    inputs = [httpclient.InferInput("INPUT0", [1, 16], "FP32"), httpclient.InferInput("INPUT1", [1, 16], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(a)
    with pytest.raises(InferenceServerException) as info:
        client.infer("simple", inputs)
    assert "data-type is 'FP32', but model 'simple' expects 'INT32'" in str(info.value)
    b = np.zeros((1, 15), dtype=np.int32)
    inputs = [httpclient.InferInput("INPUT0", [1, 15], "INT32"), httpclient.InferInput("INPUT1", [1, 15], "INT32")]
    inputs[0].set_data_from_numpy(b)
    inputs[1].set_data_from_numpy(b)
    with pytest.raises(InferenceServerException) as info:
        client.infer("simple", inputs)
    assert "unexpected shape for input 'INPUT0' for model 'simple'. Expected [-1,16], got [1,15]" in str(info.value)
    # the server keeps serving
    _, _, good = _simple_inputs()
    assert client.infer("simple", good).as_numpy("OUTPUT0") is not None
