"""GrpcConnection against a peer h2 client connection, bytes exchanged in memory (h11's ConnectionPair idea)."""
from __future__ import annotations

import gzip

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes

from triton_asyncio.codec.status import GrpcStatus
from triton_asyncio.transport.grpc.connection import (
    CallAborted,
    CallReset,
    CallStarted,
    ConnectionTerminated,
    GrpcConnection,
    HalfClosed,
    MessageReceived,
    PingAcked,
)

PATH = b"/inference.GRPCInferenceService/ModelInfer"
HEADERS = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", PATH), (b":authority", b"localhost"),
           (b"te", b"trailers"), (b"content-type", b"application/grpc"), (b"user-agent", b"test/1.0")]


def frame(payload: bytes, flag: int = 0) -> bytes:
    return bytes((flag,)) + len(payload).to_bytes(4, "big") + payload


def frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream id, payload) of each raw HTTP/2 frame in `data`."""
    out = []
    while data:
        size = int.from_bytes(data[:3], "big")
        out.append((data[3], data[4], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF, data[9:9 + size]))
        data = data[9 + size:]
    return out


class Pair:
    """A server GrpcConnection and an h2 client wired together in memory."""

    def __init__(self, client_window: int = 65535, **server_kwargs) -> None:
        self.server = GrpcConnection(**server_kwargs)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.client = h2.connection.H2Connection(config)
        self.client.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: client_window})
        self.client.initiate_connection()
        self.server_events: list = []
        self.client_events: list = []
        self.client_auto_ack = True
        self.pump()

    def pump(self) -> list:
        """Exchange bytes until both sides are quiet; return the server events of this round."""
        before = len(self.server_events)
        while True:
            to_server = self.client.data_to_send()
            if to_server:
                self.server_events += self.server.receive(to_server)
            to_client = self.server.data_to_send()
            if to_client:
                for event in self.client.receive_data(to_client):
                    self.client_events.append(event)
                    if isinstance(event, h2.events.DataReceived) and self.client_auto_ack:
                        self.client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if not to_server and not to_client:
                return self.server_events[before:]

    def start(self, headers=HEADERS, body: bytes = b"", end: bool = True) -> int:
        sid = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, headers, end_stream=end and not body)
        if body:
            self.send(sid, body, end)
        self.pump()
        return sid

    def send(self, sid: int, data: bytes, end: bool = True) -> None:
        """Send as the client's windows allow, pumping whenever they are exhausted."""
        view = memoryview(data)
        if not view:
            self.client.send_data(sid, b"", end_stream=end)
        while view:
            room = min(self.client.local_flow_control_window(sid), self.client.max_outbound_frame_size)
            if room == 0:
                self.pump()
                continue
            chunk, view = view[:room], view[room:]
            self.client.send_data(sid, chunk.tobytes(), end_stream=end and not view)
        self.pump()

    def response(self, sid: int) -> tuple[dict, bytes, dict, bool]:
        """(headers, body, trailers, ended) the client saw on `sid`."""
        headers, trailers, body, ended = {}, {}, b"", False
        for event in self.client_events:
            if getattr(event, "stream_id", None) != sid:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                headers = dict(event.headers)
            elif isinstance(event, h2.events.TrailersReceived):
                trailers = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
            elif isinstance(event, h2.events.StreamEnded):
                ended = True
        return headers, body, trailers, ended

    def resets(self, sid: int) -> list[int]:
        return [e.error_code for e in self.client_events
                if isinstance(e, h2.events.StreamReset) and e.stream_id == sid]


def messages(events, sid: int) -> list[bytes]:
    return [bytes(e.message) for e in events if isinstance(e, MessageReceived) and e.stream_id == sid]


# -- calls ---------------------------------------------------------------------------------------
def test_unary_call():
    pair = Pair()
    headers = HEADERS + [(b"grpc-timeout", b"250m"), (b"grpc-accept-encoding", b"gzip"), (b"x-trace", b"t1")]
    sid = pair.start(headers, frame(b"request"))
    started, message, closed = pair.server_events
    assert started == CallStarted(sid, PATH, [("user-agent", "test/1.0"), ("x-trace", "t1")], 0.25, None)
    assert isinstance(message, MessageReceived) and bytes(message.message) == b"request"
    assert closed == HalfClosed(sid)
    pair.server.respond(sid, b"response")
    pair.pump()
    head, body, trailers, ended = pair.response(sid)
    assert head[b":status"] == b"200" and head[b"content-type"] == b"application/grpc"
    assert body == frame(b"response") and trailers == {b"grpc-status": b"0"} and ended
    assert pair.resets(sid) == [] and pair.server.idle


