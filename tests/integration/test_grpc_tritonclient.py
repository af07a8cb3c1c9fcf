"""tritonclient.grpc (sync, async_infer, streaming) and tritonclient.grpc.aio against the real server."""
from __future__ import annotations

import asyncio
import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aiogrpcclient
from tritonclient.utils import InferenceServerException


@pytest.fixture(scope="module")
def url(server) -> str:
    return f"127.0.0.1:{server.grpc_port}"


@pytest.fixture(scope="module")
def client(url):
    c = grpcclient.InferenceServerClient(url)
    yield c
    c.close()


def _simple_inputs(batch: int = 1, module=grpcclient):
    a = np.arange(16 * batch, dtype=np.int32).reshape(batch, 16)
    b = np.full((batch, 16), 2, dtype=np.int32)
    inputs = [module.InferInput("INPUT0", list(a.shape), "INT32"), module.InferInput("INPUT1", list(b.shape), "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return a, b, inputs


def test_health(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("simple")
    assert client.is_model_ready("simple", "1")
    with pytest.raises(InferenceServerException) as info:
        client.is_model_ready("no_such_model")
    assert "Request for unknown model: 'no_such_model' is not found" in info.value.message()


def test_server_and_model_metadata(client):
    meta = client.get_server_metadata()
    assert meta.name == "triton" and "statistics" in meta.extensions
    assert client.get_server_metadata(as_json=True)["name"] == "triton"
    meta = client.get_model_metadata("simple")
    assert meta.name == "simple" and list(meta.versions) == ["1"] and meta.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("INPUT0", "INT32", [-1, 16]), ("INPUT1", "INT32", [-1, 16])]


def test_model_config(client):
    config = client.get_model_config("simple").config
    assert config.name == "simple" and config.max_batch_size == 8
    assert [i.name for i in config.input] == ["INPUT0", "INPUT1"]
    as_json = client.get_model_config("simple", as_json=True)
    assert as_json["config"]["name"] == "simple"


@pytest.mark.parametrize("batch", [1, 8])
def test_simple_infer(client, batch):
    a, b, inputs = _simple_inputs(batch)
    outputs = [grpcclient.InferRequestedOutput("OUTPUT0"), grpcclient.InferRequestedOutput("OUTPUT1")]
    result = client.infer("simple", inputs, outputs=outputs, request_id="7")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("7", "simple", "1")


def test_all_outputs_when_none_requested(client):
    a, b, inputs = _simple_inputs()
    result = client.infer("simple", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_bytes_identity(client):
    data = np.array([[b"hello", b"", "wörld".encode()]], dtype=np.object_)
    inp = grpcclient.InferInput("INPUT0", [1, 3], "BYTES")
    inp.set_data_from_numpy(data)
    result = client.infer("simple_identity", [inp])
    assert list(result.as_numpy("OUTPUT0").reshape(-1)) == list(data.reshape(-1))


def test_classification(client):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data[:4].astype(np.float32)
    inp = grpcclient.InferInput("INPUT", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("digits", [inp], outputs=[grpcclient.InferRequestedOutput("PROBS", class_count=2)])
    top = result.as_numpy("PROBS")
    assert top.shape == (4, 2)
    parts = [row[0].decode().split(":") for row in top]
    assert all(len(p) == 3 for p in parts)
    assert sum(int(p[1]) == t for p, t in zip(parts, digits.target[:4], strict=True)) >= 3


def test_statistics_and_index(client):
    _, _, inputs = _simple_inputs()
    client.infer("simple", inputs)
    entry = client.get_inference_statistics("simple").model_stats[0]
    assert (entry.name, entry.version) == ("simple", "1")
    assert entry.inference_stats.success.count >= 1 and entry.execution_count >= 1
    as_json = client.get_inference_statistics("simple", as_json=True)
    assert as_json["model_stats"][0]["name"] == "simple"
    index = client.get_model_repository_index()
    names = {m.name for m in index.models}
    assert {"simple", "simple_identity", "digits"} <= names
    assert all(m.state == "READY" for m in index.models if m.name == "simple")


def test_errors(client):
    _, _, inputs = _simple_inputs()
    with pytest.raises(InferenceServerException) as info:
        client.infer("nope", inputs)
    assert info.value.message() == "Request for unknown model: 'nope' is not found"
    assert info.value.status() == "StatusCode.NOT_FOUND"
    bad = [grpcclient.InferInput("INPUT0", [1, 15], "INT32"), grpcclient.InferInput("INPUT1", [1, 15], "INT32")]
    for i in bad:
        i.set_data_from_numpy(np.zeros((1, 15), dtype=np.int32))
    with pytest.raises(InferenceServerException) as info:
        client.infer("simple", bad)
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "unexpected shape for input 'INPUT0' for model 'simple'. Expected [-1,16], got [1,15]" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.load_model("simple")
    assert info.value.status() == "StatusCode.UNAVAILABLE"
    assert client.infer("simple", inputs).as_numpy("OUTPUT0") is not None  # still serving


def test_async_infer(client):
    done: queue.Queue = queue.Queue()
    expected = []
    for i in range(8):
        a, b, inputs = _simple_inputs()
        expected.append(a + b)
        client.async_infer("simple", inputs, callback=lambda result, error: done.put((result, error)),
                           request_id=str(i))
    results = [done.get(timeout=30) for _ in range(8)]
    assert all(error is None for _, error in results)
    for result, _ in results:
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), expected[0])


def _stream(url: str, count: int, bad: int, headers=None) -> list:
    replies: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    try:
        client.start_stream(callback=lambda result, error: replies.put((result, error)), headers=headers)
        for i in range(count):
            _, _, inputs = _simple_inputs()
            model = "no_such_model" if i == bad else "simple"
            client.async_stream_infer(model, inputs, request_id=str(i))
        got = []
        while len(got) < count:
            try:
                got.append(replies.get(timeout=10))
            except queue.Empty:
                break
        client.stop_stream()
        return got
    finally:
        client.close()


def test_stream_in_order_with_an_error_in_the_middle(url):
    got = _stream(url, 20, bad=10)
    assert len(got) == 20
    assert [r.get_response().id if r is not None else "error" for r, _ in got] == [
        str(i) if i != 10 else "error" for i in range(20)]
    assert "Request for unknown model: 'no_such_model' is not found" in got[10][1].message()
    a, b, _ = _simple_inputs()
    for result, error in got[:10] + got[11:]:
        assert error is None
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
        assert result.get_response().parameters["triton_final_response"].bool_param


def test_stream_with_triton_grpc_error_ends_at_the_first_error(url):
    got = _stream(url, 5, bad=2, headers={"triton_grpc_error": "true"})
    assert [e is None for _, e in got[:2]] == [True, True]
    assert got[2][0] is None and got[2][1].status() == "StatusCode.NOT_FOUND"
    assert len(got) == 3


def test_aio_client(url):
    async def run():
        async with aiogrpcclient.InferenceServerClient(url) as c:
            assert await c.is_server_live() and await c.is_server_ready()
            assert (await c.get_model_metadata("simple")).name == "simple"
            a, b, inputs = _simple_inputs(module=aiogrpcclient)
            results = await asyncio.gather(*(c.infer("simple", inputs) for _ in range(16)))
            for r in results:
                np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)

            async def requests():
                for i in range(10):
                    yield {"model_name": "simple", "inputs": inputs, "request_id": str(i)}

            ids = []
            async for result, error in c.stream_infer(requests()):
                assert error is None
                ids.append(result.get_response().id)
                if len(ids) == 10:
                    break
            assert ids == [str(i) for i in range(10)]

    asyncio.run(run())
