"""GrpcProtocol: a real loopback server driven by grpclib, plus a fake transport driven by an h2 client
for the exact wire (sync path without a task, deadline trailers, keepalive)."""
from __future__ import annotations

import asyncio

import h2.config
import h2.connection
import h2.events
import pytest
from grpclib.client import Channel, StreamStreamMethod, UnaryUnaryMethod
from grpclib.const import Cardinality, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError

from triton_asyncio.codec.status import GrpcStatus
from triton_asyncio.transport.grpc.handlers import RpcError
from triton_asyncio.transport.grpc.protocol import GrpcProtocol, GrpcServerState

NON_ASCII = "modèle « x » introuvable ✓ 100%\nline two"


class RawCodec(CodecBase):
    """grpclib codec that passes bytes through."""

    __content_subtype__ = "proto"

    def encode(self, message, message_type):
        return message

    def decode(self, data, message_type):
        return data


class EchoRouter:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.contexts: list = []
        self.seen: list = []
        self._unary = {
            b"/test.Echo/Unary": self.echo,
            b"/test.Echo/UnaryAsync": self.echo_async,
            b"/test.Echo/Fail": self.fail,
            b"/test.Echo/FailAsync": self.fail_async,
            b"/test.Echo/Boom": self.boom,
            b"/test.Echo/Slow": self.slow,
        }

    def unary(self, path):
        return self._unary.get(path)

    def stream(self, path):
        return {b"/test.Echo/Stream": self.stream_echo, b"/test.Echo/StreamFail": self.stream_fail}.get(path)

    def echo(self, message, context):
        self.contexts.append(context)
        return bytes(message)

    async def echo_async(self, message, context):
        await asyncio.sleep(0)
        return b"async:" + bytes(message)

    def fail(self, message, context):
        raise RpcError(GrpcStatus.NOT_FOUND, NON_ASCII)

    async def fail_async(self, message, context):
        raise RpcError(GrpcStatus.INVALID_ARGUMENT, "bad input")

    def boom(self, message, context):
        raise ValueError("boom")

    async def slow(self, message, context):
        self.contexts.append(context)
        self.started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return b"late"

    async def stream_echo(self, requests, sink, context):
        async for message in requests:
            self.seen.append(len(message))
            sink.send(b"echo:" + bytes(message))

    async def stream_fail(self, requests, sink, context):
        async for message in requests:
            sink.send(bytes(message))
            raise RpcError(GrpcStatus.UNAVAILABLE, "stream broke")


class Server:
    """A loopback listener on 127.0.0.1:0 and a grpclib channel to it."""

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs
        self.router = EchoRouter()
        self.state = GrpcServerState()

    async def __aenter__(self) -> Server:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: GrpcProtocol(self.router, server_state=self.state, **self.kwargs), "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.channel = Channel("127.0.0.1", port, codec=RawCodec())
        return self

    async def __aexit__(self, *exc) -> None:
        self.channel.close()
        self.server.close()
        await self.server.wait_closed()
        await asyncio.sleep(0.01)

    def unary(self, name: str) -> UnaryUnaryMethod:
        return UnaryUnaryMethod(self.channel, name, bytes, bytes)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


# -- loopback with grpclib -----------------------------------------------------------------------
def test_sync_and_async_unary():
    async def main():
        async with Server() as s:
            assert await s.unary("/test.Echo/Unary")(b"hello", metadata={"x-trace": "t1"}) == b"hello"
            assert await s.unary("/test.Echo/UnaryAsync")(b"hi") == b"async:hi"
            assert await s.unary("/test.Echo/Unary")(b"") == b""
            context = s.router.contexts[0]
            assert context.method == "/test.Echo/Unary" and context.header("x-trace") == "t1"
            assert context.deadline is None and context.peer.startswith("ipv4:127.0.0.1:")
            assert not s.state.tasks
    run(main())


def test_unknown_method_is_unimplemented():
    async def main():
        async with Server() as s:
            with pytest.raises(GRPCError) as e:
                await s.unary("/test.Echo/Nope")(b"x")
            assert e.value.status is Status.UNIMPLEMENTED
            assert e.value.message == "Method not found: /test.Echo/Nope"
            assert await s.unary("/test.Echo/Unary")(b"still") == b"still"
    run(main())