def test_error_status_before_any_message_is_trailers_only():
    pair = Pair()
    sid = pair.start(body=frame(b"x"))
    pair.server.end(sid, GrpcStatus.NOT_FOUND, "model 'é' not found")
    pair.pump()
    head, body, trailers, ended = pair.response(sid)
    assert head[b"grpc-status"] == b"5" and head[b"grpc-message"] == b"model '%C3%A9' not found"
    assert body == b"" and trailers == {} and ended


def test_streaming_messages_and_status_after_them():
    pair = Pair()
    sid = pair.start(end=False)
    for i in range(3):
        pair.send(sid, frame(b"m%d" % i), end=False)
    assert messages(pair.server_events, sid) == [b"m0", b"m1", b"m2"]
    assert not any(isinstance(e, HalfClosed) for e in pair.server_events)
    pair.server.send_message(sid, b"r0")
    pair.server.send_message(sid, b"r1")
    pair.pump()
    pair.send(sid, b"", end=True)
    assert pair.server_events[-1] == HalfClosed(sid)
    pair.server.end(sid, GrpcStatus.OK)
    pair.pump()
    head, body, trailers, ended = pair.response(sid)
    assert body == frame(b"r0") + frame(b"r1") and trailers[b"grpc-status"] == b"0" and ended


def test_large_messages_both_ways_with_a_small_client_window():
    pair = Pair(client_window=65535)
    request = bytes(range(256)) * (4 * 4096)  # 4 MiB
    sid = pair.start(body=frame(request))
    [received] = messages(pair.server_events, sid)
    assert received == request
    assert pair.server_events[-1] == HalfClosed(sid)
    pair.client_auto_ack = False  # the client reads nothing yet: the server must queue
    pair.server.send_message(sid, request)
    pair.server.end(sid)
    pair.pump()
    queued = pair.server.queued(sid)
    assert 0 < queued <= len(request) + 5 - 65535 + 65535 and pair.server.queued_total == queued
    assert pair.response(sid)[2] == {}  # no trailers before the data
    pair.client_auto_ack = True
    for event in list(pair.client_events):  # now read what arrived: WINDOW_UPDATEs flush the queue
        if isinstance(event, h2.events.DataReceived):
            pair.client.acknowledge_received_data(event.flow_controlled_length, sid)
    pair.pump()
    head, body, trailers, ended = pair.response(sid)
    assert body == frame(request) and trailers == {b"grpc-status": b"0"} and ended
    assert pair.server.queued_total == 0 and pair.server.idle
    data_frames = [e for e in pair.client_events if isinstance(e, h2.events.DataReceived)]
    assert max(len(e.data) for e in data_frames) <= 16384  # the client's MAX_FRAME_SIZE


def test_rst_stream_mid_request():
    pair = Pair()
    sid = pair.start(end=False)
    pair.send(sid, frame(b"x" * 100)[:50], end=False)
    pair.client.reset_stream(sid, ErrorCodes.CANCEL)
    events = pair.pump()
    assert events == [CallReset(sid, ErrorCodes.CANCEL)]
    assert not pair.server.send_message(sid, b"late")  # never send on it again
    pair.server.end(sid, GrpcStatus.INTERNAL, "late")
    pair.server.reset(sid)
    assert pair.server.data_to_send() == b""
    other = pair.start(body=frame(b"next"))  # the connection carries on
    assert messages(pair.server_events, other) == [b"next"]


def test_stream_closed_by_h2_itself_is_reported_as_reset():
    pair = Pair()
    sid = pair.start(end=False)
    pair.server._h2.reset_stream(sid)  # as h2 does on its own for some stream errors
    assert not pair.server.send_message(sid, b"x")
    assert pair.server.receive(b"") == [CallReset(sid, ErrorCodes.STREAM_CLOSED)]
    assert pair.server.idle


def test_ping_is_answered():
    pair = Pair()
    pair.client.ping(b"12345678")
    assert pair.pump() == []
    assert any(isinstance(e, h2.events.PingAckReceived) and e.ping_data == b"12345678"
               for e in pair.client_events)


def test_server_ping_ack_is_reported():
    pair = Pair()
    pair.server.ping(b"abcdefgh")
    assert pair.pump() == [PingAcked(b"abcdefgh")]


