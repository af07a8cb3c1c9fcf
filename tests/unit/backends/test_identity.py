"""The identity backend, and the registry's name resolution and file-name detection."""
from __future__ import annotations

import numpy as np
import pytest

from triton_asyncio.backends import registry
from triton_asyncio.backends.identity import IdentityBackend
from triton_asyncio.errors import ErrorCode, TritonError

from .backend_fixtures import add_io, config, request


def identity_config(n: int = 2):
    cfg = config("ident", backend="identity", max_batch_size=8)
    for i in range(n):
        add_io(cfg.input, f"INPUT{i}", "TYPE_FP32", [-1])
        add_io(cfg.output, f"OUTPUT{i}", "TYPE_FP32", [-1])
    return cfg


def test_outputs_are_inputs_by_position_without_copies(repo):
    backend = IdentityBackend(identity_config(), repo("ident"))
    instance = backend.create_instance("ident_0", "KIND_CPU", 0)
    a, b = np.arange(4, dtype=np.float32).reshape(1, 4), np.ones((1, 2), np.float32)
    req = request("ident", rid="7", INPUT0=a, INPUT1=b)
    (response,) = instance.execute([req])
    assert (response.model_version, response.id) == ("1", "7")
    assert [(t.name, t.shape) for t in response.outputs] == [("OUTPUT0", [1, 4]), ("OUTPUT1", [1, 2])]
    assert response.outputs[0].as_numpy() is a


def test_batch_of_requests_maps_each_to_itself(repo):
    instance = IdentityBackend(identity_config(1), repo("ident")).create_instance("ident_0", "KIND_CPU", 0)
    reqs = [request("ident", INPUT0=np.full((1, 3), i, np.float32)) for i in range(3)]
    assert [r.outputs[0].as_numpy()[0, 0] for r in instance.execute(reqs)] == [0, 1, 2]


def test_more_outputs_than_inputs_fails(repo):
    cfg = identity_config(1)
    add_io(cfg.output, "OUTPUT1", "TYPE_FP32", [-1])
    with pytest.raises(TritonError, match="has 2 outputs but only 1 inputs"):
        IdentityBackend(cfg, repo("ident"))


def test_registry_names():
    assert registry.backend_class(config(backend="identity")) is IdentityBackend
    with pytest.raises(TritonError) as info:
        registry.backend_class(config(backend="nosuch"))
    assert info.value.code == ErrorCode.INVALID_ARG
    assert info.value.message == ("unable to find backend library for backend 'nosuch', try specifying runtime "
                                  "on the model configuration.")


@pytest.mark.parametrize("filename,directory,backend", [
    ("model.onnx", False, "onnxruntime"), ("model.onnx", True, "onnxruntime"),
    ("model.plan", False, "tensorrt"), ("model.py", False, "python"),
])
def test_detect_backend_from_file_names(tmp_path, filename, directory, backend):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "3").mkdir()
    target = tmp_path / "m" / "1" / filename
    target.mkdir() if directory else target.write_bytes(b"")
    (tmp_path / "m" / "3" / "model.py").write_bytes(b"")  # only the lowest version is inspected
    assert registry.detect_backend(str(tmp_path / "m"), [3, 1]) == backend


def test_detect_backend_from_model_name_or_fail(tmp_path):
    (tmp_path / "x.identity" / "1").mkdir(parents=True)
    assert registry.detect_backend(str(tmp_path / "x.identity"), [1]) == "identity"
    (tmp_path / "plain" / "1").mkdir(parents=True)
    with pytest.raises(TritonError, match="Could not determine backend for model 'plain'"):
        registry.detect_backend(str(tmp_path / "plain"), [1])


def test_complete_backend_fields(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.py").write_bytes(b"")
    cfg = config("m")
    registry.complete_backend_fields(cfg, str(tmp_path / "m"), [1])
    assert (cfg.backend, cfg.platform, cfg.default_model_filename) == ("python", "", "model.py")
    cfg = config("m", platform="tensorrt_plan")
    registry.complete_backend_fields(cfg, str(tmp_path / "m"), [1])
    assert (cfg.backend, cfg.platform, cfg.default_model_filename) == ("tensorrt", "tensorrt_plan", "model.plan")
