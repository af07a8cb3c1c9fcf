"""KServe v2 HTTP endpoints: route -> codec -> InferenceServer -> codec -> HttpResponse.

Rules: no inference logic here; a TritonError becomes `codec.status.http_status(code)` plus
`{"error": msg}` in `_error` and nowhere else. Sync endpoints return an HttpResponse at once
(no task); only infer awaits. `--http-restricted-api` wraps the handlers of a category (the
categories of gRPC's restricted protocols) in a header check answering 403.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from ...codec import compression, generate_json, kserve_json, shm_json
from ...codec.routes import Endpoint, RouteError, route
from ...codec.status import error_body, http_status
from ...errors import ErrorCode, TritonError, invalid_arg
from ...repository.config import config_json_body
from ...server import logging_settings
from ...server.inference_server import InferenceServer
from .messages import HttpRequest, HttpResponse

log = logging.getLogger("triton_asyncio.http")

_JSON = [(b"content-type", b"application/json")]
_OCTET = b"application/octet-stream"
_EMPTY_OK = HttpResponse(200, [(b"content-type", b"text/plain")], [])
_EMPTY_400 = HttpResponse(400, [(b"content-type", b"text/plain")], [])

_ROUTES_MAX = 1024  # routed targets remembered; the table starts afresh when full
Handler = Callable[[HttpRequest, dict], "HttpResponse | Awaitable[HttpResponse]"]

# --http-restricted-api categories (as gRPC's --grpc-restricted-protocol groups its RPCs)
CATEGORIES: dict[Endpoint, str] = {
    Endpoint.HEALTH_LIVE: "health", Endpoint.HEALTH_READY: "health", Endpoint.MODEL_READY: "health",
    Endpoint.SERVER_METADATA: "metadata", Endpoint.MODEL_METADATA: "metadata",
    Endpoint.INFER: "inference", Endpoint.GENERATE: "inference", Endpoint.GENERATE_STREAM: "inference",
    Endpoint.MODEL_CONFIG: "model-config",
    Endpoint.MODEL_STATS: "statistics", Endpoint.ALL_STATS: "statistics",
    Endpoint.REPO_INDEX: "model-repository", Endpoint.REPO_LOAD: "model-repository",
    Endpoint.REPO_UNLOAD: "model-repository", Endpoint.REPO_NAMED: "model-repository",
    Endpoint.SYS_SHM_STATUS: "shared-memory", Endpoint.SYS_SHM_REGISTER: "shared-memory",
    Endpoint.SYS_SHM_UNREGISTER: "shared-memory", Endpoint.CUDA_SHM_STATUS: "shared-memory",
    Endpoint.CUDA_SHM_REGISTER: "shared-memory", Endpoint.CUDA_SHM_UNREGISTER: "shared-memory",
    Endpoint.TRACE_SETTING: "trace", Endpoint.MODEL_TRACE_SETTING: "trace",
    Endpoint.LOGGING: "logging",
}


def _restrict(handler: Handler, header: str, value: str) -> Handler:
    key, expected = header.lower().encode("latin-1"), value.encode("latin-1")
    denied = error_body(f"This API is restricted, expecting header '{header}'")

    def call(request: HttpRequest, params: dict) -> HttpResponse | Awaitable[HttpResponse]:
        if request.header(key) != expected:
            return HttpResponse(403, list(_JSON), [denied])
        return handler(request, params)
    return call


def _error(e: TritonError) -> HttpResponse:
    return HttpResponse(http_status(e.code), list(_JSON), [error_body(e.message)])


def _version(params: dict) -> int:
    v = params.get("version")
    return int(v) if v else -1


class HttpApp:
    def __init__(self, server: InferenceServer, *, max_input_size: int = 64 * 2**20,
                 restricted: tuple[tuple[str, str, str], ...] = ()) -> None:
        self.server = server
        self.max_input_size = max_input_size
        self._metadata_body: bytes | None = None
        # (method, target) -> (handler, params) of targets routed before: params are read-only
        self._routes: dict[tuple[bytes, bytes], tuple[Handler, dict]] = {}
        self._handlers: dict[Endpoint, Handler] = {
            Endpoint.HEALTH_LIVE: self._live,
            Endpoint.HEALTH_READY: self._ready,
            Endpoint.SERVER_METADATA: self._server_metadata,
            Endpoint.MODEL_METADATA: self._model_metadata,
            Endpoint.MODEL_READY: self._model_ready,
            Endpoint.MODEL_CONFIG: self._model_config,
            Endpoint.MODEL_STATS: self._stats,
            Endpoint.ALL_STATS: self._stats,
            Endpoint.INFER: self._infer,
            Endpoint.GENERATE: self._generate,
            Endpoint.GENERATE_STREAM: self._generate_stream,
            Endpoint.REPO_INDEX: self._repository_index,
            Endpoint.REPO_LOAD: self._repository_load,
            Endpoint.REPO_UNLOAD: self._repository_unload,
            Endpoint.SYS_SHM_STATUS: self._sys_shm_status,
            Endpoint.SYS_SHM_REGISTER: self._sys_shm_register,
            Endpoint.SYS_SHM_UNREGISTER: self._sys_shm_unregister,
            Endpoint.CUDA_SHM_STATUS: self._cuda_shm_status,
            Endpoint.CUDA_SHM_REGISTER: self._cuda_shm_register,
            Endpoint.CUDA_SHM_UNREGISTER: self._cuda_shm_unregister,
            Endpoint.LOGGING: self._logging,
            Endpoint.TRACE_SETTING: self._trace_setting,
            Endpoint.MODEL_TRACE_SETTING: self._trace_setting,
        }
        keys = {category: (header, value) for category, header, value in restricted}
        if keys:
            for endpoint in Endpoint:
                category = CATEGORIES.get(endpoint)
                if category in keys:
                    handler = self._handlers.get(endpoint) or (lambda r, p, e=endpoint: self._unsupported(e))
                    self._handlers[endpoint] = _restrict(handler, *keys[category])

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        try:
            key = (request.method, request.target)
            routed = self._routes.get(key)
            if routed is None:
                endpoint, params = route(request.method, request.target.decode("latin-1"))
                handler = self._handlers.get(endpoint)
                if handler is None:
                    return self._unsupported(endpoint)
                if len(self._routes) >= _ROUTES_MAX:
                    self._routes.clear()
                routed = self._routes[key] = (handler, params)
            handler, params = routed
            return handler(request, params)
        except RouteError as e:
            return HttpResponse(e.status, list(_JSON), [error_body(e.message)])
        except TritonError as e:
            return _error(e)

    def _unsupported(self, endpoint: Endpoint) -> HttpResponse:
        if endpoint is Endpoint.REPO_NAMED:
            return _error(TritonError(ErrorCode.UNSUPPORTED, "'repository_name' specification is not supported"))
        return _error(TritonError(ErrorCode.UNSUPPORTED, f"{endpoint.name.lower()} is not supported yet"))

    # -- health and metadata -----------------------------------------------------------------
    def _live(self, request: HttpRequest, params: dict) -> HttpResponse:
        return _EMPTY_OK if self.server.live() else _EMPTY_400

    def _ready(self, request: HttpRequest, params: dict) -> HttpResponse:
        return _EMPTY_OK if self.server.ready() else _EMPTY_400

    def _server_metadata(self, request: HttpRequest, params: dict) -> HttpResponse:
        if self._metadata_body is None:
            s = self.server
            self._metadata_body = kserve_json.encode_server_metadata(s.server_id, s.version, list(s.extensions))
        return HttpResponse(200, list(_JSON), [self._metadata_body])

    def _model_metadata(self, request: HttpRequest, params: dict) -> HttpResponse:
        name, version = params["model"], _version(params)
        model = self.server.model(name, version)
        spec = model.spec
        batch = [-1] if spec.max_batch_size > 0 else []
        config = model.config
        inputs = [(t.name, t.datatype, batch + list(t.dims)) for t in spec.inputs.values()]
        outputs = [(t.name, t.datatype, batch + list(t.dims)) for t in spec.outputs.values()]
        body = kserve_json.encode_model_metadata(
            name, self.server.model_versions(name, version), config.platform or config.backend, inputs, outputs)
        return HttpResponse(200, list(_JSON), [body])

    def _model_ready(self, request: HttpRequest, params: dict) -> HttpResponse:
        if self.server.model_ready(params["model"], _version(params)):
            return _EMPTY_OK
        return HttpResponse(400, list(_JSON), [error_body("Model version not ready")])

    def _model_config(self, request: HttpRequest, params: dict) -> HttpResponse:
        model = self.server.model(params["model"], _version(params))
        return HttpResponse(200, list(_JSON), [config_json_body(model.config)])

    def _stats(self, request: HttpRequest, params: dict) -> HttpResponse:
        models = self.server.statistics(params.get("model", ""), _version(params))
        body = kserve_json.encode_model_stats([(m.name, m.version_str, m.stats) for m in models])
        return HttpResponse(200, list(_JSON), [body])

    def _repository_index(self, request: HttpRequest, params: dict) -> HttpResponse:
        ready = False
        if len(request.body):
            options = kserve_json.parse_json(request.body)
            ready = options.get("ready", False) if isinstance(options, dict) else False
            if not isinstance(ready, bool):
                raise invalid_arg("Invalid value for 'ready': expected a boolean")
        body = kserve_json.encode_repository_index(self.server.repository_index(ready))
        return HttpResponse(200, list(_JSON), [body])

    def _repository_load(self, request: HttpRequest, params: dict) -> Awaitable[HttpResponse]:
        if len(request.body) > self.max_input_size:  # stricter than Triton: overrides are JSON, not tensors
            raise invalid_arg(f"model load request size ({len(request.body)} bytes) exceeds the maximum allowed "
                              f"input size ({self.max_input_size} bytes); use --http-max-input-size to raise it")
        config, files = _load_parameters(request.body)
        return self._control(self.server.load_model(params["model"], config, files))

    def _repository_unload(self, request: HttpRequest, params: dict) -> Awaitable[HttpResponse]:
        value = _body_parameters(request.body).get("unload_dependents", False)
        if not isinstance(value, bool):
            raise invalid_arg(f"Unable to parse 'unload_dependents': expected a boolean, got {value!r}")
        return self._control(self.server.unload_model(params["model"], value))

    @staticmethod
    async def _control(call: Awaitable[None]) -> HttpResponse:
        try:
            await call
        except TritonError as e:
            return _error(e)
        return _EMPTY_OK

    # -- logging and trace extensions --------------------------------------------------------
    def _logging(self, request: HttpRequest, params: dict) -> HttpResponse:
        if request.method == b"GET":
            settings = logging_settings.settings()
        else:
            body = kserve_json.parse_json(request.body) if len(request.body) else {}
            if not isinstance(body, dict):
                raise invalid_arg("log settings request must be a JSON object")
            settings = logging_settings.update(body)
        return HttpResponse(200, list(_JSON), [json.dumps(settings, separators=(",", ":")).encode()])

    def _trace_setting(self, request: HttpRequest, params: dict) -> HttpResponse:
        model = params.get("model", "")
        if model and not self.server.manager.ready_versions(model):
            raise invalid_arg(f"Request for unknown model : {model}")
        tracer = self.server.tracer
        if request.method == b"GET":
            settings = tracer.settings(model)
        else:
            settings = tracer.update(kserve_json.parse_json(request.body) if len(request.body) else {}, model)
        return HttpResponse(200, list(_JSON), [json.dumps(settings, separators=(",", ":")).encode()])

    # -- shared memory -----------------------------------------------------------------------
    def _sys_shm_status(self, request: HttpRequest, params: dict) -> HttpResponse:
        regions = self.server.shm.status("system", params["region"])
        return HttpResponse(200, list(_JSON), [shm_json.encode_system_status(regions)])

    def _sys_shm_register(self, request: HttpRequest, params: dict) -> HttpResponse:
        shm = self.server.shm
        if not shm.enabled:
            shm.register_system("", "", 0, 0)  # raises Triton's "disabled" error first
        if not params["region"]:
            raise invalid_arg("'region name' is necessary to register system shared memory region")
        key, offset, byte_size = shm_json.parse_system_register(request.body)
        shm.register_system(params["region"], key, offset, byte_size)
        return _EMPTY_OK

    def _sys_shm_unregister(self, request: HttpRequest, params: dict) -> HttpResponse:
        self.server.shm.unregister("system", params["region"])
        return _EMPTY_OK

    def _cuda_shm_status(self, request: HttpRequest, params: dict) -> HttpResponse:
        regions = self.server.shm.status("cuda", params["region"])
        return HttpResponse(200, list(_JSON), [shm_json.encode_cuda_status(regions)])

    def _cuda_shm_register(self, request: HttpRequest, params: dict) -> HttpResponse:
        shm = self.server.shm
        if not shm.enabled:
            shm.register_cuda("", b"", 0, 0)  # raises Triton's "disabled" error first
        if not params["region"]:
            raise invalid_arg("'region name' is necessary to register cuda shared memory region")
        raw, device_id, byte_size = shm_json.parse_cuda_register(request.body)
        shm.register_cuda(params["region"], raw, device_id, byte_size)
        return _EMPTY_OK

    def _cuda_shm_unregister(self, request: HttpRequest, params: dict) -> HttpResponse:
        self.server.shm.unregister("cuda", params["region"])
        return _EMPTY_OK

    # -- inference ---------------------------------------------------------------------------
    def _infer(self, request: HttpRequest, params: dict) -> HttpResponse | Awaitable[HttpResponse]:
        """Decode and validate synchronously; a tiny model runs at once (no task), else await."""
        try:
            model, infer_request = self._decode_infer(request, params)
            if model.spec.decoupled:  # only with Accept: text/event-stream (see _decode_infer)
                infer_request.binary_default = False
                for wanted in (infer_request.outputs or {}).values():
                    wanted.binary = False
                return self._stream(model, infer_request, lambda r: self._json_infer(model, infer_request, r))
            response = self.server.prepare(model, infer_request)
            if response is None:
                return self._infer_async(request, model, infer_request)
            return self._encode_infer(request, model, infer_request, response)
        except TritonError as e:
            return _infer_error(e)

    async def _infer_async(self, request: HttpRequest, model, infer_request) -> HttpResponse:
        try:
            response = await self.server.infer_prepared(model, infer_request)
            return self._encode_infer(request, model, infer_request, response)
        except TritonError as e:
            return _infer_error(e)

    def _decode_infer(self, request: HttpRequest, params: dict):
        name, version = params["model"], _version(params)
        model = self.server.model(name, version)
        if model.spec.decoupled and b"text/event-stream" not in (request.header(b"accept") or b""):
            # Beyond Triton: a client that accepts server-sent events gets every response.
            raise TritonError(ErrorCode.UNSUPPORTED,
                              "HTTP end point doesn't support models with decoupled transaction policy")
        body = request.body
        encoding = request.header(b"content-encoding")
        if encoding:
            body = compression.decompress(body, encoding, self.max_input_size)
        header_length = _header_length(request.header(b"inference-header-content-length"))
        if header_length == 0:
            infer_request = kserve_json.decode_raw_infer(body, name, version, model.spec, self.max_input_size)
        else:
            infer_request = kserve_json.decode_infer(body, header_length, name, version, self.max_input_size)
        return model, infer_request

    @staticmethod
    def _json_infer(model, infer_request, response) -> bytes:
        chunks, _ = kserve_json.encode_infer_response(response, infer_request, model.labels,
                                                      max_batch_size=model.spec.max_batch_size)
        return b"".join(chunks)

    # -- generate extension and streams -----------------------------------------------------------
    def _decode_generate(self, request: HttpRequest, params: dict):
        name, version = params["model"], _version(params)
        model = self.server.model(name, version)
        body = request.body
        encoding = request.header(b"content-encoding")
        if encoding:
            body = compression.decompress(body, encoding, self.max_input_size)
        return model, generate_json.decode_generate(body, name, version, model.spec, self.max_input_size)

    def _generate(self, request: HttpRequest, params: dict) -> Awaitable[HttpResponse]:
        model, infer_request = self._decode_generate(request, params)
        return self._generate_one(model, infer_request)

    async def _generate_one(self, model, infer_request) -> HttpResponse:
        try:
            responses = [r async for r, _ in self.server.infer_stream(model, infer_request) if r is not None]
            if len(responses) != 1:
                raise invalid_arg(generate_json.ONE_RESPONSE)
            if responses[0].error is not None:
                raise responses[0].error
            return HttpResponse(200, list(_JSON), [generate_json.encode_generate_response(responses[0])])
        except TritonError as e:
            return _error(e)

    def _generate_stream(self, request: HttpRequest, params: dict) -> Awaitable[HttpResponse]:
        model, infer_request = self._decode_generate(request, params)
        return self._stream(model, infer_request, generate_json.encode_generate_response)

    async def _stream(self, model, infer_request, encode: Callable) -> HttpResponse:
        """Server-sent events, one per response. The first response fixes the HTTP status (an
        error before it is an ordinary error response); later errors are `data: {"error": ...}`."""
        stream = self.server.infer_stream(model, infer_request)
        try:
            first = await anext(stream)
            if first[0] is not None and first[0].error is not None:
                raise first[0].error
        except StopAsyncIteration:
            first = None
        except TritonError as e:
            await stream.aclose()
            return _error(e)
        return HttpResponse(200, [(b"content-type", generate_json.SSE_CONTENT_TYPE), (b"cache-control", b"no-cache")],
                            [], stream=_events(first, stream, encode))

    def _encode_infer(self, request: HttpRequest, model, infer_request, response) -> HttpResponse:
        chunks, json_length = kserve_json.encode_infer_response(
            response, infer_request, model.labels, max_batch_size=model.spec.max_batch_size)
        headers: list[tuple[bytes, bytes]]
        if json_length is None:
            headers = list(_JSON)
        else:
            headers = [(b"content-type", _OCTET),
                       (b"inference-header-content-length", b"%d" % json_length)]
        accept = request.header(b"accept-encoding")
        if accept:
            chunks = compression.compress_response(chunks, accept, headers)
        return HttpResponse(200, headers, chunks, trusted=True)


async def _events(first, stream: AsyncIterator, encode: Callable) -> AsyncIterator[bytes]:
    try:
        item = first
        while item is not None:
            response, final = item
            if response is not None:
                if response.error is not None:
                    yield generate_json.sse_error(response.error.message)
                else:
                    try:
                        yield generate_json.sse_event(encode(response))
                    except TritonError as e:
                        yield generate_json.sse_error(e.message)
            if final:
                return
            try:
                item = await anext(stream)
            except StopAsyncIteration:
                return
            except TritonError as e:
                yield generate_json.sse_error(e.message)
                return
    finally:
        await stream.aclose()


def _body_parameters(body) -> dict:
    """The `parameters` object of a repository request body (absent or empty body: {})."""
    if not len(body):
        return {}
    doc = kserve_json.parse_json(body)
    parameters = doc.get("parameters", {}) if isinstance(doc, dict) else {}
    if not isinstance(parameters, dict):
        raise invalid_arg("Unable to parse 'parameters': expected an object")
    return parameters


def _load_parameters(body) -> tuple[str | None, dict[str, bytes]]:
    """`config` (a JSON string) and the `file:<path>` entries (base64, decoded leniently as Triton)."""
    config, files = None, {}
    for key, value in _body_parameters(body).items():
        if key != "config" and not key.startswith("file:"):
            raise TritonError(ErrorCode.INTERNAL, "unexpected error on creating Triton parameter")
        if not isinstance(value, str):
            raise invalid_arg(f"Unable to parse '{key}': expected a string")
        if key == "config":
            config = value
            continue
        try:
            files[key[len("file:"):]] = base64.b64decode(value)
        except (binascii.Error, ValueError):
            raise invalid_arg(f"Unable to parse '{key}': invalid base64 content") from None
    return config, files


def _infer_error(e: TritonError) -> HttpResponse:
    response = _error(e)
    if e.code is ErrorCode.UNSUPPORTED and e.message == "Unsupported compression type":
        response.headers.append((b"accept-encoding", b"gzip, deflate"))
    return response


def _header_length(value: bytes | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise invalid_arg(f"Unable to parse 'Inference-Header-Content-Length': {value.decode('latin-1')}") from None
