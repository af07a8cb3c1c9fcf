"""inference.GRPCInferenceService (and grpc.health.v1.Health/Check) mapped onto InferenceServer.

Rules: implements handlers.Router; no HTTP/2 here. Handlers take serialized request messages and
return serialized responses; a TritonError becomes an RpcError in `rpc_error` and nowhere else.
ModelInfer answers synchronously when the data plane ran the request at once (no task), else
returns a coroutine. RPCs of features the data plane lacks answer as Triton does with the feature
disabled. `--grpc-restricted-protocol` wraps the handlers of a category in a header check.
"""
from __future__ import annotations

import asyncio
import collections
import re
from collections.abc import AsyncIterator, Awaitable, Callable

from google.protobuf.message import DecodeError

from ...codec import grpc_messages as gm
from ...codec.status import GrpcStatus, grpc_status
from ...core.request import InferenceRequest
from ...errors import ErrorCode, TritonError, internal, invalid_arg, unsupported
from ...pb import grpc_service_pb2 as pb
from ...pb import health_pb2
from ...server import logging_settings
from ...server.inference_server import InferenceServer
from .handlers import Buffer, CallContext, ResponseSink, RpcError, StreamHandler, UnaryHandler

_SERVICE = "/inference.GRPCInferenceService/"
HEALTH_CHECK = b"/grpc.health.v1.Health/Check"
STREAM_INFER = (_SERVICE + "ModelStreamInfer").encode()

_TRUE = pb.ServerLiveResponse(live=True).SerializeToString()  # ServerReady/ModelReady: same bytes
_FALSE = b""
_SERVING = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING).SerializeToString()
_NOT_SERVING = health_pb2.HealthCheckResponse(
    status=health_pb2.HealthCheckResponse.NOT_SERVING).SerializeToString()

_DECOUPLED = "ModelInfer RPC doesn't support models with decoupled transaction policy"
_NAMED_REPOSITORY = "'repository_name' specification is not supported"
_UNSET = object()  # a LogSettings value with no parameter set


def rpc_error(e: TritonError) -> RpcError:
    """The one place a TritonError becomes a gRPC status (Triton's CodeToStatus)."""
    return RpcError(grpc_status(e.code), e.message)


def _parse(cls, buffer: Buffer):
    try:
        return cls.FromString(buffer)
    except DecodeError:
        raise internal(f"failed to parse the {cls.__name__} message") from None


def _guard(handler: Callable) -> UnaryHandler:
    def call(buffer: Buffer, ctx: CallContext):
        try:
            return handler(buffer, ctx)
        except TritonError as e:
            raise rpc_error(e) from None
    return call


async def _control(call: Awaitable[None]) -> bytes:
    """A model-control RPC: its (empty) response once the load or unload finished."""
    try:
        await call
    except TritonError as e:
        raise rpc_error(e) from None
    return b""


def _restrict_unary(handler: UnaryHandler, header: str, value: str) -> UnaryHandler:
    message = f"This protocol is restricted, expecting header '{header}'"

    def call(buffer: Buffer, ctx: CallContext):
        if ctx.header(header) != value:
            raise RpcError(GrpcStatus.UNAVAILABLE, message)
        return handler(buffer, ctx)
    return call


def _restrict_stream(handler: StreamHandler, header: str, value: str) -> StreamHandler:
    message = f"This protocol is restricted, expecting header '{header}'"

    async def call(messages: AsyncIterator[Buffer], sink: ResponseSink, ctx: CallContext) -> None:
        if ctx.header(header) != value:
            raise RpcError(GrpcStatus.UNAVAILABLE, message)
        await handler(messages, sink, ctx)
    return call


