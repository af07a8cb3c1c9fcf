"""The generate extension's body decoding (shape fitting, parameters) and response encoding."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from triton_asyncio.codec import generate_json as gj
from triton_asyncio.core.response import InferenceResponse
from triton_asyncio.core.tensor import Tensor
from triton_asyncio.errors import TritonError


def _spec(max_batch_size=0, **inputs):
    return SimpleNamespace(max_batch_size=max_batch_size,
                           inputs={n: SimpleNamespace(datatype=t, dims=d) for n, (t, d) in inputs.items()})


@pytest.mark.parametrize(("dims", "count", "batching", "shape"), [
    ((-1,), 5, False, [5]),
    ((2, -1), 6, False, [2, 3]),
    ((-1, -1), 4, False, [1, 4]),
    ((4,), 4, True, [1, 4]),
    ((), 1, False, []),
])
def test_fit_shape(dims, count, batching, shape):
    assert gj._fit_shape("x", count, batching, dims) == shape


@pytest.mark.parametrize(("dims", "count"), [((2, -1), 5), ((3,), 2), ((0, -1), 3)])
def test_fit_shape_rejects(dims, count):
    with pytest.raises(TritonError, match="The schema can not convert input 'x' to tensor with proper shape"):
        gj._fit_shape("x", count, False, dims)


def test_decode_generate_inputs_parameters_and_id():
    spec = _spec(8, text=("BYTES", (-1,)), n=("INT32", (1,)))
    body = json.dumps({"text": "hi", "id": "r1", "temperature": 0.5,
                       "parameters": {"n": 3, "stream": True}}).encode()
    request = gj.decode_generate(body, "m", -1, spec, 1 << 20)
    assert request.id == "r1" and request.parameters == {"temperature": 0.5, "stream": True}
    assert request.inputs["text"].shape == [1, 1] and request.inputs["text"].as_numpy().tolist() == [[b"hi"]]
    assert request.inputs["n"].as_numpy().tolist() == [[3]]


def test_decode_generate_rejects_non_objects():
    with pytest.raises(TritonError):
        gj.decode_generate(b"[1]", "m", -1, _spec(), 1024)
    with pytest.raises(TritonError, match="parameter 'x'"):
        gj.decode_generate(b'{"x": [1]}', "m", -1, _spec(), 1024)


def test_encode_generate_response_unwraps_scalars():
    response = InferenceResponse("m", "1", id="r", parameters={"p": 1}, outputs=[
        Tensor("one", "INT32", [1, 1], array=np.array([[7]], np.int32)),
        Tensor("many", "BYTES", [2], array=np.array([b"a", b"b"], object))])
    assert json.loads(gj.encode_generate_response(response)) == {
        "model_name": "m", "model_version": "1", "id": "r", "p": 1, "one": 7, "many": ["a", "b"]}
    assert gj.sse_event(b"{}") == b"data: {}\n\n"