def test_rpc_error_status_and_message_round_trip():
    async def main():
        async with Server() as s:
            with pytest.raises(GRPCError) as e:
                await s.unary("/test.Echo/Fail")(b"x")
            assert e.value.status is Status.NOT_FOUND and e.value.message == NON_ASCII
            with pytest.raises(GRPCError) as e:
                await s.unary("/test.Echo/FailAsync")(b"x")
            assert e.value.status is Status.INVALID_ARGUMENT and e.value.message == "bad input"
    run(main())


def test_other_exceptions_are_internal(caplog):
    async def main():
        async with Server() as s:
            with pytest.raises(GRPCError) as e:
                await s.unary("/test.Echo/Boom")(b"x")
            assert e.value.status is Status.INTERNAL and e.value.message == "boom"
    run(main())
    assert "exception in gRPC handler /test.Echo/Boom" in caplog.text


def test_deadline_cancels_the_handler():
    async def main():
        async with Server() as s:
            # grpclib enforces the deadline too; whichever side fires first, the handler is cancelled
            # (the exact server trailers are checked in test_deadline_exceeded_trailers)
            with pytest.raises((GRPCError, asyncio.TimeoutError)) as e:
                await s.unary("/test.Echo/Slow")(b"x", timeout=0.2)
            assert not isinstance(e.value, GRPCError) or e.value.status is Status.DEADLINE_EXCEEDED
            await asyncio.wait_for(s.router.cancelled.wait(), 2)
            context = s.router.contexts[0]
            assert context.deadline is not None
            await asyncio.sleep(0)
            assert not s.state.tasks
    run(main())


def test_client_cancel_cancels_the_handler():
    async def main():
        async with Server() as s:
            call = asyncio.ensure_future(s.unary("/test.Echo/Slow")(b"x"))
            await asyncio.wait_for(s.router.started.wait(), 2)
            call.cancel()
            await asyncio.wait_for(s.router.cancelled.wait(), 2)
            await asyncio.sleep(0)
            assert not s.state.tasks
            assert await s.unary("/test.Echo/Unary")(b"after") == b"after"
    run(main())


def test_streaming_echo_in_order():
    async def main():
        async with Server() as s:
            method = StreamStreamMethod(s.channel, "/test.Echo/Stream", bytes, bytes)
            async with method.open() as stream:
                for i in range(100):
                    await stream.send_message(b"%d" % i)
                await stream.end()
                replies = [reply async for reply in stream]
            assert replies == [b"echo:%d" % i for i in range(100)]
    run(main())


def test_streaming_error_ends_the_stream_with_its_status():
    async def main():
        async with Server() as s:
            with pytest.raises(GRPCError) as e:
                async with s.channel.request("/test.Echo/StreamFail", Cardinality.STREAM_STREAM, bytes,
                                             bytes) as stream:
                    await stream.send_message(b"one")
                    assert await stream.recv_message() == b"one"
                    await stream.recv_message()
            assert e.value.status is Status.UNAVAILABLE and e.value.message == "stream broke"
    run(main())


def test_oversized_message_is_resource_exhausted_and_the_connection_serves_on():
    async def main():
        async with Server(max_message_size=4 * 2**20) as s:
            with pytest.raises(GRPCError) as e:
                await s.unary("/test.Echo/Unary")(b"x" * (8 * 2**20))
            assert e.value.status is Status.RESOURCE_EXHAUSTED
            assert e.value.message == f"Received message larger than max ({8 * 2**20} vs. {4 * 2**20})"
            big = bytes(range(256)) * 16384  # 4 MiB, within the limit, both ways
            assert await s.unary("/test.Echo/Unary")(big[:4 * 2**20 - 16]) == big[:4 * 2**20 - 16]
    run(main())


