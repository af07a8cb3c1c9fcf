"""The one data plane: every frontend (HTTP, gRPC) calls this and holds no logic it lacks.

Rules: owns the server state, the repository manager and (later) the shared-memory registries;
speaks core objects and TritonError only — never HTTP or gRPC statuses.
"""
from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from .. import TRITON_VERSION
from ..core.request import InferenceRequest, RequestState
from ..core.response import InferenceResponse
from ..core.tensor import Tensor
from ..errors import ErrorCode, TritonError, internal, invalid_arg, unavailable
from ..memory.shm_registry import ShmRegistry
from ..repository import control
from ..repository.manager import RepositoryManager
from ..repository.model import Model
from .response_cache import ResponseCache, request_key
from .trace import TracedRequest, TraceManager
from .validate import validate_request

log = logging.getLogger("triton_asyncio.server")

EXTENSIONS = (
    "classification", "sequence", "model_repository", "model_repository(unload_dependents)",
    "schedule_policy", "model_configuration", "system_shared_memory", "cuda_shared_memory",
    "binary_tensor_data", "parameters", "statistics", "trace", "logging",
)


class ServerState(enum.Enum):
    INITIALIZING = "INITIALIZING"
    READY = "READY"
    FAILED_TO_INITIALIZE = "FAILED_TO_INITIALIZE"
    EXITING = "EXITING"