class GrpcService:
    """The Router the gRPC transport dispatches to; one per server."""

    def __init__(self, server: InferenceServer, *, header_forward_pattern: str = "",
                 restricted: tuple[tuple[str, str, str], ...] = ()) -> None:
        self.server = server
        self._forward = re.compile(header_forward_pattern) if header_forward_pattern else None
        self._metadata: bytes | None = None
        self._configs: dict[tuple[str, int], tuple[object, bytes]] = {}
        self._model_metadata: dict[tuple[str, int], tuple[object, list[str], bytes]] = {}
        keys = {category: (header.lower(), value) for category, header, value in restricted}
        self._unary: dict[bytes, UnaryHandler] = {}
        for name, category, handler in self._unary_table():
            call = _guard(handler)
            if category in keys:
                call = _restrict_unary(call, *keys[category])
            path = HEALTH_CHECK if name == "Check" else (_SERVICE + name).encode()
            self._unary[path] = call
        stream: StreamHandler = self._model_stream_infer
        if "inference" in keys:
            stream = _restrict_stream(stream, *keys["inference"])
        self._stream: dict[bytes, StreamHandler] = {STREAM_INFER: stream}

    # -- Router ------------------------------------------------------------------------------
    def unary(self, path: bytes) -> UnaryHandler | None:
        return self._unary.get(path)

    def stream(self, path: bytes) -> StreamHandler | None:
        return self._stream.get(path)

    def _unary_table(self) -> list[tuple[str, str, Callable]]:
        """(RPC name, restricted-protocol category, handler)."""
        return [
            ("ServerLive", "health", self._server_live), ("ServerReady", "health", self._server_ready),
            ("ModelReady", "health", self._model_ready), ("Check", "health", self._health_check),
            ("ServerMetadata", "metadata", self._server_metadata),
            ("ModelMetadata", "metadata", self._model_metadata_rpc),
            ("ModelConfig", "model-config", self._model_config),
            ("ModelInfer", "inference", self._model_infer),
            ("ModelStatistics", "statistics", self._model_statistics),
            ("RepositoryIndex", "model-repository", self._repository_index),
            ("RepositoryModelLoad", "model-repository", self._repository_model_load),
            ("RepositoryModelUnload", "model-repository", self._repository_model_unload),
            ("SystemSharedMemoryStatus", "shared-memory", self._system_shm_status),
            ("SystemSharedMemoryRegister", "shared-memory", self._system_shm_register),
            ("SystemSharedMemoryUnregister", "shared-memory", self._system_shm_unregister),
            ("CudaSharedMemoryStatus", "shared-memory", self._cuda_shm_status),
            ("CudaSharedMemoryRegister", "shared-memory", self._cuda_shm_register),
            ("CudaSharedMemoryUnregister", "shared-memory", self._cuda_shm_unregister),
            ("TraceSetting", "trace", self._trace_setting),
            ("LogSettings", "logging", self._log_settings),
        ]

    # -- health ------------------------------------------------------------------------------
    def _server_live(self, buffer: Buffer, ctx: CallContext) -> bytes:
        return _TRUE if self.server.live() else _FALSE

    def _server_ready(self, buffer: Buffer, ctx: CallContext) -> bytes:
        return _TRUE if self.server.ready() else _FALSE

    def _model_ready(self, buffer: Buffer, ctx: CallContext) -> bytes:
        req = _parse(pb.ModelReadyRequest, buffer)
        return _TRUE if self.server.model_ready(req.name, gm.parse_version(req.version)) else _FALSE

    def _health_check(self, buffer: Buffer, ctx: CallContext) -> bytes:
        _parse(health_pb2.HealthCheckRequest, buffer)  # `service` is ignored, as Triton does
        return _SERVING if self.server.ready() else _NOT_SERVING

    # -- metadata, config, statistics, repository --------------------------------------------
    def _server_metadata(self, buffer: Buffer, ctx: CallContext) -> bytes:
        if self._metadata is None:
            s = self.server
            self._metadata = gm.server_metadata(s.server_id, s.version, list(s.extensions))
        return self._metadata

    def _model_metadata_rpc(self, buffer: Buffer, ctx: CallContext) -> bytes:
        req = _parse(pb.ModelMetadataRequest, buffer)
        name, version = req.name, gm.parse_version(req.version)
        model = self.server.model(name, version)
        versions = self.server.model_versions(name, version)
        cached = self._model_metadata.get((name, version))
        if cached is not None and cached[0] is model and cached[1] == versions:
            return cached[2]
        spec, config = model.spec, model.config
        batch = [-1] if spec.max_batch_size > 0 else []
        body = gm.model_metadata(name, versions, config.platform or config.backend,
                                 [(t.name, t.datatype, batch + list(t.dims)) for t in spec.inputs.values()],
                                 [(t.name, t.datatype, batch + list(t.dims)) for t in spec.outputs.values()])
        self._model_metadata[(name, version)] = (model, versions, body)
        return body

    def _model_config(self, buffer: Buffer, ctx: CallContext) -> bytes:
        req = _parse(pb.ModelConfigRequest, buffer)
        model = self.server.model(req.name, gm.parse_version(req.version))
        key = (model.name, model.version)
        cached = self._configs.get(key)
        if cached is None or cached[0] is not model:
            cached = self._configs[key] = (model, gm.model_config(model.config))
        return cached[1]

    def _model_statistics(self, buffer: Buffer, ctx: CallContext) -> bytes:
        req = _parse(pb.ModelStatisticsRequest, buffer)
        models = self.server.statistics(req.name, gm.parse_version(req.version))
        return gm.model_statistics([(m.name, m.version_str, m.stats) for m in models])

    def _repository_index(self, buffer: Buffer, ctx: CallContext) -> bytes:
        req = _parse(pb.RepositoryIndexRequest, buffer)
        if req.repository_name:
            raise unsupported(_NAMED_REPOSITORY)
        return gm.repository_index(self.server.repository_index(req.ready))

    def _repository_model_load(self, buffer: Buffer, ctx: CallContext) -> Awaitable[bytes]:
        req = _parse(pb.RepositoryModelLoadRequest, buffer)
        if req.repository_name:
            raise unsupported(_NAMED_REPOSITORY)
        for key, p in req.parameters.items():
            kind = p.WhichOneof("parameter_choice")
            if key == "config" and kind != "string_param":
                raise TritonError(ErrorCode.INVALID_ARG,
                                  f"invalid value type for load parameter '{key}', expected string_param.")
            if key.startswith("file:") and kind != "bytes_param":
                raise TritonError(ErrorCode.INVALID_ARG,
                                  f"invalid value type for load parameter '{key}', expected bytes_param.")
            if key != "config" and not key.startswith("file:"):
                raise TritonError(ErrorCode.INVALID_ARG, f"unrecognized load parameter '{key}'.")
        config = req.parameters["config"].string_param if "config" in req.parameters else None
        files = {key[len("file:"):]: p.bytes_param for key, p in req.parameters.items() if key.startswith("file:")}
        return _control(self.server.load_model(req.model_name, config, files))

    def _repository_model_unload(self, buffer: Buffer, ctx: CallContext) -> Awaitable[bytes]:
        req = _parse(pb.RepositoryModelUnloadRequest, buffer)
        if req.repository_name:
            raise unsupported(_NAMED_REPOSITORY)
        p = req.parameters.get("unload_dependents")
        if p is not None and p.WhichOneof("parameter_choice") != "bool_param":
            raise TritonError(ErrorCode.INVALID_ARG,
                              "invalid value type for 'unload_dependents' parameter, expected bool_param.")
        return _control(self.server.unload_model(req.model_name, p is not None and p.bool_param))

    # -- features that come later: answered as Triton does with them disabled ----------------
    def _system_shm_status(self, buffer: Buffer, ctx: CallContext) -> bytes:
        req = _parse(pb.SystemSharedMemoryStatusRequest, buffer)
        out = pb.SystemSharedMemoryStatusResponse()
        for r in self.server.shm.status("system", req.name):
            entry = out.regions[r.name]
            entry.name, entry.key, entry.offset, entry.byte_size = r.name, r.key, r.offset, r.byte_size
        return out.SerializeToString()

    def _system_shm_register(self, buffer: Buffer, ctx: CallContext) -> bytes:
        req = _parse(pb.SystemSharedMemoryRegisterRequest, buffer)
        self.server.shm.register_system(req.name, req.key, req.offset, req.byte_size)
        return b""

    def _system_shm_unregister(self, buffer: Buffer, ctx: CallContext) -> bytes:
        req = _parse(pb.SystemSharedMemoryUnregisterRequest, buffer)
        self.server.shm.unregister("system", req.name)
        return b""

    def _cuda_shm_status(self, buffer: Buffer, ctx: CallContext) -> bytes:
        req = _parse(pb.CudaSharedMemoryStatusRequest, buffer)
        out = pb.CudaSharedMemoryStatusResponse()
        for r in self.server.shm.status("cuda", req.name):
            entry = out.regions[r.name]
            entry.name, entry.device_id, entry.byte_size = r.name, r.device_id, r.byte_size
        return out.SerializeToString()

    def _cuda_shm_register(self, buffer: Buffer, ctx: CallContext) -> bytes:
        req = _parse(pb.CudaSharedMemoryRegisterRequest, buffer)
        self.server.shm.register_cuda(req.name, req.raw_handle, req.device_id, req.byte_size)
        return b""

    def _cuda_shm_unregister(self, buffer: Buffer, ctx: CallContext) -> bytes:
        req = _parse(pb.CudaSharedMemoryUnregisterRequest, buffer)
        self.server.shm.unregister("cuda", req.name)
        return b""

    def _trace_setting(self, buffer: Buffer, ctx: CallContext) -> bytes:
        """No settings: read. An empty value list clears (null in JSON); trace_level keeps its
        list, every other setting its first value."""
        req = _parse(pb.TraceSettingRequest, buffer)
        model = req.model_name
        if model and not self.server.manager.ready_versions(model):
            raise invalid_arg(f"Request for unknown model : {model}")
        tracer = self.server.tracer
        if not req.settings:
            settings = tracer.settings(model)
        else:
            body = {k: (None if not v.value else list(v.value) if k == "trace_level" else v.value[0])
                    for k, v in req.settings.items()}
            settings = tracer.update(body, model)
        resp = pb.TraceSettingResponse()
        for key, value in settings.items():
            resp.settings[key].value.extend(value if isinstance(value, list) else [value])
        return resp.SerializeToString()

    def _log_settings(self, buffer: Buffer, ctx: CallContext) -> bytes:
        req = _parse(pb.LogSettingsRequest, buffer)
        if req.settings:
            # a value of the wrong kind (or none) must fail the type check, not mean "no change"
            settings = logging_settings.update({k: getattr(v, v.WhichOneof("parameter_choice") or "", _UNSET)
                                                for k, v in req.settings.items()})
        else:
            settings = logging_settings.settings()
        resp = pb.LogSettingsResponse()
        for key, value in settings.items():
            kind = ("bool_param" if isinstance(value, bool) else
                    "uint32_param" if isinstance(value, int) else "string_param")
            setattr(resp.settings[key], kind, value)
        return resp.SerializeToString()

    # -- inference (hot path) ----------------------------------------------------------------
    def _model_infer(self, buffer: Buffer, ctx: CallContext) -> bytes | Awaitable[bytes]:
        msg = gm.parse_infer(buffer)
        model, request = self.decode(msg, ctx)
        response = self.server.prepare(model, request)
        if response is None:
            return self._infer_later(model, request)
        return gm.encode_infer_response(response, request, model.labels, model.spec.max_batch_size)

    async def _infer_later(self, model, request: InferenceRequest) -> bytes:
        try:
            response = await self.server.infer_prepared(model, request)
            return gm.encode_infer_response(response, request, model.labels, model.spec.max_batch_size)
        except TritonError as e:
            raise rpc_error(e) from None

    def decode(self, msg: pb.ModelInferRequest, ctx: CallContext, *, stream: bool = False):
        """The model (Triton's checks: version string, model, decoupled) and the request."""
        version = gm.parse_version(msg.model_version)
        model = self.server.model(msg.model_name, version)
        if model.spec.decoupled and not stream:
            raise unsupported(_DECOUPLED)
        request = gm.decode_infer(msg, version)
        if self._forward is not None:
            search = self._forward.search
            for key, value in ctx.metadata:
                if search(key):
                    request.parameters[key] = value
        return model, request

    async def _model_stream_infer(self, messages: AsyncIterator[Buffer], sink: ResponseSink,
                                  ctx: CallContext) -> None:
        fail_fast = (ctx.header("triton_grpc_error") or "").lower() == "true"
        await InferStream(self, sink, ctx, fail_fast).run(messages)