def test_garbage_instead_of_the_preface_gets_goaway():
    server = GrpcConnection()
    server.data_to_send()
    [event] = server.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(event, ConnectionTerminated) and event.error_code == ErrorCodes.PROTOCOL_ERROR
    [(kind, _, _, payload)] = frames(server.data_to_send())
    assert kind == 0x7 and int.from_bytes(payload[4:8], "big") == ErrorCodes.PROTOCOL_ERROR
    assert server.closed


def test_protocol_error_after_preface_gets_goaway():
    pair = Pair()
    bad = b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00"  # WINDOW_UPDATE with increment 0
    [event] = pair.server.receive(bad)
    assert isinstance(event, ConnectionTerminated)
    assert [f[0] for f in frames(pair.server.data_to_send())] == [0x7]


@pytest.mark.parametrize("content_type", [b"application/json", b"text/plain", b""])
def test_non_grpc_content_type_gets_415(content_type):
    pair = Pair()
    headers = [h for h in HEADERS if h[0] != b"content-type"]
    if content_type:
        headers.append((b"content-type", content_type))
    sid = pair.start(headers, frame(b"x"), end=False)
    assert pair.server_events == []
    head, _, _, ended = pair.response(sid)
    assert head[b":status"] == b"415" and head[b"grpc-status"] == b"3" and ended
    assert head[b"grpc-message"] == b'invalid gRPC request content-type "%s"' % content_type
    assert pair.resets(sid) == [ErrorCodes.NO_ERROR]


@pytest.mark.parametrize("content_type", [b"application/grpc+proto", b"application/grpc;charset=x"])
def test_grpc_content_subtypes_are_accepted(content_type):
    pair = Pair()
    headers = [h for h in HEADERS if h[0] != b"content-type"] + [(b"content-type", content_type)]
    pair.start(headers, frame(b"x"))
    assert isinstance(pair.server_events[0], CallStarted)


# -- framing errors ------------------------------------------------------------------------------
def test_oversized_message_aborts_the_call_only():
    pair = Pair(max_message_size=1024)
    sid = pair.start(end=False)
    pair.send(sid, frame(b"x" * 2048)[:100], end=False)
    [aborted] = [e for e in pair.server_events if isinstance(e, CallAborted)]
    assert aborted == CallAborted(sid, GrpcStatus.RESOURCE_EXHAUSTED,
                                  "Received message larger than max (2048 vs. 1024)")
    head, _, _, ended = pair.response(sid)
    assert head[b"grpc-status"] == b"8" and ended and pair.resets(sid) == [ErrorCodes.NO_ERROR]
    pair.server.respond(sid, b"ignored")
    assert pair.server.data_to_send() == b""
    other = pair.start(body=frame(b"ok"))
    assert messages(pair.server_events, other) == [b"ok"]


def test_stream_ending_mid_message_is_truncated():
    pair = Pair()
    sid = pair.start(body=frame(b"abcdef")[:7])
    assert pair.server_events[-1] == CallAborted(sid, GrpcStatus.INTERNAL, "Truncated message")
    assert pair.response(sid)[0][b"grpc-status"] == b"13"


def test_unknown_grpc_encoding_is_unimplemented():
    pair = Pair()
    sid = pair.start(HEADERS + [(b"grpc-encoding", b"snappy")], frame(b"x", 1))
    assert pair.server_events == []
    head = pair.response(sid)[0]
    assert head[b"grpc-status"] == b"12" and b"grpc-accept-encoding" in head


def test_compressed_request_and_response():
    pair = Pair(compression="gzip")
    payload = b"tensor" * 1000
    headers = HEADERS + [(b"grpc-encoding", b"gzip"), (b"grpc-accept-encoding", b"identity,gzip")]
    sid = pair.start(headers, frame(gzip.compress(payload), 1))
    assert pair.server_events[0].response_encoding == "gzip"
    assert messages(pair.server_events, sid) == [payload]
    pair.server.respond(sid, payload)
    pair.pump()
    head, body, _, _ = pair.response(sid)
    assert head[b"grpc-encoding"] == b"gzip" and body[0] == 1
    assert gzip.decompress(body[5:]) == payload


def test_no_compression_unless_the_client_accepts_it():
    pair = Pair(compression="gzip")
    sid = pair.start(body=frame(b"x"))
    assert pair.server_events[0].response_encoding is None
    pair.server.respond(sid, b"y" * 1000)
    pair.pump()
    head, body, _, _ = pair.response(sid)
    assert b"grpc-encoding" not in head and body == frame(b"y" * 1000)


