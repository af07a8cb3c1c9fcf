"""h2_shortcuts checked against h2 itself: the same script runs on a GrpcConnection with the
shortcuts and on one without, and the wire bytes, the events and h2's state must be identical."""
from __future__ import annotations

import copy
import dataclasses

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes
from hpack import Encoder, NeverIndexedHeaderTuple

from triton_asyncio.codec.status import GrpcStatus
from triton_asyncio.transport.grpc import connection as connection_module
from triton_asyncio.transport.grpc import h2_shortcuts
from triton_asyncio.transport.grpc.connection import GrpcConnection

PATH = b"/inference.GRPCInferenceService/ModelInfer"
HEADERS = [(b":scheme", b"http"), (b":method", b"POST"), (b":authority", b"localhost:8001"), (b":path", PATH),
           (b"te", b"trailers"), (b"content-type", b"application/grpc"),
           (b"user-agent", b"grpc-c++/1.67.1 grpc-c/44.0.0 (linux; chttp2)"),
           (b"grpc-accept-encoding", b"identity, deflate, gzip")]
SETTING = h2.settings.SettingCodes


def frame(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def raw_frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + sid.to_bytes(4, "big") + payload


class Pair:
    """A server GrpcConnection and an h2 client wired in memory; records everything that passes."""

    def __init__(self, shortcuts: bool, client_window: int = 2**20, split: int = 0, **server_kwargs) -> None:
        self.server = GrpcConnection(shortcuts=shortcuts, **server_kwargs)
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.client.local_settings = h2.settings.Settings(
            client=True, initial_values={SETTING.INITIAL_WINDOW_SIZE: client_window})
        self.client.initiate_connection()
        self.split = split  # >0: client bytes reach the server in pieces of this size
        self.wire: list[bytes] = []  # server -> client
        self.server_events: list = []
        self.client_events: list = []
        self.auto_ack = True
        self.client_reads = True  # False: the server's bytes are only recorded
        self.pump()

    def feed(self, data: bytes) -> None:
        step = self.split or len(data)
        for i in range(0, len(data), step):
            self.server_events += [_plain(e) for e in self.server.receive(data[i:i + step])]

    def pump(self) -> None:
        while True:
            to_server = self.client.data_to_send()
            if to_server:
                self.feed(to_server)
            to_client = self.server.data_to_send()
            if to_client:
                self.wire.append(to_client)
                for event in self.client.receive_data(to_client) if self.client_reads else ():
                    self.client_events.append(repr(event))
                    if isinstance(event, h2.events.DataReceived) and self.auto_ack:
                        self.client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if not to_server and not to_client:
                return

    def call(self, body: bytes = b"request", headers=HEADERS, end: bool = True, **kwargs) -> int:
        sid = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, headers, **kwargs)
        self.client.send_data(sid, frame(body), end_stream=end)
        return sid

    def half_closed(self) -> list[int]:
        """Streams whose calls are complete and not yet answered (answered ones are marked)."""
        sids = [e[1]["stream_id"] for e in self.server_events if e[0] == "HalfClosed"]
        return [sid for sid in sids if self.server._streams.get(sid) is not None]

    def state(self) -> dict:
        """h2's state, as far as a shortcut could have touched it."""
        h2c = self.server._h2
        streams = {sid: (s.state_machine.state, s.state_machine.stream_closed_by, s.state_machine.headers_sent,
                         s.state_machine.trailers_sent, s.state_machine.headers_received,
                         s.state_machine.client, s.outbound_flow_control_window,
                         s._inbound_window_manager.current_window_size, s._expected_content_length,
                         s._actual_content_length, s.request_method)
                   for sid, s in h2c.streams.items()}
        return dict(
            connection=h2c.state_machine.state, streams=streams, closed=dict(h2c._closed_streams),
            outbound=h2c.outbound_flow_control_window,
            inbound=h2c._inbound_flow_control_window_manager.current_window_size,
            highest=h2c.highest_inbound_stream_id,
            encoder=(list(h2c.encoder.header_table.dynamic_entries), h2c.encoder.header_table.resized),
            decoder=list(h2c.decoder.header_table.dynamic_entries),
            buffered=bytes(getattr(h2c.incoming_buffer, h2_shortcuts._UNPARSED)), pending=h2c.data_to_send())


def _plain(event) -> tuple:
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    return type(event).__name__, {k: bytes(v) if isinstance(v, memoryview) else v for k, v in fields.items()}