class InferenceServer:
    def __init__(self, manager: RepositoryManager, *, server_id: str = "triton",
                 strict_readiness: bool = True, response_cache: ResponseCache | None = None,
                 shm: ShmRegistry | None = None, model_control_mode: str = "none",
                 tracer: TraceManager | None = None) -> None:
        self.manager = manager
        self.model_control_mode = model_control_mode  # "none" | "poll" | "explicit"
        manager.request_validator = validate_request
        self.server_id = server_id
        self.version = TRITON_VERSION
        self.extensions = EXTENSIONS
        self.strict_readiness = strict_readiness
        self.state = ServerState.INITIALIZING
        self.response_cache = response_cache
        # shared-memory regions clients registered (system; CUDA through the device layer)
        self.shm = shm if shm is not None else ShmRegistry(enabled=False)
        # /v2/trace/setting; `tracer.active` is the one check an untraced request pays
        self.tracer = tracer if tracer is not None else TraceManager()
        # --exit-grace-secs: after SIGTERM, not ready (orchestrators stop routing) but serving
        self.exit_grace = False

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Let backend threads (Python-backend BLS) call back into this server on `loop`."""
        self.manager.caller.bind(lambda coro: asyncio.run_coroutine_threadsafe(coro, loop),
                                 self._infer_by_name, self._stream_by_name)

    async def _infer_by_name(self, request: InferenceRequest) -> InferenceResponse:
        model = self.model(request.model_name, request.model_version)
        if model.spec.decoupled:
            raise invalid_arg(f"Model '{model.name}' is decoupled: call it with a response stream")
        return await self.infer(model, request)

    def _stream_by_name(self, request: InferenceRequest) -> AsyncIterator[tuple[InferenceResponse | None, bool]]:
        return self.infer_stream(self.model(request.model_name, request.model_version), request)

    # -- health ------------------------------------------------------------------------------
    def live(self) -> bool:
        if self.state is ServerState.EXITING:
            raise unavailable("Server exiting")
        return self.state is ServerState.READY

    def ready(self) -> bool:
        if not self.live() or self.exit_grace:
            return False
        return not self.strict_readiness or self.manager.all_ready()

    def _check_ready(self) -> None:
        if self.state is not ServerState.READY and self.state is not ServerState.EXITING:
            raise unavailable("Server not ready")

    # -- models ------------------------------------------------------------------------------
    def model(self, name: str, version: int = -1) -> Model:
        """The READY model version a request addresses; Triton's 'unknown model' errors otherwise."""
        return self.manager.resolve(name, version)

    def model_ready(self, name: str, version: int = -1) -> bool:
        self._check_ready()
        return self.manager.resolve(name, version).is_healthy()

    def model_versions(self, name: str, version: int) -> list[str]:
        """Versions reported by model metadata: the one asked for, or every READY one."""
        if version >= 0:
            return [str(version)]
        return [m.version_str for m in self.manager.ready_versions(name)]

    def statistics(self, name: str = "", version: int = -1) -> list[Model]:
        if not name:
            return [m for n in sorted(self.manager.models) for m in self.manager.ready_versions(n)]
        models = self.manager.ready_versions(name)
        if not models:
            raise invalid_arg(f"requested model '{name}' is not available")
        if version >= 0:
            models = [m for m in models if m.version == version]
            if not models:
                raise invalid_arg(f"requested model version is not available for model '{name}'")
        return models

    def repository_index(self, ready_only: bool = False) -> list[tuple[str, Any, Any, str]]:
        if self.model_control_mode == "explicit":
            self.manager.scan()  # Triton polls the repository for the index: new directories show
        return self.manager.index(ready_only)

    # -- model control (explicit mode) -------------------------------------------------------
    def _check_explicit(self) -> None:
        if self.model_control_mode != "explicit":
            raise unavailable("explicit model load / unload is not allowed if polling is enabled")

    async def load_model(self, name: str, config: str | None = None,
                         files: dict[str, bytes] | None = None) -> None:
        """Load or reload a model, returning when it finished; Triton's 400 lists what failed."""
        self._check_explicit()
        override = control.make_override(name, config, files or {})
        # shielded: a client that disconnects must not leave the model half loaded
        errors = await asyncio.shield(self.manager.load_async(name, override))
        if errors:
            raise invalid_arg(f"load failed for model '{name}': " + "".join(f"{e};\n" for e in errors))

    async def unload_model(self, name: str, unload_dependents: bool = False) -> None:
        """Unload a model after its in-flight requests finish; an unknown model is no error."""
        self._check_explicit()
        await asyncio.shield(self.manager.unload_async(name, unload_dependents))

    # -- inference (hot path) ----------------------------------------------------------------
    def prepare(self, model: Model, request: InferenceRequest) -> InferenceResponse | None:
        """Validate; then, when the model can run it at once on the loop, do so and return the
        response. None means the caller must `await infer_prepared(...)`."""
        if self.tracer.active:
            return self._prepare_traced(model, request)
        return self._prepare(model, request)

    def _prepare_traced(self, model: Model, request: InferenceRequest) -> InferenceResponse | None:
        """prepare() while tracing is on: sample the request; a sampled one that finished at once
        (or failed) ends its trace here, else infer_prepared ends it."""
        traced = self.tracer.start(request, model.name, model.version)
        try:
            response = self._prepare(model, request)
        except BaseException:
            if traced:
                self.tracer.end(request)
            raise
        if traced and response is not None:
            self.tracer.end(request)
        return response

    def _admit(self, model: Model, request: InferenceRequest) -> None:
        """Inputs in shared memory resolved, then the request checked against the model."""
        if request.shm_inputs:
            self._resolve_shm_inputs(request)
        validate_request(request, model.spec)

    def _prepare(self, model: Model, request: InferenceRequest) -> InferenceResponse | None:
        self._admit(model, request)
        if self.response_cache is not None and model.config.response_cache.enable:
            return None  # infer_prepared looks the response up
        response = model.try_infer_now(request)
        if response is not None and request.shm_outputs:
            self._write_shm_outputs(request, response)
        return response

    async def infer_prepared(self, model: Model, request: InferenceRequest) -> InferenceResponse:
        try:
            if self.response_cache is not None and model.config.response_cache.enable:
                response = await self._infer_cached(model, request, self.response_cache)
            else:
                response = await model.infer(request)
            if request.shm_outputs:
                self._write_shm_outputs(request, response)
            return response
        finally:
            if type(request) is TracedRequest:
                self.tracer.end(request)

    # -- shared memory -----------------------------------------------------------------------
    def _resolve_shm_inputs(self, request: InferenceRequest) -> None:
        """Inputs placed in registered regions become zero-copy views of those regions (a CUDA
        region's bytes are copied to pinned host memory: every backend takes host inputs)."""
        view = self.shm.read if self.shm.cuda_regions else self.shm.view
        for name, ref in request.shm_inputs.items():  # type: ignore[union-attr]
            request.inputs[name] = Tensor(name, ref.datatype, list(ref.shape),
                                          raw=view(ref.region, ref.offset, ref.byte_size))
        request.shm_inputs = None

    def _write_shm_outputs(self, request: InferenceRequest, response: InferenceResponse) -> None:
        """Copy each output the client placed in a region straight into it (one copy)."""
        if response.error is not None or request.outputs is None:
            return
        for tensor in response.outputs:
            wanted = request.outputs.get(tensor.name)
            if wanted is None or wanted.shm is None:
                continue
            ref = wanted.shm
            raw = tensor.as_bytes()
            size = raw.nbytes if isinstance(raw, memoryview) else len(raw)
            if size > ref.byte_size:
                raise internal(f"shared memory size specified with the request for output '{tensor.name}' "
                               f"({ref.byte_size} bytes) should be at least {size} bytes to hold the results")
            if self.shm.cuda_regions:
                self.shm.write(ref.region, ref.offset, ref.byte_size, raw)
            else:
                self.shm.view(ref.region, ref.offset, ref.byte_size)[:size] = raw

    # -- response cache ----------------------------------------------------------------------
    async def _infer_cached(self, model: Model, request: InferenceRequest,
                            cache: ResponseCache) -> InferenceResponse:
        """Hit: the cached outputs, no scheduling. Miss: run, then store a successful response."""
        started = time.perf_counter_ns()
        key = request_key(model.name, model.version, request)
        response = cache.lookup(key, model.name, model.version_str, request.id)
        looked_up = time.perf_counter_ns()
        stats = model.stats
        if response is not None:
            stats.cache_hit.add(looked_up - started)
            stats.success.add(looked_up - started)
            stats.queue.add(0)
            stats.last_inference_ms = time.time_ns() // 1_000_000
            return response
        response = await model.infer(request)
        inserted = time.perf_counter_ns()
        if response.error is None:
            cache.insert(key, response)
        stats.cache_miss.add(looked_up - started + time.perf_counter_ns() - inserted)
        return response

    async def infer(self, model: Model, request: InferenceRequest) -> InferenceResponse:
        """Validate against the model's spec, then run it; ownership passes to the scheduler."""
        response = self.prepare(model, request)
        return response if response is not None else await self.infer_prepared(model, request)

    async def infer_stream(self, model: Model,
                           request: InferenceRequest) -> AsyncIterator[tuple[InferenceResponse | None, bool]]:
        """Every response to one request, as (response, final) pairs ending with a final one.

        A non-decoupled model yields its one response. A decoupled model's backend sends through
        `request.response_sink`, from any thread, while (and after) its execute runs; a response
        may be None with final set (the empty final response). Errors before the first response
        raise TritonError; an error response is yielded like any other.
        """
        if not model.spec.decoupled:
            yield await self.infer(model, request), True
            return
        self._admit(model, request)
        sink = _QueueSink(asyncio.get_running_loop())
        request.response_sink = sink
        task = asyncio.ensure_future(model.infer(request))
        task.add_done_callback(sink.on_execute_done)
        try:
            while True:
                item = await sink.queue.get()
                if isinstance(item, BaseException):
                    raise item
                if request.shm_outputs and item[0] is not None:
                    self._write_shm_outputs(request, item[0])
                yield item
                if item[1]:
                    return
        finally:
            if not task.done():
                request.cancelled = True
                if request.state is RequestState.PENDING:  # still queued: drop it before it executes
                    task.cancel()

    # -- life cycle --------------------------------------------------------------------------
    async def stop(self) -> None:
        self.state = ServerState.EXITING
        await self.manager.unload_all()  # in-flight executes may still make BLS calls
        self.manager.caller.bind(None, None, None)
        self.shm.close()
        self.tracer.close()


class _QueueSink:
    """A decoupled request's responses, handed from any thread to the task streaming them."""

    __slots__ = ("loop", "queue", "_final")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self._final = False

    def send(self, response: InferenceResponse | None, final: bool) -> None:
        self.loop.call_soon_threadsafe(self._put, (response, final))

    def fail(self, error: TritonError) -> None:
        self.loop.call_soon_threadsafe(self._put, error)

    def _put(self, item: Any) -> None:
        if self._final:
            return  # nothing may follow the final response
        self._final = isinstance(item, BaseException) or item[1]
        self.queue.put_nowait(item)

    def on_execute_done(self, task: asyncio.Future) -> None:
        # An execute that failed (or a request rejected in the queue) ends the stream with its error.
        if task.cancelled():
            self._put(TritonError(ErrorCode.CANCELLED, "request cancelled"))
        elif (e := task.exception()) is not None:
            self._put(e if isinstance(e, TritonError) else TritonError(ErrorCode.INTERNAL, str(e)))
