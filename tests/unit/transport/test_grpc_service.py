"""GrpcService handlers called directly with serialized messages, against a real InferenceServer
built in-process from the example repository (plus a decoupled identity model)."""
from __future__ import annotations

import asyncio
import importlib.util
import os
import time

import numpy as np
import pytest
import tritonclient.grpc.service_pb2 as tc
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from triton_asyncio.cli import build_server
from triton_asyncio.codec.status import GrpcStatus
from triton_asyncio.core.response import InferenceResponse
from triton_asyncio.core.tensor import Tensor
from triton_asyncio.errors import invalid_arg
from triton_asyncio.pb import grpc_service_pb2 as pb
from triton_asyncio.pb import health_pb2
from triton_asyncio.server.inference_server import ServerState
from triton_asyncio.server.options import ServerOptions
from triton_asyncio.transport.grpc.handlers import CallContext, RpcError
from triton_asyncio.transport.grpc.service import GrpcService

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SERVICE = "/inference.GRPCInferenceService/"
DECOUPLED = """name: "decoupled"
backend: "identity"
model_transaction_policy { decoupled: true }
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 4 ] } ]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("make_example_repo", os.path.join(ROOT, "scripts", "make_example_repo.py"))
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    repo = str(tmp_path_factory.mktemp("grpc") / "models")
    builder.build_repository(repo, models=["simple", "simple_identity", "digits"])
    os.makedirs(os.path.join(repo, "decoupled", "1"))
    with open(os.path.join(repo, "decoupled", "config.pbtxt"), "w") as f:
        f.write(DECOUPLED)
    srv, errors = build_server(ServerOptions(model_repositories=(repo,)))
    assert not errors
    srv.state = ServerState.READY
    yield srv
    asyncio.run(srv.stop())


@pytest.fixture(scope="module")
def service(server):
    return GrpcService(server)


def _ctx(*metadata) -> CallContext:
    return CallContext("/x", list(metadata))


def call(service, rpc: str, message, ctx: CallContext | None = None) -> bytes:
    """Runs a unary handler the way the transport does: bytes at once, or an awaitable."""
    path = (rpc if rpc.startswith("/") else SERVICE + rpc).encode()
    handler = service.unary(path)
    assert handler is not None, path
    result = handler(message.SerializeToString(), ctx or _ctx())
    if isinstance(result, bytes):
        return result

    async def wait():
        return await result
    return asyncio.run(wait())


def rpc_error(service, rpc: str, message, ctx: CallContext | None = None) -> RpcError:
    with pytest.raises(RpcError) as info:
        call(service, rpc, message, ctx)
    return info.value


def simple_request(batch: int = 1, rid: str = "", model: str = "simple") -> tuple[pb.ModelInferRequest, np.ndarray, np.ndarray]:
    a = np.arange(16 * batch, dtype=np.int32).reshape(batch, 16)
    b = np.full((batch, 16), 3, dtype=np.int32)
    msg = pb.ModelInferRequest(model_name=model, id=rid)
    for name, data in (("INPUT0", a), ("INPUT1", b)):
        msg.inputs.add(name=name, datatype="INT32", shape=list(data.shape))
        msg.raw_input_contents.append(data.tobytes())
    return msg, a, b


def outputs_of(response: tc.ModelInferResponse) -> dict[str, np.ndarray]:
    out = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        dtype = np.object_ if tensor.datatype == "BYTES" else np.dtype(tensor.datatype.lower().replace("fp", "float"))
        out[tensor.name] = (deserialize_bytes_tensor(raw) if dtype is np.object_ else np.frombuffer(raw, dtype)).reshape(
            list(tensor.shape))
    return out


# -- inference -------------------------------------------------------------------------------
@pytest.mark.parametrize("batch", [1, 8])
def test_infer_simple(service, batch):
    msg, a, b = simple_request(batch, rid="7")
    response = tc.ModelInferResponse.FromString(call(service, "ModelInfer", msg))
    assert (response.model_name, response.model_version, response.id) == ("simple", "1", "7")
    out = outputs_of(response)
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)


def test_infer_is_synchronous_when_the_model_is_idle(service):
    msg, a, b = simple_request()
    buffer = msg.SerializeToString()
    handler = service.unary((SERVICE + "ModelInfer").encode())

    async def run() -> list[bytes]:
        sync = []
        for _ in range(50):  # the scheduler probes a few threaded runs before it runs inline
            result = handler(buffer, _ctx())
            if isinstance(result, bytes):
                sync.append(result)
            else:
                await result
        return sync

    sync = asyncio.run(run())
    assert sync, "the inline path should answer without a coroutine once the model is warm"
    np.testing.assert_array_equal(outputs_of(tc.ModelInferResponse.FromString(sync[-1]))["OUTPUT0"], a + b)


def test_requested_output_only(service):
    msg, a, b = simple_request()
    msg.outputs.add(name="OUTPUT1")
    response = tc.ModelInferResponse.FromString(call(service, "ModelInfer", msg))
    assert [o.name for o in response.outputs] == ["OUTPUT1"]
    np.testing.assert_array_equal(outputs_of(response)["OUTPUT1"], a - b)


def test_bytes_identity(service):
    data = np.array([[b"hello", b"", "wörld".encode()]], dtype=np.object_)
    msg = pb.ModelInferRequest(model_name="simple_identity")
    msg.inputs.add(name="INPUT0", datatype="BYTES", shape=[1, 3])
    msg.raw_input_contents.append(serialize_byte_tensor(data).item())
    response = tc.ModelInferResponse.FromString(call(service, "ModelInfer", msg))
    assert response.outputs[0].datatype == "BYTES" and list(response.outputs[0].shape) == [1, 3]
    assert list(outputs_of(response)["OUTPUT0"].reshape(-1)) == list(data.reshape(-1))


def test_bytes_typed_contents(service):
    msg = pb.ModelInferRequest(model_name="simple_identity")
    tensor = msg.inputs.add(name="INPUT0", datatype="BYTES", shape=[1, 2])
    tensor.contents.bytes_contents.extend([b"a", b"bc"])
    response = tc.ModelInferResponse.FromString(call(service, "ModelInfer", msg))
    assert list(outputs_of(response)["OUTPUT0"].reshape(-1)) == [b"a", b"bc"]


def test_classification_on_digits(service):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data[:4].astype(np.float32)
    msg = pb.ModelInferRequest(model_name="digits")
    msg.inputs.add(name="INPUT", datatype="FP32", shape=list(x.shape))
    msg.raw_input_contents.append(x.tobytes())
    msg.outputs.add(name="PROBS").parameters["classification"].int64_param = 2
    response = tc.ModelInferResponse.FromString(call(service, "ModelInfer", msg))
    assert response.outputs[0].datatype == "BYTES" and list(response.outputs[0].shape) == [4, 2]
    top = outputs_of(response)["PROBS"]
    parts = [row[0].decode().split(":") for row in top]
    assert all(len(p) == 3 and p[2] in ("zero", "one", "two", "three", "four") for p in parts)
    assert sum(int(p[1]) == t for p, t in zip(parts, digits.target[:4], strict=True)) >= 3


def test_unknown_model(service):
    msg, _, _ = simple_request(model="nope")
    e = rpc_error(service, "ModelInfer", msg)
    assert (e.status, e.message) == (GrpcStatus.NOT_FOUND, "Request for unknown model: 'nope' is not found")


def test_bad_shape_and_dtype(service):
    msg = pb.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        msg.inputs.add(name=name, datatype="INT32", shape=[1, 15])
        msg.raw_input_contents.append(bytes(60))
    e = rpc_error(service, "ModelInfer", msg)
    assert e.status == GrpcStatus.INVALID_ARGUMENT
    assert "unexpected shape for input 'INPUT0' for model 'simple'. Expected [-1,16], got [1,15]" in e.message
    msg, _, _ = simple_request()
    msg.inputs[0].datatype = "FP32"
    e = rpc_error(service, "ModelInfer", msg)
    assert e.status == GrpcStatus.INVALID_ARGUMENT and "data-type is 'FP32', but model 'simple' expects 'INT32'" in e.message


def test_bad_version_and_decoupled(service):
    msg, _, _ = simple_request()
    msg.model_version = "x"
    assert rpc_error(service, "ModelInfer", msg).status == GrpcStatus.INVALID_ARGUMENT
    msg.model_version = "3"
    e = rpc_error(service, "ModelInfer", msg)
    assert (e.status, e.message) == (GrpcStatus.NOT_FOUND, "Request for unknown model: 'simple' version 3 is not found")
    msg = pb.ModelInferRequest(model_name="decoupled")
    msg.inputs.add(name="INPUT0", datatype="INT32", shape=[4])
    msg.raw_input_contents.append(bytes(16))
    e = rpc_error(service, "ModelInfer", msg)
    assert (e.status, e.message) == (GrpcStatus.UNIMPLEMENTED,
                                     "ModelInfer RPC doesn't support models with decoupled transaction policy")


def test_header_forwarding(server):
    svc = GrpcService(server, header_forward_pattern="^x-fwd")
    msg, _, _ = simple_request()
    _, request = svc.decode(msg, _ctx(("x-fwd-a", "1"), ("other", "2")))
    assert request.parameters == {"x-fwd-a": "1"}


# -- health, metadata, config, statistics, repository ----------------------------------------
def test_health(service):
    assert tc.ServerLiveResponse.FromString(call(service, "ServerLive", pb.ServerLiveRequest())).live
    assert tc.ServerReadyResponse.FromString(call(service, "ServerReady", pb.ServerReadyRequest())).ready
    assert tc.ModelReadyResponse.FromString(call(service, "ModelReady", pb.ModelReadyRequest(name="simple"))).ready
    assert tc.ModelReadyResponse.FromString(
        call(service, "ModelReady", pb.ModelReadyRequest(name="simple", version="1"))).ready
    e = rpc_error(service, "ModelReady", pb.ModelReadyRequest(name="nope"))
    assert (e.status, e.message) == (GrpcStatus.NOT_FOUND, "Request for unknown model: 'nope' is not found")
    check = call(service, "/grpc.health.v1.Health/Check", health_pb2.HealthCheckRequest(service="anything"))
    assert health_pb2.HealthCheckResponse.FromString(check).status == health_pb2.HealthCheckResponse.SERVING
    assert service.unary(b"/grpc.health.v1.Health/Watch") is None
    assert service.unary((SERVICE + "Nope").encode()) is None
    assert service.stream((SERVICE + "ModelInfer").encode()) is None


def test_server_not_ready(server, service):
    server.state = ServerState.INITIALIZING
    try:
        assert call(service, "ServerReady", pb.ServerReadyRequest()) == b""
        check = call(service, "/grpc.health.v1.Health/Check", health_pb2.HealthCheckRequest())
        assert health_pb2.HealthCheckResponse.FromString(check).status == health_pb2.HealthCheckResponse.NOT_SERVING
        server.state = ServerState.EXITING
        e = rpc_error(service, "ServerLive", pb.ServerLiveRequest())
        assert (e.status, e.message) == (GrpcStatus.UNAVAILABLE, "Server exiting")
    finally:
        server.state = ServerState.READY


def test_metadata(service, server):
    meta = tc.ServerMetadataResponse.FromString(call(service, "ServerMetadata", pb.ServerMetadataRequest()))
    assert meta.name == "triton" and list(meta.extensions) == list(server.extensions)
    body = call(service, "ModelMetadata", pb.ModelMetadataRequest(name="simple"))
    meta = tc.ModelMetadataResponse.FromString(body)
    assert (meta.name, list(meta.versions), meta.platform) == ("simple", ["1"], "onnxruntime_onnx")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("INPUT0", "INT32", [-1, 16]), ("INPUT1", "INT32", [-1, 16])]
    assert [t.name for t in meta.outputs] == ["OUTPUT0", "OUTPUT1"]
    assert call(service, "ModelMetadata", pb.ModelMetadataRequest(name="simple")) is body  # cached
    assert list(tc.ModelMetadataResponse.FromString(
        call(service, "ModelMetadata", pb.ModelMetadataRequest(name="simple", version="1"))).versions) == ["1"]
    assert rpc_error(service, "ModelMetadata", pb.ModelMetadataRequest(name="nope")).status == GrpcStatus.NOT_FOUND


def test_config(service, server):
    config = tc.ModelConfigResponse.FromString(call(service, "ModelConfig", pb.ModelConfigRequest(name="simple"))).config
    assert config.name == "simple" and config.max_batch_size == 8
    assert [i.name for i in config.input] == ["INPUT0", "INPUT1"]
    assert config.SerializeToString() == server.model("simple").config.SerializeToString()
    assert rpc_error(service, "ModelConfig", pb.ModelConfigRequest(name="nope")).status == GrpcStatus.NOT_FOUND


def test_statistics(service):
    call(service, "ModelInfer", simple_request()[0])
    stats = tc.ModelStatisticsResponse.FromString(
        call(service, "ModelStatistics", pb.ModelStatisticsRequest(name="simple")))
    entry = stats.model_stats[0]
    assert (entry.name, entry.version) == ("simple", "1")
    assert entry.inference_stats.success.count >= 1 and entry.execution_count >= 1
    assert entry.batch_stats and entry.batch_stats[0].compute_infer.count >= 1
    every = tc.ModelStatisticsResponse.FromString(call(service, "ModelStatistics", pb.ModelStatisticsRequest()))
    assert {"simple", "simple_identity", "digits"} <= {m.name for m in every.model_stats}
    e = rpc_error(service, "ModelStatistics", pb.ModelStatisticsRequest(name="nope"))
    assert (e.status, e.message) == (GrpcStatus.INVALID_ARGUMENT, "requested model 'nope' is not available")


def test_repository_index(service):
    index = tc.RepositoryIndexResponse.FromString(call(service, "RepositoryIndex", pb.RepositoryIndexRequest()))
    rows = {m.name: (m.version, m.state) for m in index.models}
    assert rows["simple"] == ("1", "READY") and "digits" in rows
    ready = tc.RepositoryIndexResponse.FromString(call(service, "RepositoryIndex", pb.RepositoryIndexRequest(ready=True)))
    assert all(m.state == "READY" for m in ready.models)
    e = rpc_error(service, "RepositoryIndex", pb.RepositoryIndexRequest(repository_name="r"))
    assert (e.status, e.message) == (GrpcStatus.UNIMPLEMENTED, "'repository_name' specification is not supported")


# -- RPCs whose features come later ----------------------------------------------------------
@pytest.mark.parametrize("rpc, message, status, text", [
    ("RepositoryModelLoad", pb.RepositoryModelLoadRequest(model_name="simple"), GrpcStatus.UNAVAILABLE,
     "explicit model load / unload is not allowed if polling is enabled"),
    ("RepositoryModelLoad", pb.RepositoryModelLoadRequest(
        model_name="simple", parameters={"config": pb.ModelRepositoryParameter(bool_param=True)}),
     GrpcStatus.INVALID_ARGUMENT, "invalid value type for load parameter 'config', expected string_param."),
    ("RepositoryModelLoad", pb.RepositoryModelLoadRequest(
        model_name="simple", parameters={"x": pb.ModelRepositoryParameter(bool_param=True)}),
     GrpcStatus.INVALID_ARGUMENT, "unrecognized load parameter 'x'."),
    ("RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name="simple"), GrpcStatus.UNAVAILABLE,
     "explicit model load / unload is not allowed if polling is enabled"),
    ("RepositoryModelUnload", pb.RepositoryModelUnloadRequest(repository_name="r"), GrpcStatus.UNIMPLEMENTED,
     "'repository_name' specification is not supported"),
    ("SystemSharedMemoryStatus", pb.SystemSharedMemoryStatusRequest(name="r"), GrpcStatus.NOT_FOUND,
     "Unable to find system shared memory region: 'r'"),
    ("CudaSharedMemoryStatus", pb.CudaSharedMemoryStatusRequest(name="r"), GrpcStatus.NOT_FOUND,
     "Unable to find cuda shared memory region: 'r'"),
    ("SystemSharedMemoryRegister", pb.SystemSharedMemoryRegisterRequest(name="r", key="/k", byte_size=8),
     GrpcStatus.UNIMPLEMENTED, "Client shared memory is disabled. Start the server with '--allow-client-shm=true' to enable."),
    ("SystemSharedMemoryUnregister", pb.SystemSharedMemoryUnregisterRequest(), GrpcStatus.UNIMPLEMENTED,
     "Client shared memory is disabled. Start the server with '--allow-client-shm=true' to enable."),
    ("CudaSharedMemoryRegister", pb.CudaSharedMemoryRegisterRequest(name="r"), GrpcStatus.UNIMPLEMENTED,
     "Client shared memory is disabled. Start the server with '--allow-client-shm=true' to enable."),
    ("CudaSharedMemoryUnregister", pb.CudaSharedMemoryUnregisterRequest(name="r"), GrpcStatus.UNIMPLEMENTED,
     "Client shared memory is disabled. Start the server with '--allow-client-shm=true' to enable."),
])
def test_later_features_answer_as_disabled(service, rpc, message, status, text):
    e = rpc_error(service, rpc, message)
    assert (e.status, e.message) == (status, text)


def test_empty_shm_status(service):
    assert call(service, "SystemSharedMemoryStatus", pb.SystemSharedMemoryStatusRequest()) == b""
    assert call(service, "CudaSharedMemoryStatus", pb.CudaSharedMemoryStatusRequest()) == b""


def test_restricted_protocol(server):
    svc = GrpcService(server, restricted=(("inference", "triton-grpc-protocol-infer-key", "secret"),
                                          ("health", "triton-grpc-protocol-h", "1")))
    msg, a, b = simple_request()
    e = rpc_error(svc, "ModelInfer", msg)
    assert (e.status, e.message) == (GrpcStatus.UNAVAILABLE,
                                     "This protocol is restricted, expecting header 'triton-grpc-protocol-infer-key'")
    ok = call(svc, "ModelInfer", msg, _ctx(("triton-grpc-protocol-infer-key", "secret")))
    np.testing.assert_array_equal(outputs_of(tc.ModelInferResponse.FromString(ok))["OUTPUT0"], a + b)
    assert rpc_error(svc, "ServerLive", pb.ServerLiveRequest()).status == GrpcStatus.UNAVAILABLE
    assert call(svc, "ServerMetadata", pb.ServerMetadataRequest())  # not restricted
    sink = Sink()
    with pytest.raises(RpcError) as info:
        asyncio.run(run_stream(svc, [msg], sink))
    assert info.value.status == GrpcStatus.UNAVAILABLE and sink.sent == []


# -- streaming -------------------------------------------------------------------------------
class Sink:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def send(self, message: bytes) -> None:
        self.sent.append(message)

    async def drain(self) -> None:
        return None


async def _messages(items):
    for item in items:
        yield item.SerializeToString() if hasattr(item, "SerializeToString") else item
        await asyncio.sleep(0)


async def run_stream(service, items, sink, *metadata):
    handler = service.stream((SERVICE + "ModelStreamInfer").encode())
    await handler(_messages(items), sink, _ctx(*metadata))


def _stream_requests():
    items = []
    for i in range(6):
        msg, _, _ = simple_request(rid=str(i))
        if i == 3:
            msg.inputs[0].shape[:] = [1, 15]
        items.append(msg)
    return items


def test_stream_error_in_the_middle_continues(service):
    sink = Sink()
    asyncio.run(run_stream(service, _stream_requests(), sink))
    replies = [tc.ModelStreamInferResponse.FromString(m) for m in sink.sent]
    assert [r.infer_response.id for r in replies] == [str(i) for i in range(6)]
    assert "unexpected shape for input 'INPUT0'" in replies[3].error_message
    for r in replies[:3] + replies[4:]:
        assert r.error_message == "" and r.infer_response.parameters["triton_final_response"].bool_param
        assert r.infer_response.model_name == "simple" and len(r.infer_response.raw_output_contents) == 2


def test_stream_garbage_message_is_an_error_response(service):
    sink = Sink()
    asyncio.run(run_stream(service, [b"\x0a\xff", simple_request(rid="1")[0]], sink))
    replies = [tc.ModelStreamInferResponse.FromString(m) for m in sink.sent]
    assert replies[0].error_message and replies[1].infer_response.id == "1"


def test_stream_triton_grpc_error_ends_the_stream(service):
    sink = Sink()
    with pytest.raises(RpcError) as info:
        asyncio.run(run_stream(service, _stream_requests(), sink, ("triton_grpc_error", "true")))
    assert info.value.status == GrpcStatus.INVALID_ARGUMENT
    assert "unexpected shape for input 'INPUT0'" in info.value.message
    assert [tc.ModelStreamInferResponse.FromString(m).infer_response.id for m in sink.sent] == ["0", "1", "2"]


def test_stream_stops_when_the_client_goes_away(service):
    sink = Sink()
    sink.closed = True
    asyncio.run(run_stream(service, _stream_requests(), sink))
    assert sink.sent == []


class _SlowModel:
    """A stand-in for Model whose requests finish in reverse order."""

    name, version, labels = "slow", 1, {}

    class spec:  # noqa: N801 - mimics ModelSpec's attributes
        decoupled, max_batch_size = False, 0


class _SlowServer:
    def __init__(self) -> None:
        self.model_obj = _SlowModel()
        self.started: list[str] = []

    def model(self, name, version=-1):
        return self.model_obj

    def prepare(self, model, request):
        if request.id == "bad":
            raise invalid_arg("bad request")
        return None

    async def infer_prepared(self, model, request):
        self.started.append(request.id)
        await asyncio.sleep(0.05 * (5 - int(request.id)))
        if request.id == "2":
            raise invalid_arg("failed late")
        return InferenceResponse("slow", "1", id=request.id,
                                 outputs=[Tensor("O", "INT32", [1], array=np.array([int(request.id)], np.int32))])


def test_stream_runs_requests_concurrently_and_answers_in_order():
    server = _SlowServer()
    svc = GrpcService(server)  # type: ignore[arg-type]
    items = [pb.ModelInferRequest(model_name="slow", id=str(i), model_version="1") for i in range(5)]
    items.insert(1, pb.ModelInferRequest(model_name="slow", id="bad"))
    sink = Sink()
    start = time.monotonic()
    asyncio.run(run_stream(svc, items, sink))
    assert time.monotonic() - start < 0.5  # the slowest takes 0.25; 0.75 if they ran one by one
    assert server.started == ["0", "1", "2", "3", "4"]
    replies = [tc.ModelStreamInferResponse.FromString(m) for m in sink.sent]
    assert [r.infer_response.id for r in replies] == ["0", "bad", "1", "2", "3", "4"]
    assert replies[1].error_message == "bad request" and not replies[1].infer_response.model_name
    late = replies[3]
    assert late.error_message == "failed late"
    assert (late.infer_response.model_name, late.infer_response.model_version) == ("slow", "1")
    assert late.infer_response.parameters["triton_final_response"].bool_param
    assert [np.frombuffer(r.infer_response.raw_output_contents[0], np.int32)[0] for r in replies
            if not r.error_message] == [0, 1, 3, 4]