def both(script, **kwargs) -> tuple[Pair, Pair]:
    """Run `script(pair)` with and without the shortcuts; everything observable must match."""
    fast, slow = Pair(True, **kwargs), Pair(False, **kwargs)
    script(fast)
    script(slow)
    assert fast.wire == slow.wire
    assert fast.server_events == slow.server_events
    assert fast.client_events == slow.client_events
    fast_state, slow_state = fast.state(), slow.state()
    if fast_state["connection"] is h2.connection.ConnectionState.CLOSED:
        # after a protocol error h2 stops reading: what it had not parsed yet is never used
        del fast_state["buffered"], slow_state["buffered"]
    assert fast_state == slow_state
    return fast, slow


@pytest.fixture
def taken(monkeypatch):
    """Counts the shortcuts that were taken: {'respond': n, 'frames': n} (frames h2 did not see)."""
    counts = {"respond": 0, "frames": 0}
    send = connection_module.send_whole_response

    def counted_send(*args):
        done = send(*args)
        counts["respond"] += done
        return done

    def counted_receive(h2c, data, blocks):
        seen = []
        original = h2c.receive_data
        h2c.receive_data = lambda chunk: seen.append(len(chunk)) or original(chunk)
        try:
            events = h2_shortcuts.receive(h2c, data, blocks)
        finally:
            del h2c.receive_data
        counts["frames"] += len(data) > sum(seen)
        return events

    monkeypatch.setattr(connection_module, "send_whole_response", counted_send)
    monkeypatch.setattr(connection_module, "receive", counted_receive)
    return counts


def answer(pair: Pair, payload: bytes | None = None) -> None:
    """Respond to every complete call: `payload`, or a reply naming the stream."""
    pair.pump()
    for sid in pair.half_closed():
        pair.server.respond(sid, payload if payload is not None else b"reply %d" % sid)
    pair.pump()


# -- the plain case, and mixes of plain and not --------------------------------------------------
def test_sequential_unary_calls(taken):
    def script(pair):
        for _ in range(6):
            pair.call()
            answer(pair)
    fast, _ = both(script)
    assert taken["respond"] == 5  # the first response adds its headers to HPACK's table: h2 writes it
    assert taken["frames"] >= 6
    bodies = [e for e in fast.client_events if e.startswith("<DataReceived")]
    assert len(bodies) == 6 and fast.server.idle
    trailers = [e for e in fast.client_events if e.startswith("<TrailersReceived")]
    assert all("(b'grpc-status', b'0')" in t for t in trailers)


def test_interleaved_calls_answered_out_of_order(taken):
    def script(pair):
        for _ in range(3):
            sids = [pair.call(b"r%d" % i) for i in range(8)]
            pair.pump()
            for sid in reversed(sids):
                pair.server.respond(sid, b"x" * (sid * 37 % 300))
            pair.pump()
    both(script)
    assert taken["respond"] >= 20


@pytest.mark.parametrize("split", [1, 7, 100, 333])
def test_client_bytes_in_arbitrary_pieces(split, taken):
    def script(pair):
        for _ in range(4):
            pair.call(b"q" * 50)
            pair.call(b"z" * 5000)
            answer(pair)
    both(script, split=split)
    assert taken["respond"] > 0


def test_big_and_small_responses_and_a_small_client_window(taken):
    def script(pair):
        for size in (10, 40000, 10, 70000, 10, 16384 - 5, 16384 - 4, 10):
            pair.call()
            answer(pair, b"b" * size)
    fast, _ = both(script, client_window=65535)
    assert taken["respond"] >= 4


def test_a_client_that_stops_reading_then_reads(taken):
    def script(pair):
        pair.auto_ack = False
        for _ in range(5):
            pair.call()
            answer(pair, b"w" * 20000)
        pair.auto_ack = True
        pair.client.increment_flow_control_window(200000)
        for sid, stream in list(pair.client.streams.items()):
            if stream.open:
                pair.client.increment_flow_control_window(65535, sid)
        pair.pump()
        pair.call()
        answer(pair)
    both(script, client_window=65535)