def test_graceful_shutdown_lets_calls_in_flight_finish():
    async def main():
        async with Server() as s:
            call = asyncio.ensure_future(s.unary("/test.Echo/UnaryAsync")(b"x"))
            await asyncio.sleep(0.05)
            assert await s.unary("/test.Echo/Unary")(b"warm") == b"warm"
            s.state.close_idle()
            await s.state.drain(2)
            assert await call == b"async:x"
            assert not s.state.connections
    run(main())


# -- fake transport, h2 client in memory ----------------------------------------------------------
class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data) -> None:
        assert not self.closed, "write after close"
        self.out += data

    def writelines(self, chunks) -> None:
        for chunk in chunks:
            self.write(chunk)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 5555) if name == "peername" else default


class Wire:
    """GrpcProtocol over a FakeTransport, with an h2 client reading what it writes."""

    def __init__(self, router=None, **kwargs) -> None:
        self.router = router or EchoRouter()
        self.state = GrpcServerState()
        self.protocol = GrpcProtocol(self.router, server_state=self.state, **kwargs)
        self.transport = FakeTransport()
        self.protocol.connection_made(self.transport)
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.client.initiate_connection()
        self.events: list = []
        self.exchange()

    def exchange(self) -> None:
        while True:
            data = self.client.data_to_send()
            if data:
                self.protocol.data_received(data)
            out = bytes(self.transport.out)
            self.transport.out.clear()
            if out:
                self.events += self.client.receive_data(out)
            if not data and not out:
                return

    def call(self, path: bytes, message: bytes, extra=()) -> int:
        sid = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
                                       (b":authority", b"x"), (b"content-type", b"application/grpc"),
                                       *extra])
        self.client.send_data(sid, b"\x00" + len(message).to_bytes(4, "big") + message, end_stream=True)
        self.exchange()
        return sid

    def send(self, sid: int, message: bytes, end: bool = False) -> None:
        data = memoryview(b"\x00" + len(message).to_bytes(4, "big") + message)
        while data:
            room = min(self.client.local_flow_control_window(sid), self.client.max_outbound_frame_size)
            self.client.send_data(sid, data[:room].tobytes(), end_stream=end and len(data) <= room)
            data = data[room:]
            self.exchange()

    def read_all(self) -> None:
        """The client reads what it got: WINDOW_UPDATEs go back."""
        for event in self.events:
            if isinstance(event, h2.events.DataReceived) and not getattr(event, "acked", False):
                self.client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                event.acked = True
        self.exchange()

    def result(self, sid: int) -> tuple[dict, bytes, dict]:
        head, body, trailers = {}, b"", {}
        for event in self.events:
            if getattr(event, "stream_id", None) != sid:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                head = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
            elif isinstance(event, h2.events.TrailersReceived):
                trailers = dict(event.headers)
        return head, body, trailers


def test_sync_handler_answers_inside_data_received_without_a_task():
    async def main():
        wire = Wire()
        sid = wire.call(b"/test.Echo/Unary", b"ping")  # no await: the answer is already written
        head, body, trailers = wire.result(sid)
        assert head[b":status"] == b"200" and body == b"\x00\x00\x00\x00\x04ping"
        assert trailers == {b"grpc-status": b"0"} and not wire.state.tasks
        assert wire.router.contexts[0].peer == "ipv4:127.0.0.1:5555"
    run(main())


def test_async_handler_runs_as_a_tracked_task():
    async def main():
        wire = Wire()
        sid = wire.call(b"/test.Echo/UnaryAsync", b"x")
        assert len(wire.state.tasks) == 1 and wire.result(sid)[2] == {}
        await asyncio.sleep(0.01)
        wire.exchange()
        assert wire.result(sid)[1:] == (b"\x00\x00\x00\x00\x07async:x", {b"grpc-status": b"0"})
        assert not wire.state.tasks
    run(main())


def test_deadline_exceeded_trailers():
    async def main():
        wire = Wire()
        sid = wire.call(b"/test.Echo/Slow", b"x", [(b"grpc-timeout", b"50m")])
        await asyncio.sleep(0.15)
        wire.exchange()
        head = wire.result(sid)[0]
        assert head[b"grpc-status"] == b"4" and head[b"grpc-message"] == b"Deadline Exceeded"
        assert wire.router.cancelled.is_set() and not wire.state.tasks
    run(main())


