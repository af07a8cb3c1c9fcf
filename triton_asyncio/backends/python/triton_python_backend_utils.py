"""`triton_python_backend_utils` (pb_utils): the API a Triton Python-backend model.py imports.

Rules: runs inside the stub only; stdlib + numpy, never triton_asyncio. Everything that talks to
the server (BLS, response senders, logging, cancellation) goes through `_runtime`, which the stub
installs before it imports model.py; the rest is pure helpers with Triton's names and behaviour.

Beyond Triton: `@batched` turns `execute(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]`
into a Triton `execute(self, requests)`: the inputs of every request in the batch are stacked along
dim 0 (each request keeps its own batch dim), the function runs once, and each output is split back
by the requests' batch sizes (dim 0 of their first input). An exception fails every request in the
batch with its message. Non-batching models (max_batch_size 0) can use it too: each request's
inputs then get a leading dim of 1 added and removed.
"""
from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from arena import NUMPY_OF, deserialize_bytes, serialize_bytes, wire_of

TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2
TRITONSERVER_MEMORY_CPU = 0
TRITONSERVER_MEMORY_CPU_PINNED = 1
TRITONSERVER_MEMORY_GPU = 2

# Set by the stub: has bls(request, decoupled), send(request_id, response, flags), log(level, msg),
# is_cancelled(request_id).
_runtime: Any = None
# Set by the stub from the config: whether requests carry a batch dimension (for @batched).
_model_batches = True

_CONFIG_TYPES = ("TYPE_INVALID", "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32", "TYPE_UINT64",
                 "TYPE_INT8", "TYPE_INT16", "TYPE_INT32", "TYPE_INT64", "TYPE_FP16", "TYPE_FP32",
                 "TYPE_FP64", "TYPE_STRING")


class TritonError(Exception):
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = range(8)

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self._message = message
        self._code = int(code)

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class TritonModelException(Exception):
    """Raised by BLS on an error response; raise it to fail initialize/execute/finalize."""


class Tensor:
    def __init__(self, name: str, array: Any, *, _datatype: str | None = None) -> None:
        if not isinstance(array, np.ndarray):
            array = np.asarray(array)
        if array.dtype.kind in "SU":  # fixed-width numpy strings travel as BYTES objects
            array = array.astype(np.object_)
        self._name = name
        self._array = array
        self._datatype = _datatype or wire_of(array.dtype)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array

    def triton_dtype(self) -> int:
        return _CONFIG_TYPES.index("TYPE_STRING" if self._datatype == "BYTES" else "TYPE_" + self._datatype)

    def shape(self) -> list[int]:
        return list(self._array.shape)

    def is_cpu(self) -> bool:
        return True

    def to_dlpack(self) -> Any:
        return self._array.__dlpack__()

    def __dlpack__(self, stream: Any = None) -> Any:
        return self._array.__dlpack__()

    def __dlpack_device__(self) -> tuple[int, int]:
        return self._array.__dlpack_device__()

    @staticmethod
    def from_dlpack(name: str, capsule: Any) -> Tensor:
        """From an object with __dlpack__, or from a bare DLPack capsule (CPU memory)."""
        if not hasattr(capsule, "__dlpack__"):
            capsule = _Capsule(capsule)
        return Tensor(name, np.from_dlpack(capsule))

    def __repr__(self) -> str:
        return f"Tensor({self._name!r}, {self._datatype}, {list(self._array.shape)})"


class _Capsule:
    """A bare capsule (to_dlpack's result) in the protocol numpy's from_dlpack consumes."""

    def __init__(self, capsule: Any) -> None:
        self._capsule = capsule

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self._capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)  # kDLCPU: stub tensors live in host memory


class PreferredMemory:
    def __init__(self, preferred_memory_type: int = TRITONSERVER_MEMORY_CPU, preferred_device_id: int = 0) -> None:
        self.preferred_memory_type = preferred_memory_type
        self.preferred_device_id = preferred_device_id


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor] | None = None, error: TritonError | None = None,
                 parameters: dict | str | None = None) -> None:
        self._outputs = list(output_tensors or [])
        if error is not None and not isinstance(error, TritonError):
            error = TritonError(str(error))
        self._error = error
        self._parameters = json.loads(parameters) if isinstance(parameters, str) else dict(parameters or {})

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def parameters(self) -> str:
        return json.dumps(self._parameters)


class InferenceResponseSender:
    def __init__(self, request_id: int) -> None:
        self._request_id = request_id
        self._closed = False

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        if self._closed:
            raise TritonModelException("Unable to send response. Response sender has been closed.")
        if response is not None and not isinstance(response, InferenceResponse):
            raise TritonModelException(f"Expected an 'InferenceResponse' object, found type '{type(response)}'.")
        if flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL:
            self._closed = True
        _runtime.send(self._request_id, response, flags)

    def is_cancelled(self) -> bool:
        return _runtime.is_cancelled(self._request_id)