def test_errors_resets_and_early_answers(taken):
    def script(pair):
        a, b, c, d = (pair.call() for _ in range(4))
        e = pair.call(end=False)
        pair.pump()
        pair.server.end(a, GrpcStatus.NOT_FOUND, "no such model")  # trailers-only
        pair.server.abort(b, GrpcStatus.INTERNAL, "boom")
        pair.client.reset_stream(c, ErrorCodes.CANCEL)
        pair.pump()
        pair.server.respond(c, b"late")  # the call is gone
        pair.server.respond(e, b"before the client half-closed")  # not plain: RST NO_ERROR
        pair.server.respond(d, b"fine")
        pair.pump()
        pair.call()
        answer(pair)
    both(script)
    assert taken["respond"] == 2


def test_response_compression_is_not_a_plain_case(taken):
    def script(pair):
        for _ in range(3):
            pair.call(headers=HEADERS[:-1] + [(b"grpc-accept-encoding", b"gzip")])
            answer(pair, b"compress me " * 100)
        pair.call(headers=HEADERS[:-1] + [(b"grpc-accept-encoding", b"identity")])
        answer(pair)
    fast, _ = both(script, compression="gzip")
    assert taken["respond"] == 1
    gzipped = [e for e in fast.client_events if e.startswith("<DataReceived")][1]
    assert "data:01" in gzipped  # the compressed flag: h2's path wrote it


def test_request_headers_the_fast_receiver_leaves_to_h2(taken):
    """CONTINUATION, PRIORITY, padding, trailers from the client, changing and sensitive metadata."""
    def script(pair):
        pair.call(headers=HEADERS + [(b"x-big", b"v" * 20000)])  # a block over one frame
        pair.call(priority_weight=200)
        sid = pair.client.get_next_available_stream_id()
        pair.client.send_headers(sid, HEADERS)
        pair.client.send_data(sid, frame(b"padded"), end_stream=True, pad_length=17)
        sid = pair.client.get_next_available_stream_id()
        pair.client.send_headers(sid, HEADERS)
        pair.client.send_data(sid, frame(b"then trailers"))
        pair.client.send_headers(sid, [(b"x-trailer", b"1")], end_stream=True)
        for i in range(3):
            pair.call(headers=HEADERS + [(b"x-request-id", b"%d" % i)])  # indexed anew each time
            pair.call(headers=HEADERS + [NeverIndexedHeaderTuple(b"authorization", b"secret")])
        answer(pair)
    both(script)
    assert taken["frames"] > 0


def test_table_size_changes_from_the_client(taken):
    def script(pair):
        for size in (4096, 64, 0, 4096, 100000):
            pair.client.update_settings({SETTING.HEADER_TABLE_SIZE: size})
            for _ in range(3):
                pair.call()
                answer(pair)
    both(script)
    assert taken["respond"] > 0


def test_max_frame_size_and_window_settings_changes(taken):
    def script(pair):
        for frame_size, window in ((16384, 65535), (20000, 10), (2**20, 2**20)):
            pair.client.update_settings({SETTING.MAX_FRAME_SIZE: frame_size, SETTING.INITIAL_WINDOW_SIZE: window})
            for size in (100, 18000):
                pair.call()
                answer(pair, b"s" * size)
        pair.client.ping(b"12345678")
        pair.call()
        answer(pair)
    both(script)


def test_graceful_goaway_then_more_calls(taken):
    def script(pair):
        pair.call()
        answer(pair)
        sid = pair.call()
        pair.pump()
        pair.server.close(graceful=True)
        pair.client_reads = False  # an h2 client takes nothing after GOAWAY
        pair.server.respond(sid, b"still answered")
        pair.pump()
    both(script)


# -- protocol errors in frames the fast receiver handles ------------------------------------------
def _first_call(pair: Pair) -> None:
    pair.call()
    answer(pair)


BROKEN = [
    raw_frame(0x1, 0x4 | 0x1, 101, b"\xff\xff\xff\xff\x0f"),  # an HPACK index far past the table
    raw_frame(0x1, 0x4, 101, b"\x3f\xe1\xff\xff\x0f"),  # a table size update above the maximum
    raw_frame(0x0, 0x1, 99, b"\x00"),  # DATA on an idle stream
    raw_frame(0x1, 0x4, 2, b"\x82"),  # a client opening an even stream
]


@pytest.mark.parametrize("raw", BROKEN)
def test_broken_frames_end_the_connection_alike(raw):
    def script(pair):
        _first_call(pair)
        pair.feed(raw)
        pair.pump()
    fast, _ = both(script)
    assert fast.server_events[-1][0] == "ConnectionTerminated"