def test_streaming_requests_wait_while_responses_pile_up_unsent():
    async def main():
        wire = Wire()
        sid = wire.client.get_next_available_stream_id()
        wire.client.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/test.Echo/Stream"),
                                       (b":authority", b"x"), (b"content-type", b"application/grpc")])
        big = b"x" * (5 * 2**20)
        wire.send(sid, big)
        await asyncio.sleep(0.01)
        wire.exchange()
        assert wire.router.seen == [len(big)]
        assert wire.protocol._conn.queued(sid) > 4 * 2**20  # the client reads nothing: 64 KiB window
        wire.send(sid, b"small")
        await asyncio.sleep(0.01)
        assert wire.router.seen == [len(big)]  # held back until the responses drain
        for _ in range(200):
            wire.read_all()
            await asyncio.sleep(0)
            if len(wire.router.seen) == 2:
                break
        assert wire.router.seen == [len(big), 5]
        wire.client.send_data(sid, b"", end_stream=True)
        for _ in range(50):
            await asyncio.sleep(0)
            wire.read_all()
        _, body, trailers = wire.result(sid)
        assert trailers == {b"grpc-status": b"0"}
        assert body.endswith(b"echo:small") and len(body) == 2 * 5 + len(big) + 5 + 10
    run(main())


def test_response_compression_when_the_client_accepts_it():
    async def main():
        wire = Wire(compression="gzip")
        payload = b"abc" * 1000
        sid = wire.call(b"/test.Echo/Unary", payload, [(b"grpc-accept-encoding", b"identity,deflate,gzip")])
        head, body, _ = wire.result(sid)
        assert head[b"grpc-encoding"] == b"gzip" and body[0] == 1 and len(body) < len(payload)
    run(main())


def test_keepalive_ping_without_ack_closes():
    async def main():
        wire = Wire(keepalive_time_ms=20, keepalive_timeout_ms=20)
        await asyncio.sleep(0.03)
        assert not wire.transport.closed and wire.transport.out  # a PING went out
        await asyncio.sleep(0.05)
        assert wire.transport.closed
    run(main())


def test_keepalive_ping_acked_keeps_the_connection():
    async def main():
        wire = Wire(keepalive_time_ms=20, keepalive_timeout_ms=30)
        for _ in range(5):
            await asyncio.sleep(0.02)
            wire.exchange()
        assert not wire.transport.closed
        assert any(isinstance(e, h2.events.PingReceived) for e in wire.events)
        wire.protocol.connection_lost(None)
    run(main())


def test_garbage_gets_goaway_and_close():
    async def main():
        wire = Wire()
        wire.protocol.data_received(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00")
        assert wire.transport.closed and b"\x07" in bytes(wire.transport.out[:9])
    run(main())


def test_unary_with_two_messages_or_none():
    async def main():
        wire = Wire()
        sid = wire.client.get_next_available_stream_id()
        wire.client.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/test.Echo/Unary"),
                                       (b":authority", b"x"), (b"content-type", b"application/grpc")])
        wire.client.send_data(sid, b"\x00\x00\x00\x00\x01a" * 2, end_stream=True)
        wire.exchange()
        head = wire.result(sid)[0]
        assert head[b"grpc-status"] == b"13" and head[b"grpc-message"] == b"Too many requests"
        sid = wire.client.get_next_available_stream_id()
        wire.client.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/test.Echo/Unary"),
                                       (b":authority", b"x"), (b"content-type", b"application/grpc")],
                                 end_stream=True)
        wire.exchange()
        head = wire.result(sid)[0]
        assert head[b"grpc-status"] == b"13" and head[b"grpc-message"] == b"No payload"
    run(main())


def test_server_does_not_import_grpcio():
    import subprocess
    import sys
    code = ("import sys, triton_asyncio.transport.grpc.protocol, triton_asyncio.transport.grpc.connection; "
            "assert 'grpc' not in sys.modules, 'grpcio imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
