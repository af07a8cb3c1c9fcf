"""onnxruntime on the CUDA execution provider, with IO binding."""
from __future__ import annotations

import numpy as np
import pytest

from ..unit.backends.backend_fixtures import add_io, build_simple, config, repo, request  # noqa: F401

pytestmark = pytest.mark.gpu


def test_kind_gpu_runs_on_the_cuda_provider_with_io_binding(repo):  # noqa: F811
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA execution provider")
    from triton_asyncio.backends.onnxruntime import OnnxRuntimeBackend

    cfg = config("simple", platform="onnxruntime_onnx", max_batch_size=8)
    for name in ("INPUT0", "INPUT1"):
        add_io(cfg.input, name, "TYPE_INT32", [16])
    for name in ("OUTPUT0", "OUTPUT1"):
        add_io(cfg.output, name, "TYPE_INT32", [16])
    backend = OnnxRuntimeBackend(cfg, repo("simple", build_simple))
    instance = backend.create_instance("simple_0", "KIND_GPU", 0)
    assert instance.session.get_providers()[0] == "CUDAExecutionProvider"
    assert instance._run == instance._run_iobinding
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.full((2, 16), 5, dtype=np.int32)
    [response] = instance.execute([request(INPUT0=a, INPUT1=b)])
    assert response.outputs[0].array.tolist() == (a + b).tolist()
    assert response.outputs[1].array.tolist() == (a - b).tolist()
