"""GPU-facing backend logic that runs without a GPU: TensorRT's auto-complete from engine IO (an
engine description stands in for a deserialized plan), its no-GPU errors, and onnxruntime's CPU
fallback for KIND_GPU when the CUDA execution provider is missing."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from triton_asyncio.backends import registry
from triton_asyncio.backends.iospec import enum_name
from triton_asyncio.backends.tensorrt import NO_GPU, Engine, TensorRTBackend, TrtIo, auto_complete, validate
from triton_asyncio.errors import ErrorCode, TritonError
from triton_asyncio.memory import cuda, device

from .backend_fixtures import add_io, build_simple, config, request


def engine(*ios: TrtIo) -> Engine:
    """An Engine as deserializing a plan would describe it (no TensorRT, no GPU)."""
    e = Engine.__new__(Engine)
    e.io = {io.name: io for io in ios}
    e.num_profiles = max((len(io.profiles) for io in ios), default=0)
    return e


def batched(name: str, is_input: bool, max_batch: int = 8) -> TrtIo:
    profiles = (((1, 16), (max_batch, 16)),) if is_input else ()
    return TrtIo(name, is_input, "FP32", (-1, 16), False, profiles)


def test_registry_maps_the_plan_platform_to_tensorrt():
    assert registry.backend_class(config(platform="tensorrt_plan")) is TensorRTBackend
    assert TensorRTBackend.default_model_filename == "model.plan"


def test_auto_complete_from_a_dynamic_batch_engine():
    cfg = config("plan")
    auto_complete(cfg, engine(batched("INPUT0", True, 32), batched("OUTPUT0", False)))
    assert cfg.max_batch_size == 32 and cfg.HasField("dynamic_batching")
    assert [(io.name, enum_name(io, "data_type"), list(io.dims)) for io in (*cfg.input, *cfg.output)] == \
        [("INPUT0", "TYPE_FP32", [16]), ("OUTPUT0", "TYPE_FP32", [16])]


def test_auto_complete_keeps_a_smaller_max_batch_and_refuses_a_larger_one():
    cfg = config("plan", max_batch_size=4)
    auto_complete(cfg, engine(batched("INPUT0", True), batched("OUTPUT0", False)))
    assert cfg.max_batch_size == 4
    with pytest.raises(TritonError, match="configuration specified max-batch 9 but TensorRT engine only "
                                          "supports max-batch 8"):
        auto_complete(config("plan", max_batch_size=9), engine(batched("INPUT0", True), batched("OUTPUT0", False)))


def test_auto_complete_fixed_shape_engine():
    fixed = engine(TrtIo("X", True, "INT32", (4,), False, (((4,), (4,)),)), TrtIo("Y", False, "INT32", (4,), False))
    cfg = config("plan")
    auto_complete(cfg, fixed)
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching") and list(cfg.input[0].dims) == [4]
    with pytest.raises(TritonError, match="model does not support batching while non-zero max_batch_size"):
        auto_complete(config("plan", max_batch_size=2), fixed)


def test_validate_names_and_datatypes():
    e = engine(batched("INPUT0", True), batched("OUTPUT0", False))
    cfg = config("plan", max_batch_size=8)
    add_io(cfg.input, "INPUT0", "TYPE_FP32", [16])
    add_io(cfg.output, "OUTPUT0", "TYPE_INT32", [16])
    with pytest.raises(TritonError, match="expects datatype TYPE_INT32 for output 'OUTPUT0', model provides TYPE_FP32"):
        validate(cfg, e)
    cfg.output[0].name = "NOPE"
    with pytest.raises(TritonError, match="unexpected output 'NOPE'"):
        validate(cfg, e)


def test_tensorrt_without_a_gpu_is_a_clear_load_error(repo, monkeypatch):
    monkeypatch.setattr(device, "available", lambda: False)
    location = repo("plan")
    with pytest.raises(TritonError) as info:
        TensorRTBackend.auto_complete_config(config("plan", platform="tensorrt_plan"), location)
    assert (info.value.code, info.value.message) == (ErrorCode.UNAVAILABLE, NO_GPU)
    backend = TensorRTBackend(config("plan", platform="tensorrt_plan"), location)
    with pytest.raises(TritonError, match=NO_GPU):
        backend.create_instance("plan_0", "KIND_GPU", 0)


def test_onnxruntime_kind_gpu_falls_back_to_cpu_without_the_cuda_provider(repo, monkeypatch, caplog):
    from triton_asyncio.backends import onnxruntime as ort_backend

    monkeypatch.setattr(cuda, "device_count", lambda: 1)  # a GPU is visible...
    monkeypatch.setattr(ort_backend.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])  # ...ORT is CPU-only
    cfg = config("simple", platform="onnxruntime_onnx", max_batch_size=8)
    for name in ("INPUT0", "INPUT1"):
        add_io(cfg.input, name, "TYPE_INT32", [16])
    for name in ("OUTPUT0", "OUTPUT1"):
        add_io(cfg.output, name, "TYPE_INT32", [16])
    backend = ort_backend.OnnxRuntimeBackend(cfg, repo("simple", build_simple))
    with caplog.at_level(logging.WARNING, logger="triton_asyncio.backends.onnxruntime"):
        instance = backend.create_instance("simple_0", "KIND_GPU", 0)
    assert "runs on the CPU" in caplog.text
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    [response] = instance.execute([request(INPUT0=a, INPUT1=a)])
    assert response.outputs[0].array.tolist() == (2 * a).tolist()
