"""Tiny ONNX models built with onnx.helper in tmp_path, and ModelConfig / request builders (imported by the tests here)."""
from __future__ import annotations

import os

import numpy as np
import pytest

try:
    from triton_asyncio.pb import model_config_pb2 as mc
except ImportError:  # until the generated module lands
    from tritonclient.grpc import model_config_pb2 as mc

from triton_asyncio.backends.base import ModelLocation
from triton_asyncio.core.request import InferenceRequest
from triton_asyncio.core.tensor import Tensor


def _save(graph, path: str) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    os.makedirs(os.path.dirname(path), exist_ok=True)
    onnx.save(model, path)


def build_simple(path: str, batch_dim="batch") -> None:
    """OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1; INT32 [batch_dim, 16]."""
    from onnx import TensorProto, helper

    shape = [batch_dim, 16]
    io = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
         helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"])],
        "simple",
        [io("INPUT0", TensorProto.INT32, shape), io("INPUT1", TensorProto.INT32, shape)],
        [io("OUTPUT0", TensorProto.INT32, shape), io("OUTPUT1", TensorProto.INT32, shape)])
    _save(graph, path)


def build_identity(path: str, elem_type: int, shape: list) -> None:
    from onnx import helper

    io = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])], "identity",
                              [io("INPUT0", elem_type, shape)], [io("OUTPUT0", elem_type, shape)])
    _save(graph, path)


@pytest.fixture
def repo(tmp_path):
    """Returns make(name, builder, *args) -> ModelLocation of version 1."""

    def make(name: str, builder=None, *args) -> ModelLocation:
        model_dir = tmp_path / name
        version_dir = model_dir / "1"
        version_dir.mkdir(parents=True)
        if builder is not None:
            builder(str(version_dir / "model.onnx"), *args)
        return ModelLocation(name, 1, str(model_dir), str(version_dir))

    return make


def config(name: str = "simple", **fields) -> mc.ModelConfig:
    cfg = mc.ModelConfig(name=name, **fields)
    return cfg


def add_io(ios, name: str, data_type: str, dims, reshape=None):
    io = ios.add()
    io.name = name
    io.data_type = mc.DataType.Value(data_type)
    io.dims.extend(dims)
    if reshape is not None:
        io.reshape.shape.extend(reshape)
    return io


def request(model: str = "simple", rid: str = "", **arrays) -> InferenceRequest:
    inputs = {}
    for name, array in arrays.items():
        datatype = "BYTES" if array.dtype == np.object_ else {
            np.dtype(np.int32): "INT32", np.dtype(np.float32): "FP32", np.dtype(np.float16): "FP16"}.get(
            array.dtype, "BF16")
        inputs[name] = Tensor(name, datatype, list(array.shape), array=array)
    return InferenceRequest(model, id=rid, inputs=inputs)