@pytest.mark.parametrize("raw", BROKEN)
def test_receive_raises_and_answers_as_receive_data_does(raw):
    outcomes = []
    for pair in (Pair(True), Pair(False)):
        _first_call(pair)
        h2c = pair.server._h2
        with pytest.raises(h2.exceptions.ProtocolError) as info:
            if pair.server._shortcuts:
                h2_shortcuts.receive(h2c, raw, pair.server._decoded)
            else:
                h2c.receive_data(raw)
        outcomes.append((type(info.value), str(info.value), h2c.state_machine.state, h2c.data_to_send()))
    assert outcomes[0] == outcomes[1]
    assert b"\x07" in outcomes[0][3][3:4]  # a GOAWAY frame went out


def test_data_past_the_receive_window_ends_the_connection_alike():
    def script(pair):
        _first_call(pair)
        sid = pair.call(end=False)
        pair.pump()
        body = b"\x00" * 16384
        pair.feed(b"".join(raw_frame(0x0, 0, sid, body) for _ in range(5)))
        pair.pump()
    fast, _ = both(script, window=65535)
    assert fast.server_events[-1][0] == "ConnectionTerminated"
    assert "FLOW_CONTROL_ERROR" in repr(fast.server_events[-1]) or fast.server_events[-1][1]["error_code"] == 3


def test_too_many_streams_is_refused_alike():
    def script(pair):
        _first_call(pair)
        for sid in (3, 5, 7):  # past the client's own check of our SETTINGS
            pair.feed(raw_frame(0x1, 0x4, sid, pair.client.encoder.encode(HEADERS)))
        pair.pump()
    fast, _ = both(script, max_concurrent_streams=2)
    assert fast.server_events[-1][0] == "ConnectionTerminated"


# -- the HPACK caches ------------------------------------------------------------------------------
OK_LISTS = ([(b":status", b"200"), (b"content-type", b"application/grpc")], [(b"grpc-status", b"0")])


def test_constant_blocks_are_what_the_encoder_would_write():
    encoder = Encoder()
    blocks = h2_shortcuts.ConstantBlocks(encoder, OK_LISTS)
    assert blocks.get() is None  # content-type and grpc-status are not in the table yet
    encoder.encode(OK_LISTS[0])
    assert blocks.get() is None
    encoder.encode(OK_LISTS[1])
    for _ in range(3):
        frames = blocks.get()
        assert [block for _, block in frames] == [copy.deepcopy(encoder).encode(h) for h in OK_LISTS]
        assert [head for head, _ in frames] == [b"\x00\x00%c\x01\x04" % len(frames[0][1]),
                                                b"\x00\x00%c\x01\x05" % len(frames[1][1])]
        encoder.encode([(b"x-other", b"%d" % id(frames))])  # a new entry moves ours: new indices
    encoder.header_table_size = 100  # a pending size change must be announced by h2
    assert blocks.get() is None
    encoder.encode([(b":status", b"200")])
    frames = blocks.get()
    assert frames is None or [b for _, b in frames] == [copy.deepcopy(encoder).encode(h) for h in OK_LISTS]


def test_decoded_blocks_cache_only_what_leaves_the_table_alone():
    encoder, decoder = Encoder(), h2.connection.H2Connection().decoder
    cache = h2_shortcuts.DecodedBlocks(decoder)
    first = encoder.encode(HEADERS)  # literals with indexing: the table changes
    assert cache.decode(first) == HEADERS
    second = encoder.encode(HEADERS)  # all indexed now
    assert second != first and len(second) == len(HEADERS)
    headers = cache.decode(second)
    assert headers == HEADERS and cache.decode(second) is headers  # cached
    assert cache.decode(first) == HEADERS  # decoded again: it adds entries ...
    assert cache.decode(second) is not headers  # ... so the cache was dropped
    decoder.max_header_list_size = 10  # a lower limit: the cached result must not bypass it
    with pytest.raises(h2.exceptions.DenialOfServiceError):
        cache.decode(second)


def test_half_closed_event_order_is_kept():
    pair = Pair(True)
    sids = [pair.call(b"m%d" % i) for i in range(3)]
    pair.pump()
    kinds = [e[0] for e in pair.server_events]
    assert kinds == ["CallStarted", "MessageReceived", "HalfClosed"] * 3
    assert [e[1]["stream_id"] for e in pair.server_events if e[0] == "HalfClosed"] == sids
