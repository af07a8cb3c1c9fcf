"""The TensorRT backend: a serialized engine (model.plan) run with execute_async_v3.

Rules: the only module that imports tensorrt, and only when a plan is loaded, so the registry can
import this module on any host; device memory, streams and copies go through memory/device.py
(backends never import pycuda). One engine per GPU per model version, shared by that GPU's
instances; each instance has its own stream and one execution context per optimization profile it
may use (the config's `instance_group.profile`, default all), created on first use. Per batch:
pick the first profile whose [min, max] holds every input shape, `set_input_shape`, stage inputs
host -> pinned -> device on the instance's stream, run, copy outputs device -> pinned host and
synchronize once. Staging buffers come from the pools and grow on demand; outputs are handed out
as arrays over pinned leases, which go back to the pool when the response is dropped.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.datatype import NUMPY_DTYPE
from ..core.request import InferenceRequest
from ..core.response import InferenceResponse
from ..errors import TritonError, internal, invalid_arg, unavailable, unsupported
from ..memory import device
from . import collect
from .base import Backend, ModelInstance, ModelLocation
from .iospec import IoSpec, add_io, io_spec, outputs_of, shape_str

log = logging.getLogger("triton_asyncio.backends.tensorrt")

NO_GPU = "unable to load TensorRT plan: no CUDA device available"
# tensorrt.DataType member name -> wire datatype (FP8 and INT4 have no Triton type)
TRT_TO_WIRE: dict[str, str] = {
    "FLOAT": "FP32", "HALF": "FP16", "BF16": "BF16", "INT8": "INT8", "INT32": "INT32", "INT64": "INT64",
    "BOOL": "BOOL", "UINT8": "UINT8",
}
_trt_logger: list[Any] = []


def _trt() -> Any:
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError:
        raise invalid_arg("unable to find backend library for backend 'tensorrt', try specifying runtime on "
                          "the model configuration.") from None
    if not _trt_logger:
        _trt_logger.append(trt.Logger(trt.Logger.WARNING))
    return trt


@dataclass(frozen=True, slots=True)
class TrtIo:
    name: str
    is_input: bool
    datatype: str  # wire name, "" when TensorRT's type has no Triton equivalent
    dims: tuple[int, ...]  # -1 for dynamic
    is_shape_tensor: bool
    # per optimization profile (inputs only): (min, max) shapes
    profiles: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = ()


class Engine:
    """A deserialized engine on one GPU and what it says about its IO."""

    def __init__(self, path: str, device_id: int) -> None:
        trt = _trt()
        if not os.path.isfile(path):
            raise unavailable(f"unable to find '{path}' for TensorRT model")
        with open(path, "rb") as f:
            plan = f.read()
        self.device_id = device_id
        with device.activate(device_id):
            self.runtime = trt.Runtime(_trt_logger[0])  # must outlive the engine
            engine = self.runtime.deserialize_cuda_engine(plan)
        if engine is None:  # TensorRT logs the reason; the plan is corrupt or built for another version/GPU
            raise internal(f"unable to load TensorRT plan '{path}': failed to deserialize the engine (corrupt "
                           f"plan, or built by another TensorRT version or for another GPU)")
        self.engine = engine
        self.num_profiles = int(engine.num_optimization_profiles)
        self.io: dict[str, TrtIo] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            profiles: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = ()
            if is_input:
                profiles = tuple(_min_max(engine.get_tensor_profile_shape(name, p)) for p in range(self.num_profiles))
            self.io[name] = TrtIo(name, is_input, TRT_TO_WIRE.get(engine.get_tensor_dtype(name).name, ""),
                                  tuple(int(d) for d in engine.get_tensor_shape(name)),
                                  bool(engine.is_shape_inference_io(name)), profiles)

    @property
    def inputs(self) -> list[TrtIo]:
        return [io for io in self.io.values() if io.is_input]

    @property
    def outputs(self) -> list[TrtIo]:
        return [io for io in self.io.values() if not io.is_input]

    def max_batch_size(self) -> int:
        """0 when some IO has no dynamic first dim; else the largest batch every input's profiles allow."""
        if not self.io or any(not io.dims or io.dims[0] != -1 for io in self.io.values()):
            return 0
        return min((max(hi[0] for _, hi in io.profiles) for io in self.inputs if io.profiles), default=0)


