"""The onnxruntime backend: one InferenceSession per instance, config auto-complete from the model's IO.

Rules: the only module that imports onnxruntime (the registry imports this module on first use).
`execute` runs on the instance's worker thread; ORT releases the GIL inside `run`. Per request the
hot path is: dict of numpy views -> session.run -> views back; anything else is computed at load.
KIND_GPU instances use the CUDAExecutionProvider on their `device_id` with IO binding (host inputs
bound as they are, outputs left on the GPU and copied out once); when this onnxruntime has no CUDA
provider, or the provider fails to start, the instance runs on the CPU with a warning, as
onnxruntime itself falls back. A GPU id that does not exist is Triton's load error.
"""
from __future__ import annotations

import ctypes
import logging
import os
import re
from typing import Any

import numpy as np
import onnxruntime as ort

from ..core.datatype import NUMPY_DTYPE
from ..core.request import InferenceRequest
from ..core.response import InferenceResponse
from ..core.tensor import Tensor
from ..errors import TritonError, internal, invalid_arg, unavailable
from ..memory import cuda
from . import collect, onnx_io
from .base import Backend, ModelInstance, ModelLocation
from .iospec import IoSpec, outputs_of

log = logging.getLogger("triton_asyncio.backends.onnxruntime")
_ORT_ERROR = re.compile(r"\[ONNXRuntimeError\] : (\d+) : \w+ : (.*)", re.S)
_GRAPH_LEVELS = {-1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, 1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                 2: ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
_BF16 = NUMPY_DTYPE.get("BF16")
_ONNX_BF16 = 16  # TensorProto.BFLOAT16


def ort_error(exc: Exception) -> TritonError:
    """An onnxruntime exception as Triton's RETURN_IF_ORT_ERROR reports it."""
    match = _ORT_ERROR.search(str(exc))
    if match:
        return internal(f"onnx runtime error {match.group(1)}: {match.group(2)}")
    return internal(f"onnx runtime error: {exc}")


def model_path(config: Any, version_dir: str) -> str:
    """<version>/<default_model_filename or model.onnx>, or <that>/model.onnx when it is a directory."""
    path = os.path.join(version_dir, config.default_model_filename or "model.onnx")
    return os.path.join(path, "model.onnx") if os.path.isdir(path) else path


def _param(config: Any, key: str) -> str | None:
    return config.parameters[key].string_value if key in config.parameters else None


def _int_param(config: Any, key: str, default: int) -> int:
    value = _param(config, key)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise invalid_arg(f"failed to convert {key} '{value}' to integral number") from None


def _bool_param(config: Any, key: str) -> bool | None:
    value = _param(config, key)
    if value is None:
        return None
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise invalid_arg(f"failed to convert {key} '{value}' to boolean value")


def session_options(config: Any) -> Any:
    """SessionOptions from the config, as the reference backend reads them."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    level = config.optimization.graph.level if config.HasField("optimization") else 0
    so.graph_optimization_level = _GRAPH_LEVELS.get(level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    mode = _int_param(config, "execution_mode", 0)
    if mode not in (0, 1):
        raise invalid_arg("Invalid configuration value provided. Expected values for  execution_mode are 0 "
                          f"or 1 but got {mode} .")
    so.execution_mode = ort.ExecutionMode.ORT_PARALLEL if mode else ort.ExecutionMode.ORT_SEQUENTIAL
    if (intra := _int_param(config, "intra_op_thread_count", 0)) > 0:
        so.intra_op_num_threads = intra
    if (inter := _int_param(config, "inter_op_thread_count", 0)) > 0:
        so.inter_op_num_threads = inter
    for key, attr in (("enable_mem_arena", "enable_cpu_mem_arena"), ("enable_mem_pattern", "enable_mem_pattern")):
        if (flag := _bool_param(config, key)) is not None:
            setattr(so, attr, flag)
    # The event loop shares one or two cores with ORT: spinning workers would starve it.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    for key in config.parameters:
        if key.startswith("session."):
            so.add_session_config_entry(key, config.parameters[key].string_value)
    return so


def open_session(path: str, options: Any, providers: list[Any], model: str) -> Any:
    if not os.path.exists(path):
        raise unavailable(f"unable to find '{path}' for model instance '{model}'")
    try:
        return ort.InferenceSession(path, sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises its own pybind exception types
        raise ort_error(exc) from None


def _model_io(session: Any) -> tuple[dict[str, onnx_io.OnnxIo], dict[str, onnx_io.OnnxIo]]:
    return onnx_io.from_node_args(session.get_inputs()), onnx_io.from_node_args(session.get_outputs())


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    default_model_filename = "model.onnx"
    #: --backend-config=onnxruntime,default-max-batch-size=<n>
    default_max_batch_size = 4

    def __init__(self, config: Any, location: ModelLocation) -> None:
        super().__init__(config, location)
        self.path = model_path(config, location.version_dir)
        self.options = session_options(config)
        self.share_session = bool(_bool_param(config, "share_session_between_instances"))
        self._shared: dict[str, Any] = {}

    @classmethod
    def auto_complete_config(cls, config: Any, location: ModelLocation) -> None:
        if (len(config.input) + len(config.batch_input)) > 0 and len(config.output) > 0:
            return  # the reference backend skips entirely, dynamic batching included
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = open_session(model_path(config, location.version_dir), options, ["CPUExecutionProvider"],
                               config.name)
        inputs, outputs = _model_io(session)
        onnx_io.auto_complete(config, inputs, outputs, cls.default_max_batch_size)

    def create_instance(self, instance_name: str, kind: str, device_id: int) -> ModelInstance:
        group = instance_name.rsplit("_", 1)[0]
        session = self._shared.get(group) if self.share_session else None
        if session is None:
            session = open_session(self.path, self.options, self._providers(group, kind, device_id), self.config.name)
            if kind == "KIND_GPU" and session.get_providers()[0] != "CUDAExecutionProvider":
                log.warning("the CUDA execution provider did not start on GPU %d for model instance '%s': "
                            "running it on the CPU", device_id, instance_name)
            inputs, outputs = _model_io(session)
            overridable = onnx_io.from_node_args(session.get_overridable_initializers())
            onnx_io.validate(self.config, inputs, outputs, overridable)
            if self.share_session:
                self._shared[group] = session
        return OrtInstance(instance_name, kind, device_id, session, self.config, self.location.version)

    def _providers(self, group: str, kind: str, device_id: int) -> list[Any]:
        if kind != "KIND_GPU":
            return ["CPUExecutionProvider"]
        gpus = cuda.device_count()
        if not 0 <= device_id < gpus:
            supported = ", ".join(str(i) for i in range(gpus))
            raise invalid_arg(f"instance group {group} of model {self.config.name} specifies invalid or unsupported "
                              f"gpu id {device_id}. GPUs with at least the minimum required CUDA compute "
                              f"compatibility of 7.500000 are: {supported}")
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            log.warning("this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu): instance group "
                        "%s of model %s runs on the CPU", group, self.config.name)
            return ["CPUExecutionProvider"]
        return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]

    def finalize(self) -> None:
        self._shared.clear()


class OrtInstance(ModelInstance):
    """One session; executes one batch at a time on the instance's worker thread."""

    def __init__(self, name: str, kind: str, device_id: int, session: Any, config: Any, version: int) -> None:
        super().__init__(name, kind, device_id)
        self.session = session
        self.model_name = config.name
        self.version = str(version)
        self.batching = config.max_batch_size > 0
        self.outputs: list[IoSpec] = outputs_of(config)
        self.output_names = [o.name for o in self.outputs]
        model_inputs = onnx_io.from_node_args(session.get_inputs())
        self.str_inputs = {n for n, io in model_inputs.items() if io.onnx_type == "tensor(string)"}
        has_bf16 = any(io.onnx_type == "tensor(bfloat16)"
                       for io in (*model_inputs.values(), *onnx_io.from_node_args(session.get_outputs()).values()))
        self._run = self._run_ortvalues if has_bf16 else self._run_numpy
        if (kind == "KIND_GPU" and session.get_providers()[0] == "CUDAExecutionProvider" and not has_bf16
                and not self.str_inputs and all(o.datatype != "BYTES" for o in self.outputs)):
            self._run = self._run_iobinding
        # Inputs were validated against the config upstream, so skip the Python-side re-check in
        # InferenceSession.run (about 1 us per call) and call the binding directly when it is there.
        self._sess_run = getattr(getattr(session, "_sess", None), "run", None)
        self._plain = not any(o.datatype == "BYTES" or o.reshape is not None for o in self.outputs)

    def execute(self, requests: list[InferenceRequest]) -> list[InferenceResponse]:
        if len(requests) == 1 or not self.batching:
            return [self._execute_one(request) for request in requests]
        sizes = [collect.batch_size(r) for r in requests]
        feeds = {name: self._feed(name, collect.gather(requests, name)) for name in requests[0].inputs}
        results = [collect.scatter(array, sizes) for array in self._run(feeds)]
        return [self._respond(request, [r[i] for r in results]) for i, request in enumerate(requests)]

    def _execute_one(self, request: InferenceRequest) -> InferenceResponse:
        if self.str_inputs:
            feeds = {name: self._feed(name, t.as_numpy()) for name, t in request.inputs.items()}
        else:
            feeds = {name: t.as_numpy() for name, t in request.inputs.items()}
        return self._respond(request, self._run(feeds))

    def _feed(self, name: str, array: np.ndarray) -> np.ndarray:
        return collect.bytes_to_str(array) if name in self.str_inputs else array

    def _run_numpy(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            if self._sess_run is not None:
                return self._sess_run(self.output_names, feeds, None)
            return self.session.run(self.output_names, feeds)
        except Exception as exc:  # ORT raises its own pybind exception types
            raise ort_error(exc) from None

    def _run_iobinding(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """GPU path: ORT copies the host inputs up; outputs stay on the device until one copy out
        (without binding, ORT would copy every output back into fresh host memory itself)."""
        try:
            binding = self.session.io_binding()
            for name, array in feeds.items():
                binding.bind_cpu_input(name, np.ascontiguousarray(array))
            for name in self.output_names:
                binding.bind_output(name, "cuda", self.device_id)
            self.session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()
        except Exception as exc:  # ORT raises its own pybind exception types
            raise ort_error(exc) from None

    def _run_ortvalues(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """BF16 path: numpy has no bfloat16 that ORT's numpy bridge understands."""
        try:
            values = {n: _to_ortvalue(a) for n, a in feeds.items()}
            return [_from_ortvalue(v) for v in self.session.run_with_ort_values(self.output_names, values)]
        except TritonError:
            raise
        except Exception as exc:
            raise ort_error(exc) from None

    def _respond(self, request: InferenceRequest, arrays: list[np.ndarray]) -> InferenceResponse:
        if self._plain:
            tensors = [Tensor(spec.name, spec.datatype, list(array.shape), array=array)
                       for spec, array in zip(self.outputs, arrays, strict=True)]
            return InferenceResponse(self.model_name, self.version, id=request.id, outputs=tensors)
        tensors = [collect.output_tensor(spec, collect.str_to_bytes(array) if spec.datatype == "BYTES" else array,
                                         self.batching)
                   for spec, array in zip(self.outputs, arrays, strict=True)]
        return InferenceResponse(self.model_name, self.version, id=request.id, outputs=tensors)

    def finalize(self) -> None:
        self.session = None


def _to_ortvalue(array: np.ndarray) -> Any:
    if _BF16 is not None and array.dtype == _BF16:
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
            np.ascontiguousarray(array).view(np.uint16), onnx_element_type=_ONNX_BF16)
    return ort.OrtValue.ortvalue_from_numpy(array)


def _from_ortvalue(value: Any) -> np.ndarray:
    if value.data_type() != "tensor(bfloat16)":
        return value.numpy()
    raw = ctypes.string_at(value.data_ptr(), value.tensor_size_in_bytes())
    return np.frombuffer(raw, dtype=_BF16).reshape(value.shape())

