"""The onnxruntime backend against tiny models built in tmp_path: auto-complete, validation, execute."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from triton_asyncio.backends import registry  # noqa: E402
from triton_asyncio.backends.iospec import enum_name  # noqa: E402
from triton_asyncio.backends.onnxruntime import OnnxRuntimeBackend, session_options  # noqa: E402
from triton_asyncio.errors import ErrorCode, TritonError  # noqa: E402
from triton_asyncio.memory import cuda  # noqa: E402

from .backend_fixtures import add_io, build_identity, build_simple, config, request  # noqa: E402


def simple_config(max_batch_size: int = 8, dims=(16,)):
    cfg = config("simple", platform="onnxruntime_onnx", max_batch_size=max_batch_size)
    for name in ("INPUT0", "INPUT1"):
        add_io(cfg.input, name, "TYPE_INT32", dims)
    for name in ("OUTPUT0", "OUTPUT1"):
        add_io(cfg.output, name, "TYPE_INT32", dims)
    return cfg


def load(cfg, location, kind: str = "KIND_CPU", device: int = 0):
    backend = OnnxRuntimeBackend(cfg, location)
    return backend, backend.create_instance(f"{cfg.name}_0", kind, device)


def test_registry_resolves_platform_and_backend():
    assert registry.backend_class(config(platform="onnxruntime_onnx")) is OnnxRuntimeBackend
    assert registry.backend_class(config(backend="onnxruntime")) is OnnxRuntimeBackend


def test_auto_complete_empty_config(repo):
    location = repo("simple", build_simple)
    cfg = config("simple")
    registry.complete_backend_fields(cfg, location.model_dir, [1])
    OnnxRuntimeBackend.auto_complete_config(cfg, location)
    assert (cfg.backend, cfg.platform, cfg.default_model_filename) == ("onnxruntime", "onnxruntime_onnx",
                                                                      "model.onnx")
    assert cfg.max_batch_size == 4
    assert cfg.HasField("dynamic_batching")
    assert [i.name for i in cfg.input] == ["INPUT0", "INPUT1"]
    assert [o.name for o in cfg.output] == ["OUTPUT0", "OUTPUT1"]
    assert all(list(io.dims) == [16] and enum_name(io, "data_type") == "TYPE_INT32"
               for io in [*cfg.input, *cfg.output])


def test_auto_complete_fixed_shape_does_not_batch(repo):
    location = repo("fixed", build_simple, 4)
    cfg = config("fixed")
    OnnxRuntimeBackend.auto_complete_config(cfg, location)
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert list(cfg.input[0].dims) == [4, 16]
    bad = config("fixed", max_batch_size=8)
    with pytest.raises(TritonError, match="model does not support batching while non-zero max_batch_size"):
        OnnxRuntimeBackend.auto_complete_config(bad, location)


def test_auto_complete_skips_when_io_given(repo):
    location = repo("simple", build_simple)
    cfg = simple_config(max_batch_size=0, dims=(-1, 16))
    OnnxRuntimeBackend.auto_complete_config(cfg, location)
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")


def test_auto_complete_scalar_per_item_gets_reshape(repo):
    location = repo("scalar", build_identity, onnx.TensorProto.FLOAT, ["n"])
    cfg = config("scalar")
    OnnxRuntimeBackend.auto_complete_config(cfg, location)
    assert list(cfg.input[0].dims) == [1] and cfg.input[0].HasField("reshape")
    assert list(cfg.input[0].reshape.shape) == []


def test_execute_single_request(repo):
    _, instance = load(simple_config(), repo("simple", build_simple))
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.ones((1, 16), dtype=np.int32)
    (response,) = instance.execute([request(rid="r1", INPUT0=a, INPUT1=b)])
    assert (response.model_name, response.model_version, response.id) == ("simple", "1", "r1")
    out = {t.name: t for t in response.outputs}
    assert out["OUTPUT0"].datatype == "INT32" and out["OUTPUT0"].shape == [1, 16]
    np.testing.assert_array_equal(out["OUTPUT0"].as_numpy(), a + b)
    np.testing.assert_array_equal(out["OUTPUT1"].as_numpy(), a - b)


def test_execute_batched_requests_scatter_views(repo):
    _, instance = load(simple_config(), repo("simple", build_simple))
    reqs = [request(INPUT0=np.full((n, 16), n, np.int32), INPUT1=np.ones((n, 16), np.int32)) for n in (1, 3, 2)]
    responses = instance.execute(reqs)
    assert [r.outputs[0].shape for r in responses] == [[1, 16], [3, 16], [2, 16]]
    for n, response in zip((1, 3, 2), responses, strict=True):
        np.testing.assert_array_equal(response.outputs[0].as_numpy(), np.full((n, 16), n + 1))
        assert response.outputs[1].as_numpy().base is not None  # a view into the batch output


def test_bytes_identity(repo):
    cfg = config("strings", max_batch_size=4)
    add_io(cfg.input, "INPUT0", "TYPE_STRING", [1])
    add_io(cfg.output, "OUTPUT0", "TYPE_STRING", [1])
    _, instance = load(cfg, repo("strings", build_identity, onnx.TensorProto.STRING, ["b", 1]))
    data = np.array([[b"hello"], ["wörld".encode()]], dtype=object)
    (response,) = instance.execute([request("strings", INPUT0=data)])
    out = response.outputs[0]
    assert out.datatype == "BYTES" and out.shape == [2, 1]
    assert out.as_numpy().tolist() == [[b"hello"], ["wörld".encode()]]


@pytest.mark.parametrize("elem,config_type,np_type", [
    (onnx.TensorProto.FLOAT16, "TYPE_FP16", np.float16),
    (onnx.TensorProto.BFLOAT16, "TYPE_BF16", "BF16"),
])
def test_half_types(repo, elem, config_type, np_type):
    from triton_asyncio.core.datatype import NUMPY_DTYPE

    dtype = NUMPY_DTYPE["BF16"] if np_type == "BF16" else np.dtype(np_type)
    cfg = config("half", max_batch_size=4)
    add_io(cfg.input, "INPUT0", config_type, [3])
    add_io(cfg.output, "OUTPUT0", config_type, [3])
    _, instance = load(cfg, repo("half", build_identity, elem, ["b", 3]))
    data = np.array([[1.5, -2.0, 3.25]], dtype=dtype)
    (response,) = instance.execute([request("half", INPUT0=data)])
    assert response.outputs[0].as_numpy().dtype == dtype
    np.testing.assert_array_equal(response.outputs[0].as_numpy().astype(np.float32), data.astype(np.float32))


def test_config_with_unknown_input_fails_load(repo):
    cfg = simple_config()
    cfg.input[1].name = "INPUTX"
    with pytest.raises(TritonError, match="unexpected inference input 'INPUTX', allowed inputs are: INPUT0, INPUT1"):
        load(cfg, repo("simple", build_simple))


def test_config_with_wrong_dtype_or_dims_fails_load(repo):
    location = repo("simple", build_simple)
    cfg = simple_config()
    add_io(cfg.input, "X", "TYPE_INT32", [16])
    with pytest.raises(TritonError, match="configuration expects 3 inputs, model provides 2"):
        load(cfg, location)
    cfg = simple_config()
    cfg.output[0].data_type = 11  # TYPE_FP32
    with pytest.raises(TritonError, match="expects datatype TYPE_FP32 for output 'OUTPUT0', model provides TYPE_INT32"):
        load(cfg, location)
    with pytest.raises(TritonError, match=r"the model expects 2 dimensions \(shape \[-1,16\]\)"):
        load(simple_config(dims=(8,)), location)


def test_kind_gpu_without_gpu_fails_cleanly(repo):
    if cuda.device_count() > 0:
        pytest.skip("this host has a GPU")
    with pytest.raises(TritonError) as info:
        load(simple_config(), repo("simple", build_simple), kind="KIND_GPU", device=0)
    assert info.value.code == ErrorCode.INVALID_ARG
    assert "instance group simple of model simple specifies invalid or unsupported gpu id 0" in info.value.message


def test_broken_model_file_fails_create(repo):
    location = repo("broken")
    with open(f"{location.version_dir}/model.onnx", "wb") as f:
        f.write(b"this is not an onnx model")
    with pytest.raises(TritonError) as info:
        load(simple_config(), location)
    assert info.value.code == ErrorCode.INTERNAL and info.value.message.startswith("onnx runtime error")


def test_missing_model_file_is_unavailable(repo):
    with pytest.raises(TritonError) as info:
        load(simple_config(), repo("empty"))
    assert info.value.code == ErrorCode.UNAVAILABLE and "unable to find" in info.value.message


def test_model_directory_holding_model_onnx(repo):
    location = repo("dir")
    build_simple(f"{location.version_dir}/model.onnx/model.onnx")
    _, instance = load(simple_config(), location)
    ones = np.ones((1, 16), np.int32)
    (response,) = instance.execute([request(INPUT0=ones, INPUT1=ones)])
    assert response.outputs[0].as_numpy().sum() == 32


def test_session_options_from_parameters():
    cfg = simple_config()
    for key, value in (("intra_op_thread_count", "1"), ("inter_op_thread_count", "2"), ("execution_mode", "1")):
        cfg.parameters[key].string_value = value
    cfg.optimization.graph.level = 2
    so = session_options(cfg)
    assert (so.intra_op_num_threads, so.inter_op_num_threads) == (1, 2)
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    cfg.parameters["execution_mode"].string_value = "3"
    with pytest.raises(TritonError, match="execution_mode are 0 or 1 but got 3"):
        session_options(cfg)


def test_runtime_failure_is_a_triton_error(repo):
    _, instance = load(simple_config(), repo("simple", build_simple))
    bad = np.ones((1, 8), np.int32)
    with pytest.raises(TritonError) as info:
        instance.execute([request(INPUT0=bad, INPUT1=bad)])
    assert info.value.code == ErrorCode.INTERNAL and info.value.message.startswith("onnx runtime error 2: ")


def test_share_session_between_instances(repo):
    cfg = simple_config()
    cfg.parameters["share_session_between_instances"].string_value = "true"
    backend = OnnxRuntimeBackend(cfg, repo("simple", build_simple))
    first, second = (backend.create_instance(f"simple_{i}", "KIND_CPU", 0) for i in range(2))
    assert first.session is second.session


@pytest.mark.gpu
@pytest.mark.skipif(cuda.device_count() == 0, reason="needs a CUDA GPU")
def test_kind_gpu_runs_on_cuda_ep(repo):
    _, instance = load(simple_config(), repo("simple", build_simple), kind="KIND_GPU", device=0)
    assert instance.session.get_providers()[0] == "CUDAExecutionProvider"
    ones = np.ones((2, 16), np.int32)
    (response,) = instance.execute([request(INPUT0=ones, INPUT1=ones)])
    np.testing.assert_array_equal(response.outputs[0].as_numpy(), ones * 2)