def _min_max(shapes: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    low, _, high = shapes
    return tuple(int(d) for d in low), tuple(int(d) for d in high)


def auto_complete(config: Any, engine: Engine) -> None:
    """max_batch_size, dynamic_batching, inputs and outputs from the engine (spec 4.5, TensorRT)."""
    engine_max = engine.max_batch_size()
    if config.max_batch_size == 0 and engine_max > 0:
        config.max_batch_size = engine_max
    elif config.max_batch_size > engine_max:
        if engine_max == 0:
            raise invalid_arg(f"autofill failed for model '{config.name}': model does not support batching "
                              f"while non-zero max_batch_size is specified")
        raise invalid_arg(f"unable to autofill for '{config.name}': configuration specified max-batch "
                          f"{config.max_batch_size} but TensorRT engine only supports max-batch {engine_max}")
    if config.max_batch_size > 1 and not (config.HasField("dynamic_batching")
                                          or config.HasField("sequence_batching")):
        config.dynamic_batching.SetInParent()
    batching = config.max_batch_size > 0
    for ios, infos in ((config.input, engine.inputs), (config.output, engine.outputs)):
        if len(ios):
            continue
        for info in infos:
            io = add_io(ios, info.name, f"TYPE_{info.datatype}" if info.datatype else "TYPE_INVALID", info.dims,
                        batching)
            if info.is_shape_tensor:
                io.is_shape_tensor = True


def validate(config: Any, engine: Engine) -> None:
    """The config's IO against the engine's: names and datatypes (shapes are checked per request)."""
    name = config.name
    if len(config.input) != len(engine.inputs):
        raise invalid_arg(f"unable to load model '{name}', configuration expects {len(config.input)} inputs, "
                          f"model provides {len(engine.inputs)}")
    for kind, ios in (("input", config.input), ("output", config.output)):
        for spec in (io_spec(io) for io in ios):
            info = engine.io.get(spec.name)
            if info is None or info.is_input != (kind == "input"):
                raise invalid_arg(f"unable to load model '{name}', unexpected {kind} '{spec.name}' in model "
                                  f"configuration, the engine has no such {kind}")
            if info.is_shape_tensor:
                raise unsupported(f"model '{name}': shape tensor '{spec.name}' is not supported by this server")
            if info.datatype != spec.datatype:
                raise invalid_arg(f"unable to load model '{name}', configuration expects datatype "
                                  f"{spec.config_type} for {kind} '{spec.name}', model provides "
                                  f"TYPE_{info.datatype or 'INVALID'}")


class TensorRTBackend(Backend):
    name = "tensorrt"
    default_model_filename = "model.plan"

    def __init__(self, config: Any, location: ModelLocation) -> None:
        super().__init__(config, location)
        self.path = os.path.join(location.version_dir, config.default_model_filename or "model.plan")
        self._engines: dict[int, Engine] = {}
        self._lock = threading.Lock()

    @classmethod
    def auto_complete_config(cls, config: Any, location: ModelLocation) -> None:
        if len(config.input) and len(config.output):
            return
        if not device.available():
            raise unavailable(NO_GPU)
        path = os.path.join(location.version_dir, config.default_model_filename or "model.plan")
        auto_complete(config, Engine(path, 0))

    def engine(self, device_id: int) -> Engine:
        with self._lock:  # instances are created from several threads; deserialize once per GPU
            engine = self._engines.get(device_id)
            if engine is None:
                try:
                    engine = Engine(self.path, device_id)
                except device.DeviceError as exc:
                    raise unavailable(f"unable to load TensorRT plan on GPU {device_id}: {exc}") from None
                validate(self.config, engine)
                self._engines[device_id] = engine
            return engine

    def create_instance(self, instance_name: str, kind: str, device_id: int) -> ModelInstance:
        if not device.available():
            raise unavailable(NO_GPU)
        if kind != "KIND_GPU":
            raise invalid_arg(f"unable to load model '{self.config.name}': TensorRT instances must be "
                              f"KIND_GPU, instance '{instance_name}' is {kind}")
        engine = self.engine(device_id)
        group = instance_name.rsplit("_", 1)[0]
        profiles = _group_profiles(self.config, group, engine.num_profiles)
        try:
            return TrtInstance(instance_name, device_id, engine, self.config, self.location.version, profiles)
        except device.DeviceError as exc:
            raise internal(f"unable to create instance '{instance_name}' on GPU {device_id}: {exc}") from None

    def finalize(self) -> None:
        self._engines.clear()


def _group_profiles(config: Any, group: str, count: int) -> list[int]:
    for g in config.instance_group:
        if g.name == group and len(g.profile):
            try:
                chosen = [int(p) for p in g.profile]
            except ValueError:
                raise invalid_arg(f"unable to parse optimization profile {list(g.profile)} for model "
                                  f"'{config.name}'") from None
            if any(not 0 <= p < count for p in chosen):
                raise invalid_arg(f"can not find optimization profile {list(g.profile)} for model '{config.name}', "
                                  f"the engine has {count}")
            return chosen
    return list(range(max(count, 1)))


class TrtInstance(ModelInstance):
    """One stream, one execution context per allowed profile, device buffers kept between batches."""

    inline_ok = False  # execute blocks on the GPU: never on the event loop

    def __init__(self, name: str, device_id: int, engine: Engine, config: Any, version: int,
                 profiles: list[int]) -> None:
        super().__init__(name, "KIND_GPU", device_id)
        self.engine = engine
        self.model_name = config.name
        self.version = str(version)
        self.batching = config.max_batch_size > 0
        self.outputs: list[IoSpec] = outputs_of(config)
        self.profiles = profiles
        self.stream = device.create_stream(device_id)
        self._contexts: dict[int, Any] = {}
        self._buffers: dict[str, device.DeviceBuffer] = {}

    def execute(self, requests: list[InferenceRequest]) -> list[InferenceResponse]:
        if len(requests) == 1 or not self.batching:
            return [self._respond(r, self._run({n: t.as_numpy() for n, t in r.inputs.items()})) for r in requests]
        sizes = [collect.batch_size(r) for r in requests]
        feeds = {name: collect.gather(requests, name) for name in requests[0].inputs}
        results = {name: collect.scatter(array, sizes) for name, array in self._run(feeds).items()}
        return [self._respond(r, {n: parts[i] for n, parts in results.items()}) for i, r in enumerate(requests)]

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return self._run_on_gpu(feeds)
        except device.DeviceError as exc:  # a CUDA call failed: the batch fails, the instance stays
            raise internal(f"TensorRT model '{self.model_name}' on GPU {self.device_id}: {exc}") from None

    def _run_on_gpu(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        profile = self._pick_profile({n: a.shape for n, a in feeds.items()})
        staged: list[np.ndarray] = []  # pinned inputs must live until the stream is synchronized
        outputs: dict[str, tuple[np.ndarray, tuple[int, ...]]] = {}
        with device.activate(self.device_id):
            ctx = self._context(profile)
            for name, array in feeds.items():
                info = self.engine.io[name]
                array = np.ascontiguousarray(array, dtype=NUMPY_DTYPE[info.datatype])
                if not ctx.set_input_shape(name, array.shape):
                    raise invalid_arg(f"unable to set shape {shape_str(array.shape)} for input '{name}' of "
                                      f"model '{self.model_name}'")
                host = device.pinned_buffer(array.nbytes)
                host[:] = array.reshape(-1).view(np.uint8)
                staged.append(host)
                ptr = self._buffer(name, array.nbytes)
                if array.nbytes:
                    device.copy_htod(self.device_id, ptr, host, self.stream)
                ctx.set_tensor_address(name, ptr)
            for info in self.engine.outputs:
                shape = tuple(int(d) for d in ctx.get_tensor_shape(info.name))
                if any(d < 0 for d in shape):
                    raise unsupported(f"output '{info.name}' of model '{self.model_name}' has a data-dependent "
                                      f"shape, which this server does not support")
                nbytes = int(np.prod(shape, dtype=np.int64)) * NUMPY_DTYPE[info.datatype].itemsize
                ctx.set_tensor_address(info.name, self._buffer(info.name, nbytes))
                outputs[info.name] = (device.pinned_buffer(nbytes), shape)
            if not ctx.execute_async_v3(self.stream.handle):
                raise internal(f"unable to run TensorRT model '{self.model_name}': execute_async_v3 failed")
            for name, (host, _) in outputs.items():
                if host.nbytes:
                    device.copy_dtoh(self.device_id, host, self._buffers[name].ptr, self.stream)
            self.stream.synchronize()
        return {name: host.view(NUMPY_DTYPE[self.engine.io[name].datatype]).reshape(shape)
                for name, (host, shape) in outputs.items()}

    def _pick_profile(self, shapes: dict[str, tuple[int, ...]]) -> int:
        for p in self.profiles:
            if all(_within(shape, self.engine.io[n].profiles[p]) for n, shape in shapes.items()
                   if n in self.engine.io and self.engine.io[n].profiles):
                return p
        desc = ", ".join(f"{n} {shape_str(s)}" for n, s in shapes.items())
        raise invalid_arg(f"request shapes ({desc}) are outside every optimization profile of model "
                          f"'{self.model_name}' on instance '{self.name}'")

    def _context(self, profile: int) -> Any:
        ctx = self._contexts.get(profile)
        if ctx is None:
            ctx = self.engine.engine.create_execution_context()
            if ctx is None:
                raise internal(f"unable to create a TensorRT execution context for '{self.name}'")
            if self.engine.num_profiles > 1 and not ctx.set_optimization_profile_async(profile, self.stream.handle):
                raise internal(f"unable to select optimization profile {profile} for '{self.name}'")
            self._contexts[profile] = ctx
        return ctx

    def _buffer(self, name: str, nbytes: int) -> int:
        """A device buffer of at least `nbytes` for tensor `name`, grown (never shrunk) on demand."""
        buf = self._buffers.get(name)
        if buf is None or buf.size < nbytes:
            if buf is not None:
                self.stream.synchronize()  # the old buffer may still be in use by queued work
                buf.release()
            buf = self._buffers[name] = device.device_buffer(self.device_id, max(nbytes, 1))
        return buf.ptr

    def _respond(self, request: InferenceRequest, arrays: dict[str, np.ndarray]) -> InferenceResponse:
        tensors = [collect.output_tensor(spec, arrays[spec.name], self.batching) for spec in self.outputs]
        return InferenceResponse(self.model_name, self.version, id=request.id, outputs=tensors)

    def finalize(self) -> None:
        try:
            with device.activate(self.device_id):
                self.stream.synchronize()
                for buf in self._buffers.values():
                    buf.release()
        except (TritonError, device.DeviceError) as exc:
            log.warning("releasing instance '%s' failed: %s", self.name, exc)
        self._buffers.clear()
        self._contexts.clear()


def _within(shape: tuple[int, ...], bounds: tuple[tuple[int, ...], tuple[int, ...]]) -> bool:
    low, high = bounds
    return len(shape) == len(low) and all(lo <= d <= hi for d, lo, hi in zip(shape, low, high, strict=True))
