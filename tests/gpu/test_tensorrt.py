"""The TensorRT backend on a plan built at test time: a tiny identity network, FP32 [-1, 16]."""
from __future__ import annotations

import numpy as np
import pytest

from triton_asyncio.backends.iospec import enum_name
from triton_asyncio.backends.tensorrt import TensorRTBackend
from triton_asyncio.errors import TritonError

from ..unit.backends.backend_fixtures import config, repo, request  # noqa: F401 - repo is a fixture

pytestmark = pytest.mark.gpu


def build_identity_plan(path: str, max_batch: int = 8) -> None:
    trt = pytest.importorskip("tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch always
    inp = network.add_input("INPUT0", trt.float32, (-1, 16))
    out = network.add_identity(inp).get_output(0)
    out.name = "OUTPUT0"
    network.mark_output(out)
    build_config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("INPUT0", (1, 16), (max_batch // 2, 16), (max_batch, 16))
    build_config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, build_config)
    assert plan is not None
    with open(path, "wb") as f:
        f.write(bytes(plan))


def test_auto_complete_and_infer(repo):  # noqa: F811
    location = repo("plan")
    build_identity_plan(location.version_dir + "/model.plan")
    cfg = config("plan", platform="tensorrt_plan", default_model_filename="model.plan")
    TensorRTBackend.auto_complete_config(cfg, location)
    assert cfg.max_batch_size == 8 and cfg.HasField("dynamic_batching")
    assert [(io.name, enum_name(io, "data_type"), list(io.dims)) for io in (*cfg.input, *cfg.output)] == \
        [("INPUT0", "TYPE_FP32", [16]), ("OUTPUT0", "TYPE_FP32", [16])]
    backend = TensorRTBackend(cfg, location)
    instance = backend.create_instance("plan_0", "KIND_GPU", 0)
    try:
        x = np.random.default_rng(0).random((3, 16), dtype=np.float32)
        [response] = instance.execute([request("plan", INPUT0=x)])
        assert response.outputs[0].name == "OUTPUT0"
        np.testing.assert_array_equal(response.outputs[0].array, x)
        # two requests batched into one execution come back split per request
        y = np.ones((2, 16), np.float32)
        first, second = instance.execute([request("plan", INPUT0=x), request("plan", INPUT0=y)])
        np.testing.assert_array_equal(first.outputs[0].array, x)
        np.testing.assert_array_equal(second.outputs[0].array, y)
        with pytest.raises(TritonError, match="outside every optimization profile"):
            instance.execute([request("plan", INPUT0=np.zeros((9, 16), np.float32))])
    finally:
        instance.finalize()
        backend.finalize()


def test_corrupt_plan_is_a_load_error(repo):  # noqa: F811
    pytest.importorskip("tensorrt")
    location = repo("plan")
    with open(location.version_dir + "/model.plan", "wb") as f:
        f.write(b"not a plan")
    with pytest.raises(TritonError, match="unable to load TensorRT plan"):
        TensorRTBackend.auto_complete_config(config("plan", platform="tensorrt_plan"), location)