class _Failure:
    """A stream request that failed: written as `error_message`, or ends the stream (fail fast)."""

    __slots__ = ("error", "request_id", "model_name", "model_version")

    def __init__(self, error: TritonError, request_id: str, model_name: str = "",
                 model_version: str | None = None) -> None:
        self.error, self.request_id = error, request_id
        self.model_name, self.model_version = model_name, model_version


class InferStream:
    """One ModelStreamInfer call. Requests run concurrently and reach the scheduler in arrival
    order; responses leave in that order (Triton's per-stream response queue). An error becomes
    an `error_message` response and the stream goes on, unless the client opened the stream with
    `triton_grpc_error: true`: then the first error, in order, ends the call with its status.
    A decoupled model's responses bypass the queue: each is written as it is produced.
    Ownership: each request is owned by its task (or the synchronous path) until its entry in
    `queue` is written, or its decoupled stream ended; on exit every unfinished task is cancelled."""

    def __init__(self, service: GrpcService, sink: ResponseSink, ctx: CallContext, fail_fast: bool) -> None:
        self.service, self.sink, self.ctx, self.fail_fast = service, sink, ctx, fail_fast
        self.queue: collections.deque = collections.deque()  # bytes | _Failure | asyncio.Task
        self.tasks: set[asyncio.Task] = set()
        self.streams: set[asyncio.Task] = set()  # decoupled requests still producing responses
        self.unstarted = 0  # tasks created whose request has not reached the data plane yet
        self.reading = True
        self.done: asyncio.Future | None = None

    async def run(self, messages: AsyncIterator[Buffer]) -> None:
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        reader = loop.create_task(self._read(messages))
        reader.add_done_callback(self._reader_done)
        try:
            await self.done
        finally:
            reader.cancel()
            for task in list(self.tasks) + list(self.streams):
                task.cancel()

    async def _read(self, messages: AsyncIterator[Buffer]) -> None:
        async for buffer in messages:
            if self.done.done():
                return
            entry = self._start(buffer)
            if entry is not None:
                self.queue.append(entry)
            self._flush()
        self.reading = False
        self._flush()

    def _reader_done(self, reader: asyncio.Task) -> None:
        if not reader.cancelled() and reader.exception() is not None:
            self._finish(reader.exception())

    def _start(self, buffer: Buffer):
        """The response bytes at once, a _Failure, or the task that will produce one of them."""
        request_id = ""
        try:
            msg = gm.parse_infer(buffer)
            request_id = msg.id
            model, request = self.service.decode(msg, self.ctx, stream=True)
            if model.spec.decoupled:
                self._stream_decoupled(model, request, msg.model_version)
                return None
            if self.unstarted:  # an earlier request still waits for its task: keep arrival order
                return self._spawn(model, request, msg.model_version, prepared=False)
            response = self.service.server.prepare(model, request)
            if response is None:
                return self._spawn(model, request, msg.model_version, prepared=True)
            return gm.encode_stream_response(response, request, model.labels, model.spec.max_batch_size)
        except TritonError as e:
            return _Failure(e, request_id)

    def _spawn(self, model, request: InferenceRequest, version_text: str, *, prepared: bool) -> asyncio.Task:
        self.unstarted += 1
        task = asyncio.get_running_loop().create_task(self._infer(model, request, version_text, prepared))
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    async def _infer(self, model, request: InferenceRequest, version_text: str, prepared: bool):
        self.unstarted -= 1
        server = self.service.server
        try:
            response = None if prepared else server.prepare(model, request)
        except TritonError as e:
            return _Failure(e, request.id)
        try:
            if response is None:
                response = await server.infer_prepared(model, request)
            return gm.encode_stream_response(response, request, model.labels, model.spec.max_batch_size)
        except TritonError as e:
            return _Failure(e, request.id, request.model_name, version_text)

    def _stream_decoupled(self, model, request: InferenceRequest, version_text: str) -> None:
        task = asyncio.get_running_loop().create_task(self._decoupled(model, request, version_text))
        self.streams.add(task)
        task.add_done_callback(self._stream_done)

    async def _decoupled(self, model, request: InferenceRequest, version_text: str) -> None:
        """Write each response of a decoupled request as it comes, with `triton_final_response`."""
        labels, max_batch = model.labels, model.spec.max_batch_size
        try:
            async for response, final in self.service.server.infer_stream(model, request):
                if response is None:
                    if not (final and request.empty_final):
                        continue
                    data = gm.encode_stream_empty_final(request.id, request.model_name, version_text)
                elif response.error is not None:
                    if self._failed(response.error):
                        return
                    data = gm.encode_stream_error(response.error.message, request.id, request.model_name,
                                                  version_text)
                else:
                    try:
                        data = gm.encode_stream_response(response, request, labels, max_batch, final=final)
                    except TritonError as e:
                        if self._failed(e):
                            return
                        data = gm.encode_stream_error(e.message, request.id, request.model_name, version_text)
                if self.sink.closed:
                    self._finish(None)
                    return
                self.sink.send(data)
                # a decoupled model may answer without end: stop taking its responses while the
                # client is not reading them (they wait in the server's queue, not the socket's)
                await self.sink.drain()
        except TritonError as e:
            if not self._failed(e) and not self.sink.closed:
                self.sink.send(gm.encode_stream_error(e.message, request.id, request.model_name, version_text))

    def _failed(self, error: TritonError) -> bool:
        """Whether this error ends the call (the client asked for real gRPC errors)."""
        if self.fail_fast:
            self._finish(rpc_error(error))
        return self.fail_fast

    def _stream_done(self, task: asyncio.Task) -> None:
        self.streams.discard(task)
        if task.cancelled():
            return
        if task.exception() is not None:
            self._finish(task.exception())
            return
        self._flush()

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled():
            self._flush()

    def _flush(self) -> None:
        """Write every finished entry at the head of the queue, in request order."""
        queue = self.queue
        while queue:
            head = queue[0]
            if isinstance(head, asyncio.Task):
                if not head.done():
                    return
                if head.cancelled() or head.exception() is not None:
                    self._finish(head.exception() if not head.cancelled() else asyncio.CancelledError())
                    return
                head = head.result()
            queue.popleft()
            if type(head) is _Failure:
                if self.fail_fast:
                    self._finish(rpc_error(head.error))
                    return
                head = gm.encode_stream_error(head.error.message, head.request_id, head.model_name,
                                              head.model_version)
            if self.sink.closed:
                self._finish(None)
                return
            self.sink.send(head)
        if not self.reading and not self.streams:
            self._finish(None)

    def _finish(self, error: BaseException | None) -> None:
        if self.done is not None and not self.done.done():
            if error is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(error)