class InferenceRequest:
    """A request handed to execute, or (built by the model) a BLS request to another model."""

    def __init__(self, request_id: str = "", correlation_id: int | str = 0, inputs: list[Tensor] | None = None,
                 requested_output_names: list[str] | None = None, model_name: str = "", model_version: int = -1,
                 flags: int = 0, timeout: int = 0, preferred_memory: PreferredMemory | None = None,
                 trace: Any = None, parameters: dict | str | None = None) -> None:
        self._id = request_id
        self._correlation_id = correlation_id
        self._inputs = list(inputs or [])
        self._requested = list(requested_output_names or [])
        self.model_name = model_name
        self.model_version = model_version
        self._flags = flags
        self._timeout = timeout
        self._parameters = json.loads(parameters) if isinstance(parameters, str) else dict(parameters or {})
        self._handle: int | None = None  # set by the stub on received requests
        self._sender: InferenceResponseSender | None = None
        self._release_flags = TRITONSERVER_REQUEST_RELEASE_ALL

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def request_id(self) -> str:
        return self._id

    def correlation_id(self) -> int | str:
        return self._correlation_id

    def flags(self) -> int:
        return self._flags

    def set_flags(self, flags: int) -> None:
        self._flags = flags

    def timeout(self) -> int:
        return self._timeout

    def parameters(self) -> str:
        return json.dumps(self._parameters)

    def trace(self) -> None:
        return None

    def requested_output_names(self) -> list[str]:
        return self._requested

    def set_release_flags(self, flags: int) -> None:
        self._release_flags = flags

    def get_response_sender(self) -> InferenceResponseSender:
        if self._handle is None:
            raise TritonModelException("a BLS request has no response sender")
        if self._sender is None:
            self._sender = InferenceResponseSender(self._handle)
        return self._sender

    def is_cancelled(self) -> bool:
        return self._handle is not None and _runtime.is_cancelled(self._handle)

    def exec(self, decoupled: bool = False) -> Any:
        """BLS: run this request on `model_name`; an InferenceResponse, or an iterator of them."""
        if not self.model_name:
            raise TritonModelException("BLS request has no model_name")
        return _runtime.bls(self, decoupled)

    async def async_exec(self, decoupled: bool = False) -> Any:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, self.exec, decoupled)
        return _AsyncResponses(result) if decoupled else result


class _AsyncResponses:
    """async_exec(decoupled=True): the response iterator, iterable with `async for` too."""

    def __init__(self, it: Iterator) -> None:
        self._it = it

    def __iter__(self) -> Iterator:
        return iter(self._it)

    def __aiter__(self) -> _AsyncResponses:
        return self

    async def __anext__(self) -> Any:
        loop = asyncio.get_running_loop()
        item = await loop.run_in_executor(None, next, self._it, StopAsyncIteration)
        if item is StopAsyncIteration:
            raise StopAsyncIteration
        return item


class Logger:
    INFO, WARNING, ERROR, VERBOSE = "INFO", "WARNING", "ERROR", "VERBOSE"

    @staticmethod
    def log(msg: str, level: str = "INFO") -> None:
        if _runtime is not None:
            _runtime.log(level, str(msg))

    @staticmethod
    def log_info(msg: str) -> None:
        Logger.log(msg, Logger.INFO)

    @staticmethod
    def log_warn(msg: str) -> None:
        Logger.log(msg, Logger.WARNING)

    @staticmethod
    def log_error(msg: str) -> None:
        Logger.log(msg, Logger.ERROR)

    @staticmethod
    def log_verbose(msg: str) -> None:
        Logger.log(msg, Logger.VERBOSE)


# -- helpers ------------------------------------------------------------------------------------
def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    for tensor in request.inputs():
        if tensor.name() == name:
            return tensor
    return None


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    for tensor in response.output_tensors():
        if tensor.name() == name:
            return tensor
    return None


def get_input_config_by_name(model_config: dict, name: str) -> dict | None:
    return next((io for io in model_config.get("input", []) if io["name"] == name), None)


def get_output_config_by_name(model_config: dict, name: str) -> dict | None:
    return next((io for io in model_config.get("output", []) if io["name"] == name), None)


def using_decoupled_model_transaction_policy(model_config: dict) -> bool:
    return bool(model_config.get("model_transaction_policy", {}).get("decoupled", False))


def triton_string_to_numpy(triton_type_string: str) -> Any:
    if triton_type_string == "TYPE_STRING":
        return np.object_
    dtype = NUMPY_OF.get(triton_type_string.removeprefix("TYPE_"))
    return dtype.type if dtype is not None else None


