"""pb_utils helpers that need no stub: dtype maps, byte tensors, ModelConfig, @batched."""
from __future__ import annotations

import json

import numpy as np
import pytest
import triton_python_backend_utils as pb_utils  # on sys.path through conftest.py, as in the stub


def test_type_maps_and_byte_tensors():
    assert pb_utils.triton_string_to_numpy("TYPE_FP32") is np.float32
    assert pb_utils.triton_string_to_numpy("TYPE_STRING") is np.object_
    assert pb_utils.numpy_to_triton_type(np.int32) == 8
    assert pb_utils.triton_to_numpy_type(13) is np.object_
    encoded = pb_utils.serialize_byte_tensor(np.array([b"a", b"bc"], dtype=np.object_))
    assert pb_utils.deserialize_bytes_tensor(encoded.tobytes()).tolist() == [b"a", b"bc"]
    assert pb_utils.serialize_byte_tensor(np.array([], dtype=np.object_)) == ()


def test_tensor_and_error_api():
    t = pb_utils.Tensor("X", np.array(["x"]))
    assert t.name() == "X" and t.as_numpy().dtype == np.object_ and t.is_cpu()
    back = pb_utils.Tensor.from_dlpack("Y", pb_utils.Tensor("F", np.ones(3, np.float32)))
    assert back.as_numpy().tolist() == [1, 1, 1]
    capsule = pb_utils.Tensor("F", np.arange(3, dtype=np.int64)).to_dlpack()
    assert pb_utils.Tensor.from_dlpack("Z", capsule).as_numpy().tolist() == [0, 1, 2]
    err = pb_utils.TritonError("nope", pb_utils.TritonError.NOT_FOUND)
    assert (err.message(), err.code()) == ("nope", 2)
    response = pb_utils.InferenceResponse(error=err)
    assert response.has_error() and response.error() is err


def test_model_config_helper():
    config = pb_utils.ModelConfig(json.dumps({"name": "m", "max_batch_size": 0, "input": []}))
    config.set_max_batch_size(4)
    config.add_input({"name": "IN", "data_type": "TYPE_FP32", "dims": [-1]})
    config.add_input({"name": "IN", "dims": [-1]})  # same entry, updated in place
    config.add_output({"name": "OUT", "data_type": "TYPE_FP32", "dims": [-1]})
    config.set_dynamic_batching()
    config.set_model_transaction_policy({"decoupled": False})
    doc = config.as_dict()
    assert doc["max_batch_size"] == 4 and len(doc["input"]) == 1 and doc["dynamic_batching"] == {}
    with pytest.raises(ValueError):
        config.add_input({"name": "IN", "data_type": "TYPE_INT32"})
    with pytest.raises(ValueError):
        config.add_output({"name": "X", "colour": "red"})
    with pytest.raises(ValueError):
        config.set_max_batch_size(2)


def test_batched_stacks_and_splits():
    class Model:
        @pb_utils.batched
        def execute(self, inputs):
            return {"OUT": inputs["IN"] * 2}

    requests = [pb_utils.InferenceRequest(inputs=[pb_utils.Tensor("IN", np.full((n, 2), n, np.int32))])
                for n in (1, 3)]
    responses = Model().execute(requests)
    assert [r.output_tensors()[0].as_numpy().shape for r in responses] == [(1, 2), (3, 2)]
    assert responses[1].output_tensors()[0].as_numpy()[0, 0] == 6


def test_batched_turns_exceptions_into_error_responses():
    class Model:
        @pb_utils.batched
        def execute(self, inputs):
            raise RuntimeError("bad batch")

    requests = [pb_utils.InferenceRequest(inputs=[pb_utils.Tensor("IN", np.zeros((1, 1)))])] * 2
    responses = Model().execute(requests)
    assert all(r.has_error() and "bad batch" in r.error().message() for r in responses)