# -- flow control of received data ---------------------------------------------------------------
def test_held_acks_keep_the_stream_window_closed_until_released():
    pair = Pair(window=65535)
    sid = pair.start(end=False)
    pair.server.hold_acks(sid)
    pair.send(sid, frame(b"x" * 50000), end=False)
    assert pair.client.local_flow_control_window(sid) < 65535 - 50000
    pair.server.release_acks(sid)
    pair.pump()
    assert pair.client.local_flow_control_window(sid) == 65535


# -- shutdown ------------------------------------------------------------------------------------
def test_graceful_close_finishes_calls_in_flight_and_refuses_new_ones():
    pair = Pair()
    sid = pair.start(body=frame(b"x"))
    pair.server.close(graceful=True)
    goaway = pair.server.data_to_send()
    [(kind, _, _, payload)] = frames(goaway)
    assert kind == 0x7 and int.from_bytes(payload[:4], "big") == sid and payload[4:8] == b"\x00" * 4
    late = pair.client.get_next_available_stream_id()
    pair.client.send_headers(late, HEADERS, end_stream=True)
    assert pair.server.receive(pair.client.data_to_send()) == []
    pair.server.respond(sid, b"done")
    sent = frames(pair.server.data_to_send())
    assert (0x3, 0, late) in [f[:3] for f in sent]  # RST_STREAM REFUSED_STREAM for the new stream
    assert [f[0] for f in sent if f[2] == sid] == [0x1, 0x0, 0x1]  # headers, data, trailers
    assert pair.server.idle


def test_peer_goaway_terminates():
    pair = Pair()
    pair.client.close_connection()
    [event] = pair.pump()
    assert isinstance(event, ConnectionTerminated) and event.error_code == 0


# -- ping abuse (grpc-core's policy) --------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ping_policy_counts_strikes_and_resets_on_data():
    from triton_asyncio.transport.grpc.connection import PingPolicy
    clock = FakeClock()
    policy = PingPolicy(min_interval_ms=10_000, max_strikes=2, clock=clock)
    assert not policy.received(idle=False)  # the first ping is always fine
    clock.now += 10
    assert not policy.received(idle=False) and policy.strikes == 0  # exactly the interval: allowed
    clock.now += 1
    assert not policy.received(idle=False) and policy.strikes == 1
    assert not policy.received(idle=False) and policy.strikes == 2
    policy.data_sent()  # the server wrote headers or data: strikes forgiven
    assert not policy.received(idle=False) and policy.strikes == 1
    assert not policy.received(idle=False)
    assert policy.received(idle=False)  # the third strike ends the connection
    idle = PingPolicy(min_interval_ms=10_000, max_strikes=0, clock=clock)
    for _ in range(100):
        assert not idle.received(idle=True)  # max_strikes 0: never close


def test_ping_policy_idle_connections_get_the_two_hour_interval():
    from triton_asyncio.transport.grpc.connection import PingPolicy
    clock = FakeClock()
    strict = PingPolicy(min_interval_ms=10_000, max_strikes=1, clock=clock)
    permissive = PingPolicy(min_interval_ms=10_000, max_strikes=1, permit_without_calls=True, clock=clock)
    for policy in (strict, permissive):
        policy.received(idle=True)
    clock.now += 60
    assert not strict.received(idle=True) and strict.strikes == 1  # a minute is too soon when idle
    assert not permissive.received(idle=True) and permissive.strikes == 0


def test_too_many_pings_get_goaway_enhance_your_calm():
    from triton_asyncio.transport.grpc.connection import PingPolicy
    clock = FakeClock()
    pair = Pair(ping_policy=PingPolicy(min_interval_ms=300_000, max_strikes=2, clock=clock))
    terminated = []
    for i in range(4):
        pair.client.ping(i.to_bytes(8, "big"))
        terminated += [e for e in pair.pump() if isinstance(e, ConnectionTerminated)]
    assert terminated and terminated[0].reason == "too_many_pings"
    assert terminated[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    goaways = [e for e in pair.client_events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaways and goaways[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert goaways[0].additional_data == b"too_many_pings"
    # the pings before the last one were answered
    assert sum(isinstance(e, h2.events.PingAckReceived) for e in pair.client_events) >= 3