def triton_to_numpy_type(data_type: int) -> Any:
    return triton_string_to_numpy(_CONFIG_TYPES[data_type]) if 0 < data_type < len(_CONFIG_TYPES) else None


def numpy_to_triton_type(data_type: Any) -> int | None:
    try:
        wire = wire_of(np.dtype(data_type))
    except TypeError:
        return None
    return _CONFIG_TYPES.index("TYPE_STRING" if wire == "BYTES" else "TYPE_" + wire)


def serialize_byte_tensor(input_tensor: np.ndarray) -> Any:
    if input_tensor.size == 0:
        return ()
    return np.frombuffer(serialize_bytes(input_tensor), dtype=np.uint8)


def deserialize_bytes_tensor(encoded_tensor: Any) -> np.ndarray:
    return deserialize_bytes(encoded_tensor)


# -- auto-complete ------------------------------------------------------------------------------
class ModelConfig:
    """The object `auto_complete_config` receives and returns (Triton's pb_utils.ModelConfig)."""

    _IO_KEYS = {"name", "data_type", "dims", "optional", "is_shape_tensor", "reshape", "label_filename"}

    def __init__(self, model_config: dict | str) -> None:
        self._config = json.loads(model_config) if isinstance(model_config, str) else model_config

    def as_dict(self) -> dict:
        return self._config

    def set_max_batch_size(self, max_batch_size: int) -> None:
        current = int(self._config.get("max_batch_size", 0))
        if current and current > max_batch_size:
            raise ValueError(f"configuration specified max_batch_size {current}, but in auto-complete-config "
                             f"function for model '{self._config.get('name', '')}' specified "
                             f"max_batch_size {max_batch_size}")
        self._config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self) -> None:
        if self._config.get("sequence_batching") or self._config.get("ensemble_scheduling"):
            raise ValueError("Configuration specified scheduling_choice as sequence_batching or "
                             "ensemble_scheduling, but auto-complete-config function for model "
                             f"'{self._config.get('name', '')}' tries to set dynamic_batching")
        self._config.setdefault("dynamic_batching", {})

    def add_input(self, input: dict) -> None:  # noqa: A002 - Triton's parameter name
        self._add_io("input", input)

    def add_output(self, output: dict) -> None:
        self._add_io("output", output)

    def set_model_transaction_policy(self, transaction_policy_dict: dict) -> None:
        if set(transaction_policy_dict) - {"decoupled"}:
            raise ValueError("model transaction policy only takes 'decoupled'")
        self._config.setdefault("model_transaction_policy", {}).update(transaction_policy_dict)

    def _add_io(self, kind: str, io: dict) -> None:
        if not isinstance(io, dict):
            raise ValueError(f"{kind} must be a dict")
        if extra := set(io) - self._IO_KEYS:
            raise ValueError(f"unexpected {kind} keys {sorted(extra)}")
        if "name" not in io:
            raise ValueError(f"{kind} must have a name")
        entries = self._config.setdefault(kind, [])
        for existing in entries:
            if existing.get("name") == io["name"]:
                for key, value in io.items():
                    if key in existing and existing[key] not in (value, "TYPE_INVALID", [], "") and key != "name":
                        raise ValueError(f"{kind} '{io['name']}' has {key} {existing[key]} in the model "
                                         f"configuration, but auto-complete-config sets {value}")
                    existing[key] = value
                return
        entries.append(dict(io))


# -- beyond Triton: one stacked batch per execute ----------------------------------------------------
def batched(fn: Callable[[Any, dict[str, np.ndarray]], dict[str, np.ndarray]]) -> Callable[[Any, list], list]:
    """Decorate `execute(self, inputs) -> outputs` (dicts of name -> ndarray); see the module doc."""

    @functools.wraps(fn)
    def execute(self: Any, requests: list[InferenceRequest]) -> list[InferenceResponse]:
        per_request = [{t.name(): t.as_numpy() for t in r.inputs()} for r in requests]
        adds_dim = not _model_batches
        if adds_dim:
            per_request = [{k: v[np.newaxis] for k, v in d.items()} for d in per_request]
        sizes = [next(iter(d.values())).shape[0] if d else 0 for d in per_request]
        names = list(per_request[0]) if per_request else []
        stacked = {n: per_request[0][n] if len(requests) == 1 else np.concatenate([d[n] for d in per_request])
                   for n in names}
        try:
            outputs = fn(self, stacked)
        except Exception as exc:  # every request of the batch fails with the model's message
            error = TritonError(f"{type(exc).__name__}: {exc}")
            return [InferenceResponse(error=error) for _ in requests]
        responses, start = [], 0
        for size in sizes:
            tensors = [Tensor(n, a[start:start + size][0] if adds_dim else a[start:start + size])
                       for n, a in outputs.items()]
            responses.append(InferenceResponse(tensors))
            start += size
        return responses

    return execute
