"""Warmup requests built from `model_warmup`, run on every instance, and failures that fail the load."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from google.protobuf import text_format

from triton_asyncio.backends.base import Backend, ModelInstance, ModelLocation
from triton_asyncio.core.response import InferenceResponse
from triton_asyncio.errors import ErrorCode, TritonError, invalid_arg
from triton_asyncio.pb import model_config_pb2
from triton_asyncio.repository import warmup
from triton_asyncio.repository.model import build_model


def _config(text: str, max_batch_size: int = 8):
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    config.name = "m"
    config.max_batch_size = max_batch_size
    if not config.instance_group:
        config.instance_group.add(count=1, kind=model_config_pb2.ModelInstanceGroup.KIND_CPU)
    return config


def _warmup(inputs: str, extra: str = "") -> str:
    return f'model_warmup {{ name: "s" batch_size: 1 {extra} {inputs} }}'


def _input(name: str, dtype: str, dims: str, data: str) -> str:
    return f'inputs {{ key: "{name}" value {{ data_type: {dtype} dims: [{dims}] {data} }} }}'


@pytest.mark.parametrize("dtype, np_dtype", [
    ("TYPE_BOOL", np.bool_), ("TYPE_UINT8", np.uint8), ("TYPE_INT32", np.int32), ("TYPE_INT64", np.int64),
    ("TYPE_FP16", np.float16), ("TYPE_FP32", np.float32), ("TYPE_FP64", np.float64),
])
def test_zero_data_per_dtype(dtype, np_dtype):
    [sample] = warmup.build_samples(_config(_warmup(_input("I", dtype, "2, 3", "zero_data: true"))), "/nowhere")
    [tensor] = sample.tensors
    assert tensor.shape == [1, 2, 3]
    assert tensor.array.dtype == np.dtype(np_dtype) and not tensor.array.any()


@pytest.mark.parametrize("dtype", ["TYPE_INT8", "TYPE_UINT16", "TYPE_INT32", "TYPE_FP32", "TYPE_FP64", "TYPE_BOOL"])
def test_random_data_is_seeded_and_typed(dtype):
    config = _config(_warmup(_input("I", dtype, "64", "random_data: true")))
    first = warmup.build_samples(config, "/nowhere")[0].tensors[0]
    again = warmup.build_samples(config, "/nowhere")[0].tensors[0]
    assert first.shape == [1, 64] and first.datatype == dtype[5:]
    np.testing.assert_array_equal(first.array, again.array)
    assert first.array.any()
    if first.array.dtype.kind == "f":
        assert np.isfinite(first.array).all()


def test_bytes_zero_and_random_are_empty_strings():
    config = _config(_warmup(_input("Z", "TYPE_STRING", "3", "zero_data: true")
                             + _input("R", "TYPE_STRING", "2", "random_data: true")))
    tensors = {t.name: t for t in warmup.build_samples(config, "/nowhere")[0].tensors}
    assert tensors["Z"].datatype == "BYTES" and tensors["Z"].shape == [1, 3]
    assert tensors["Z"].array.tolist() == [[b"", b"", b""]]
    assert tensors["R"].array.tolist() == [[b"", b""]]
    assert bytes(tensors["Z"].as_bytes()) == b"\0" * 12  # three zero length prefixes, as Triton sends


def test_input_data_file_fixed_size(tmp_path):
    (tmp_path / "warmup").mkdir()
    values = np.arange(6, dtype=np.float32)
    (tmp_path / "warmup" / "in.bin").write_bytes(values.tobytes())
    config = _config(_warmup(_input("I", "TYPE_FP32", "2, 3", 'input_data_file: "in.bin"')))
    [tensor] = warmup.build_samples(config, str(tmp_path))[0].tensors
    np.testing.assert_array_equal(tensor.array, values.reshape(1, 2, 3))


def test_input_data_file_bytes_is_length_prefixed(tmp_path):
    (tmp_path / "warmup").mkdir()
    data = b"".join(struct.pack("<I", len(s)) + s for s in (b"ab", b"", b"xyz"))
    (tmp_path / "warmup" / "s.bin").write_bytes(data)
    config = _config(_warmup(_input("S", "TYPE_STRING", "3", 'input_data_file: "s.bin"')))
    [tensor] = warmup.build_samples(config, str(tmp_path))[0].tensors
    assert tensor.array.tolist() == [[b"ab", b"", b"xyz"]]


def test_input_data_file_wrong_size_and_missing(tmp_path):
    (tmp_path / "warmup").mkdir()
    (tmp_path / "warmup" / "short.bin").write_bytes(b"\0" * 7)
    config = _config(_warmup(_input("I", "TYPE_INT32", "2", 'input_data_file: "short.bin"')))
    with pytest.raises(TritonError, match="warmup setting expects 8 bytes, but the data provided from short.bin has 7 bytes"):
        warmup.build_samples(config, str(tmp_path))
    config = _config(_warmup(_input("I", "TYPE_INT32", "2", 'input_data_file: "gone.bin"')))
    with pytest.raises(TritonError, match="failed to open text file for read .*gone.bin: No such file or directory"):
        warmup.build_samples(config, str(tmp_path))


def test_variable_dims_are_rejected():
    config = _config(_warmup(_input("I", "TYPE_INT32", "-1", "zero_data: true")))
    with pytest.raises(TritonError, match="expects all variable-size dimensions are specified for input 'I'"):
        warmup.build_samples(config, "/nowhere")


def test_batch_size_makes_that_many_batch1_requests():
    config = _config(_warmup(_input("I", "TYPE_INT32", "4", "zero_data: true")).replace("batch_size: 1", "batch_size: 3"))
    [sample] = warmup.build_samples(config, "/nowhere")
    requests = warmup.make_requests(config, 1, sample)
    assert len(requests) == 3
    assert all(r.inputs["I"].shape == [1, 4] and r.model_name == "m" for r in requests)


def test_non_batching_model_has_no_batch_dim():
    config = _config(_warmup(_input("I", "TYPE_INT32", "4", "zero_data: true")), max_batch_size=0)
    assert warmup.build_samples(config, "/nowhere")[0].tensors[0].shape == [4]


class _Instance(ModelInstance):
    def __init__(self, name, fail=None):
        super().__init__(name, "KIND_CPU", 0)
        self.calls: list[int] = []
        self.fail = fail
        self.finalized = False

    def execute(self, requests):
        self.calls.append(len(requests))
        if self.fail == "raise":
            raise invalid_arg("An Error Occurred")
        error = TritonError(ErrorCode.INTERNAL, "bad output") if self.fail == "response" else None
        return [InferenceResponse("m", "1", error=error) for _ in requests]

    def finalize(self):
        self.finalized = True


def _backend(fail=None):
    made: list[_Instance] = []

    class _Backend(Backend):
        name = "fake"

        def create_instance(self, instance_name, kind, device_id):
            made.append(_Instance(instance_name, fail))
            return made[-1]

    return _Backend, made


def _location(tmp_path):
    return ModelLocation("m", 1, str(tmp_path), str(tmp_path / "1"))


def test_count_runs_each_sample_on_every_instance(tmp_path):
    config = _config(_warmup(_input("I", "TYPE_INT32", "4", "zero_data: true"), "count: 3")
                     + _warmup(_input("I", "TYPE_INT32", "4", "random_data: true")).replace('"s"', '"t"'))
    config.instance_group[0].count = 2
    backend_cls, made = _backend()
    build_model(backend_cls, config, None, _location(tmp_path))
    assert len(made) == 2 and all(i.calls == [1, 1, 1, 1] for i in made)  # 3 of "s" + 1 of "t" (count 0)


def test_no_warmup_runs_nothing(tmp_path):
    backend_cls, made = _backend()
    build_model(backend_cls, _config(""), None, _location(tmp_path))
    assert made[0].calls == []


@pytest.mark.parametrize("fail, code, message", [
    ("raise", ErrorCode.INVALID_ARG, "failed to run warmup sample 's': An Error Occurred"),
    ("response", ErrorCode.INTERNAL, "failed to run warmup sample 's': bad output"),
])
def test_failing_warmup_fails_the_load(tmp_path, fail, code, message):
    backend_cls, made = _backend(fail)
    config = _config(_warmup(_input("I", "TYPE_INT32", "4", "zero_data: true")))
    with pytest.raises(TritonError) as info:
        build_model(backend_cls, config, None, _location(tmp_path))
    assert info.value.code == code and info.value.message == message
    assert made[0].finalized
