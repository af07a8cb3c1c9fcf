"""Model warmup (`model_warmup` in config.pbtxt): sample requests run on every instance before READY.

Rules: Triton's semantics — each ModelWarmup entry becomes `batch_size` requests of batch 1 (a batch
dimension of 1 is prepended only when max_batch_size > 0), executed together `count` times (0 means
once) directly on each instance's `execute`, synchronously and off the event loop. Any failure,
building the data or running it, raises a TritonError that fails the load.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends.base import ModelInstance
from ..core.datatype import NUMPY_DTYPE, byte_size, config_to_wire, element_count
from ..core.request import InferenceRequest
from ..core.tensor import Tensor, count_bytes_elements, deserialize_bytes
from ..errors import ErrorCode, TritonError, internal, invalid_arg
from ..pb import model_config_pb2

log = logging.getLogger("triton_asyncio.repository")

WARMUP_DIR = "warmup"
SEED = 0  # random_data is reproducible from run to run


@dataclass(slots=True)
class WarmupSample:
    name: str
    tensors: list[Tensor]  # one batch-1 input set, shared by the sample's requests
    batch_size: int
    count: int


def build_samples(config: Any, model_dir: str) -> list[WarmupSample]:
    """Every `model_warmup` entry of a config, its input data generated or read from <model>/warmup/."""
    rng = np.random.default_rng(SEED)
    batching = config.max_batch_size > 0
    samples = []
    for setting in config.model_warmup:
        tensors = [_tensor(name, spec, batching, model_dir, rng) for name, spec in sorted(setting.inputs.items())]
        samples.append(WarmupSample(setting.name, tensors, max(1, setting.batch_size), max(1, setting.count)))
    return samples


def make_requests(config: Any, version: int, sample: WarmupSample) -> list[InferenceRequest]:
    """Fresh requests for one run of a sample (backends may keep state on a request)."""
    return [InferenceRequest(config.name, version, id=f"warmup:{sample.name}",
                             inputs={t.name: Tensor(t.name, t.datatype, list(t.shape), array=t.array)
                                     for t in sample.tensors})
            for _ in range(sample.batch_size)]


def run_warmup(config: Any, version: int, model_dir: str, instances: list[ModelInstance]) -> None:
    """Run every sample `count` times on every instance; raises TritonError on the first failure."""
    if not config.model_warmup:
        return
    samples = build_samples(config, model_dir)
    for instance in instances:
        for sample in samples:
            for i in range(sample.count):
                log.info("model '%s' instance %s is running warmup sample '%s' for iteration %d",
                         config.name, instance.name, sample.name, i + 1)
                _run_once(instance, make_requests(config, version, sample), sample.name)


def _run_once(instance: ModelInstance, requests: list[InferenceRequest], sample_name: str) -> None:
    try:
        responses = instance.execute(requests)
    except TritonError as e:
        raise _sample_failed(sample_name, e.code, e.message) from None
    except Exception as e:  # a backend's own exception type: Triton reports it as INTERNAL
        raise _sample_failed(sample_name, ErrorCode.INTERNAL, str(e)) from None
    for response in responses:
        if response.error is not None:
            raise _sample_failed(sample_name, response.error.code, response.error.message)


def _sample_failed(sample_name: str, code: ErrorCode, message: str) -> TritonError:
    return TritonError(code, f"failed to run warmup sample '{sample_name}': {message}")


def _tensor(name: str, spec: Any, batching: bool, model_dir: str, rng: np.random.Generator) -> Tensor:
    datatype = config_to_wire(model_config_pb2.DataType.Name(spec.data_type))
    if not datatype or datatype not in NUMPY_DTYPE:
        raise invalid_arg(f"warmup setting has invalid data type for input '{name}'")
    dims = list(spec.dims)
    if any(d < 0 for d in dims):
        raise invalid_arg(f"warmup setting expects all variable-size dimensions are specified for input '{name}'")
    kind = spec.WhichOneof("input_data_type")
    if kind == "input_data_file":
        array = _from_file(name, datatype, dims, model_dir, spec.input_data_file)
    elif kind == "random_data" and spec.random_data and datatype != "BYTES":
        array = _random(datatype, dims, rng)
    else:  # zero_data, random_data on BYTES (Triton falls back to zero), or nothing set
        array = _zeros(datatype, dims)
    shape = [1, *dims] if batching else dims
    return Tensor(name, datatype, shape, array=array.reshape(shape))


def _zeros(datatype: str, dims: list[int]) -> np.ndarray:
    if datatype == "BYTES":  # zero-filled length prefixes: every element is an empty string
        array = np.empty(element_count(dims), dtype=np.object_)
        array[:] = [b""] * array.size
        return array
    return np.zeros(dims, dtype=NUMPY_DTYPE[datatype])


def _random(datatype: str, dims: list[int], rng: np.random.Generator) -> np.ndarray:
    dtype = NUMPY_DTYPE[datatype]
    if datatype == "BOOL":
        return rng.integers(0, 2, size=dims).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=dims, dtype=dtype, endpoint=True)
    return rng.random(size=dims).astype(dtype)  # floats in [0, 1): never NaN or inf


def _from_file(name: str, datatype: str, dims: list[int], model_dir: str, filename: str) -> np.ndarray:
    path = os.path.join(model_dir, WARMUP_DIR, filename)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise internal(f"failed to open text file for read {path}: {e.strerror}") from None
    count = element_count(dims)
    if datatype == "BYTES":
        found = count_bytes_elements(data)
        if found != count:
            raise invalid_arg(f"warmup setting expects {count} string elements for input '{name}', but the "
                              f"data provided from {filename} has "
                              f"{'malformed' if found is None else found} elements")
        return deserialize_bytes(data, count)
    expected = byte_size(datatype, dims)
    if len(data) != expected:
        raise invalid_arg(f"warmup setting expects {expected} bytes, but the data provided from {filename} "
                          f"has {len(data)} bytes")
    return np.frombuffer(data, dtype=NUMPY_DTYPE[datatype]).reshape(dims).copy()

