"""A second, independent gRPC client: grpclib's Channel with our generated messages (ProtoCodec)."""
from __future__ import annotations

import asyncio

import numpy as np
from grpclib.client import Channel, UnaryUnaryMethod

from triton_asyncio.pb import grpc_service_pb2 as pb
from triton_asyncio.pb import health_pb2

SERVICE = "/inference.GRPCInferenceService/"


def _run(server, body):
    async def main():
        channel = Channel("127.0.0.1", server.grpc_port)
        try:
            return await body(channel)
        finally:
            channel.close()
    return asyncio.run(main())


def test_server_live(server):
    async def body(channel):
        live = UnaryUnaryMethod(channel, SERVICE + "ServerLive", pb.ServerLiveRequest, pb.ServerLiveResponse)
        return await live(pb.ServerLiveRequest())
    assert _run(server, body).live


def test_model_infer_simple(server):
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 5, dtype=np.int32)
    request = pb.ModelInferRequest(model_name="simple", id="g")
    for name, data in (("INPUT0", a), ("INPUT1", b)):
        request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        request.raw_input_contents.append(data.tobytes())

    async def body(channel):
        infer = UnaryUnaryMethod(channel, SERVICE + "ModelInfer", pb.ModelInferRequest, pb.ModelInferResponse)
        return await asyncio.gather(*(infer(request) for _ in range(8)))

    for reply in _run(server, body):
        assert (reply.id, reply.model_name, reply.model_version) == ("g", "simple", "1")
        assert [o.name for o in reply.outputs] == ["OUTPUT0", "OUTPUT1"]
        np.testing.assert_array_equal(np.frombuffer(reply.raw_output_contents[0], np.int32).reshape(1, 16), a + b)
        np.testing.assert_array_equal(np.frombuffer(reply.raw_output_contents[1], np.int32).reshape(1, 16), a - b)


def test_health_check(server):
    async def body(channel):
        check = UnaryUnaryMethod(channel, "/grpc.health.v1.Health/Check", health_pb2.HealthCheckRequest,
                                 health_pb2.HealthCheckResponse)
        return await check(health_pb2.HealthCheckRequest())
    assert _run(server, body).status == health_pb2.HealthCheckResponse.SERVING
