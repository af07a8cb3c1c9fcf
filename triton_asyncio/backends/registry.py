"""Backend and platform names -> Backend classes, and Triton's guess of a backend from file names.

Rules: backend modules are imported here, lazily, on first use, so onnxruntime and tensorrt stay
optional; a backend whose module (or framework) cannot be imported is reported as Triton reports a
missing backend library. Only the lowest version directory is inspected for default file names.
"""
from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable
from typing import Any

from ..errors import invalid_arg
from .base import Backend

log = logging.getLogger("triton_asyncio.backends")

# backend name -> (module relative to this package, class name)
_BACKENDS: dict[str, tuple[str, str]] = {
    "onnxruntime": (".onnxruntime", "OnnxRuntimeBackend"),
    "tensorrt": (".tensorrt", "TensorRTBackend"),
    "python": (".python.backend", "PythonBackend"),
    "identity": (".identity", "IdentityBackend"),
}
_PLATFORM_BACKEND: dict[str, str] = {
    "onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt", "pytorch_libtorch": "pytorch",
    "libtorch": "pytorch", "torch_aoti": "pytorch", "tensorflow_graphdef": "tensorflow",
    "tensorflow_savedmodel": "tensorflow",
}
_BACKEND_PLATFORM: dict[str, str] = {
    "onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan", "pytorch": "pytorch_libtorch",
}
_DEFAULT_FILENAME: dict[str, str] = {
    "onnxruntime": "model.onnx", "tensorrt": "model.plan", "python": "model.py", "pytorch": "model.pt",
    "openvino": "model.xml", "tensorflow": "model.savedmodel", "identity": "",
}
# (file name, must be a regular file, backend), in Triton's order of precedence.
_DETECT: tuple[tuple[str, bool, str], ...] = (
    ("model.savedmodel", False, "tensorflow"), ("model.graphdef", True, "tensorflow"),
    ("model.plan", True, "tensorrt"), ("model.onnx", False, "onnxruntime"), ("model.xml", True, "openvino"),
    ("model.pt", True, "pytorch"), ("model.pt2", True, "pytorch"), ("model.py", True, "python"),
)


def backend_name(config: Any) -> str:
    """The backend a config names, directly or through its platform ("" when neither is set)."""
    return config.backend or _PLATFORM_BACKEND.get(config.platform, config.platform)


def backend_class(config: Any) -> type[Backend]:
    """The Backend class for a config; importing its module on first use."""
    name = backend_name(config)
    entry = _BACKENDS.get(name)
    if entry is not None:
        try:
            module = importlib.import_module(entry[0], __package__)
            return getattr(module, entry[1])
        except (ImportError, AttributeError) as exc:
            log.warning("backend '%s' is unavailable: %s", name, exc)
    raise invalid_arg(f"unable to find backend library for backend '{name}', try specifying runtime on the "
                      f"model configuration.")


def detect_backend(model_dir: str, versions: Iterable[int | str], config: Any = None) -> str:
    """Triton's guess for a config without backend or platform: default file names, then `x.<backend>`."""
    if config is not None and config.default_model_filename:
        for filename, _, backend in _DETECT:
            if config.default_model_filename == filename:
                return backend
    first = _lowest(versions)
    if first is not None:
        version_dir = os.path.join(model_dir, first)
        for filename, file_only, backend in _DETECT:
            path = os.path.join(version_dir, filename)
            if os.path.isfile(path) or (not file_only and os.path.isdir(path)):
                return backend
    name = os.path.basename(os.path.normpath(model_dir))
    stem, dot, suffix = name.rpartition(".")
    if dot and stem and suffix:
        return suffix
    raise invalid_arg(f"Invalid model name: Could not determine backend for model '{name}' with no backend in "
                      f"model configuration. Expected model name of the form 'model.<backend_name>'.")


def complete_backend_fields(config: Any, model_dir: str, versions: Iterable[int | str]) -> None:
    """Triton's AutoCompleteBackendFields: fill backend, platform and default_model_filename in place."""
    if config.platform == "ensemble":
        return  # ensembles have no backend and no model file
    if not config.backend:
        config.backend = backend_name(config) or detect_backend(model_dir, versions, config)
    if not config.platform and config.backend in _BACKEND_PLATFORM:
        config.platform = _BACKEND_PLATFORM[config.backend]
    if not config.default_model_filename:
        config.default_model_filename = _DEFAULT_FILENAME.get(config.backend, f"model.{config.backend}")


def _lowest(versions: Iterable[int | str]) -> str | None:
    numbers = []
    for v in versions:
        try:
            numbers.append(int(v))
        except (TypeError, ValueError):
            continue
    return str(min(numbers)) if numbers else None
