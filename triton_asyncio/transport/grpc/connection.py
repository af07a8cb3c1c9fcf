"""gRPC over HTTP/2: a synchronous events processor over h2 that does no I/O (grpclib's shape).

Rules: everything about HTTP/2 for a gRPC server lives here: settings and flow-control windows,
request headers (path, metadata, grpc-timeout, encodings, content-type), per-stream de-framing,
queued response data flushed on WINDOW_UPDATE, trailers, RST_STREAM and GOAWAY. `receive()` turns
bytes into call events; the outbound methods queue frames that `data_to_send()` hands out. Calls
that are broken at this level (bad content-type, bad framing) are answered here and reported as
`CallAborted`. Nothing here knows asyncio, handlers or Triton.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, GoAwayFrame

from ...codec.grpc_framing import (
    ACCEPT_ENCODING,
    FramingError,
    MessageDecoder,
    encode_grpc_message,
    encode_message,
    parse_timeout,
)
from ...codec.status import GrpcStatus
from .h2_shortcuts import AVAILABLE as SHORTCUTS_AVAILABLE
from .h2_shortcuts import ConstantBlocks, DecodedBlocks, receive, send_whole_response

WINDOW = 16 * 2**20  # our receive window, per stream and for the connection
# Largest frame we accept (h2 allows 2**14 .. 2**24 - 1). 1 MiB frames measured slower end to end with
# perf_analyzer (1 MiB tensors, c8: 125 vs 139 infer/s): h2 copies whole frames and the client's
# window updates come in bigger steps, so we keep HTTP/2's default.
MAX_FRAME = 2**14
MAX_STREAMS = 4096  # concurrent calls per connection
SMALL = 64 * 1024  # a response message up to this size goes out as one frame when the window allows


def _data_frame_repr(frame: DataFrame) -> str:
    return f"<{len(frame.data)} bytes>"


# h2 logs every received frame as `trace("...", repr(frame))`, evaluated even with logging off, and a
# DATA frame's repr re-serializes and hex-encodes its whole body: about 1 ms of CPU per MiB received.
# A repr that shows only the length makes that line free; nothing else calls it.
DataFrame._body_repr = _data_frame_repr  # type: ignore[method-assign]

_CONFIG = dict(client_side=False, header_encoding=None, validate_inbound_headers=False,
               validate_outbound_headers=False, normalize_inbound_headers=False,
               normalize_outbound_headers=False)
# grpc-accept-encoding goes only on refusals (its spec use); on every response it costs an HPACK entry
_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]
_OK = [(b"grpc-status", b"0")]
_GRPC_CONTENT_TYPES = (b"application/grpc+", b"application/grpc;")


# -- events out ------------------------------------------------------------------------------------
# Plain slotted dataclasses, not frozen: a frozen __init__ costs 2.5x, and these are per call.
@dataclass(slots=True)
class CallStarted:
    stream_id: int
    path: bytes
    metadata: list[tuple[str, str]]  # non-pseudo, non-grpc-* headers (no content-type, te)
    timeout: float | None  # grpc-timeout in seconds
    response_encoding: str | None  # the compression responses on this call will use


@dataclass(slots=True)
class MessageReceived:
    stream_id: int
    message: bytes | bytearray | memoryview  # a view into received data, valid for the call


@dataclass(slots=True)
class HalfClosed:
    stream_id: int


@dataclass(slots=True)
class CallReset:
    """The client reset the stream (cancelled the call): send nothing more on it."""

    stream_id: int
    error_code: int


@dataclass(slots=True)
class CallAborted:
    """We ended the call for a transport reason (framing); its status is already on the wire."""

    stream_id: int
    status: int
    message: str


@dataclass(slots=True)
class StreamDrained:
    """A stream's queued response data all went out."""

    stream_id: int


@dataclass(slots=True)
class PingAcked:
    data: bytes


@dataclass(slots=True)
class ConnectionTerminated:
    """The peer sent GOAWAY, or broke the protocol (we answered with GOAWAY): close the transport."""

    error_code: int
    reason: str


class PingPolicy:
    """grpc-core's ping abuse policy (--grpc-http2-min-recv-ping-interval-without-data-ms,
    --grpc-http2-max-ping-strikes, --grpc-keepalive-permit-without-calls): a ping sooner than the
    allowed interval after the previous one is a strike; more strikes than allowed end the
    connection. Sending headers or data resets the strikes. Pure: the clock is injected."""

    __slots__ = ("min_interval_s", "max_strikes", "permit_without_calls", "clock", "_last", "strikes")

    IDLE_INTERVAL_S = 7200.0  # grpc-core's interval when idle and pings without calls are not permitted

    def __init__(self, min_interval_ms: int = 300_000, max_strikes: int = 2, permit_without_calls: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.min_interval_s = min_interval_ms / 1000
        self.max_strikes = max_strikes
        self.permit_without_calls = permit_without_calls
        self.clock = clock
        self._last: float | None = None
        self.strikes = 0

    def received(self, idle: bool) -> bool:
        """One PING arrived; True when the connection must be closed."""
        now = self.clock()
        interval = self.IDLE_INTERVAL_S if idle and not self.permit_without_calls else self.min_interval_s
        last, self._last = self._last, now
        if last is None or last + interval <= now:
            return False
        self.strikes += 1
        return self.max_strikes != 0 and self.strikes > self.max_strikes

    def data_sent(self) -> None:
        self.strikes = 0


class _Stream:
    """Our side of one call's stream."""

    __slots__ = ("decoder", "out", "queued", "headers_sent", "trailers", "half_closed", "hold", "unacked",
                 "encoding")

    def __init__(self, decoder: MessageDecoder, encoding: str | None) -> None:
        self.decoder = decoder
        self.out: deque[memoryview] = deque()  # response bytes the windows have not let out yet
        self.queued = 0
        self.headers_sent = False
        self.trailers: list | None = None  # held until `out` drains
        self.half_closed = False
        self.hold = False  # received bytes are acknowledged only when the consumer catches up
        self.unacked = 0
        self.encoding = encoding


class GrpcConnection:
    """H2 events processor for the server side of one connection; synchronous, no I/O."""

    def __init__(self, *, max_message_size: int = 2**31 - 1, compression: str | None = None,
                 max_concurrent_streams: int = MAX_STREAMS, window: int = WINDOW,
                 max_frame_size: int = MAX_FRAME, ping_policy: PingPolicy | None = None,
                 shortcuts: bool = True) -> None:
        if compression not in (None, "gzip", "deflate"):
            raise ValueError(f"unsupported response compression {compression!r}")
        self._max_message_size = max_message_size
        self._compression = compression
        h2c = self._h2 = h2.connection.H2Connection(h2.config.H2Configuration(**_CONFIG))
        h2c.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: max_frame_size,
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
        })
        h2c.max_inbound_frame_size = max_frame_size
        h2c.initiate_connection()
        if window > 65535:
            h2c.increment_flow_control_window(window - 65535)
        self._streams: dict[int, _Stream] = {}
        self._ok_blocks = ConstantBlocks(h2c.encoder, (_HEADERS, _OK))  # HPACK of an OK response
        self._decoded = DecodedBlocks(h2c.decoder)  # request header blocks seen before
        # h2_shortcuts for plain calls (False: h2 alone, as tests compare)
        self._shortcuts = shortcuts and SHORTCUTS_AVAILABLE
        self._extra = b""  # frames we build without h2 (our graceful GOAWAY)
        self._deferred: list = []  # events found while sending, reported by the next receive()
        self.queued_total = 0  # response bytes waiting for flow-control windows, all streams
        self.closing = False  # graceful GOAWAY sent: no new calls
        self.closed = False
        self.handshaken = False  # the client's preface and first SETTINGS frame have arrived
        self._pings = ping_policy if ping_policy is not None else PingPolicy()

    # -- input -----------------------------------------------------------------------------------
    def receive(self, data: bytes) -> list:
        """Feed received bytes; return the call events they caused, in order."""
        try:
            if self._shortcuts:
                h2_events = receive(self._h2, data, self._decoded)  # h2's receive_data, plain frames cheaper
            else:
                h2_events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            return [self._protocol_error(exc)]
        out: list = []
        if self._deferred:
            out, self._deferred = self._deferred, []
        dispatch = _DISPATCH
        for event in h2_events:
            process = dispatch.get(type(event))
            if process is not None:
                process(self, event, out)
        return out

    def _protocol_error(self, exc: h2.exceptions.ProtocolError) -> ConnectionTerminated:
        h2c = self._h2
        code = getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR)
        if h2c.state_machine.state is not h2.connection.ConnectionState.CLOSED:
            h2c.close_connection(error_code=code)  # e.g. a bad preface: h2 raises before its own GOAWAY
        self.closed = True
        self._streams.clear()
        return ConnectionTerminated(int(code), str(exc) or type(exc).__name__)

    def _on_request(self, event: h2.events.RequestReceived, out: list) -> None:
        sid = event.stream_id
        if self.closing:
            self._reset(sid, ErrorCodes.REFUSED_STREAM)
            return
        path = method = None
        content_type = b""
        timeout = encoding = accept = None
        metadata: list[tuple[str, str]] = []
        for name, value in event.headers:
            if name[0] == 58:  # b":"
                if name == b":path":
                    path = value
                elif name == b":method":
                    method = value
            elif name[:5] == b"grpc-":
                if name == b"grpc-timeout":
                    timeout = parse_timeout(value)
                elif name == b"grpc-encoding":
                    encoding = value.decode("latin-1")
                elif name == b"grpc-accept-encoding":
                    accept = value
            elif name == b"content-type":
                content_type = value
            elif name != b"te":
                metadata.append((name.decode("latin-1"), value.decode("latin-1")))
        ended = event.stream_ended is not None
        if not self._check_request(sid, method, path, content_type, ended):
            return
        try:
            decoder = MessageDecoder(self._max_message_size, encoding)
        except FramingError as exc:
            self._refuse(sid, 200, exc.status, exc.message, ended)
            return
        response_encoding = self._response_encoding(accept)
        self._streams[sid] = _Stream(decoder, response_encoding)
        out.append(CallStarted(sid, path, metadata, timeout, response_encoding))  # type: ignore[arg-type]

    def _check_request(self, sid: int, method: bytes | None, path: bytes | None, content_type: bytes,
                       ended: bool) -> bool:
        """grpc-go's answers to requests that are not gRPC calls."""
        if content_type != b"application/grpc" and not content_type.startswith(_GRPC_CONTENT_TYPES):
            self._refuse(sid, 415, GrpcStatus.INVALID_ARGUMENT,
                         f'invalid gRPC request content-type "{content_type.decode("latin-1")}"', ended)
            return False
        if method != b"POST":
            self._refuse(sid, 405, GrpcStatus.INTERNAL,
                         f'invalid gRPC request method "{(method or b"").decode("latin-1")}"', ended)
            return False
        if not path:
            self._refuse(sid, 400, GrpcStatus.INTERNAL, "missing :path", ended)
            return False
        return True

    def _response_encoding(self, accept: bytes | None) -> str | None:
        compression = self._compression
        if compression is None or accept is None:
            return None
        offered = {item.strip() for item in accept.split(b",")}
        return compression if compression.encode("ascii") in offered else None

    def _refuse(self, sid: int, http_status: int, status: int, message: str, ended: bool) -> None:
        headers = [(b":status", b"%d" % http_status), (b"content-type", b"application/grpc"),
                   (b"grpc-accept-encoding", ACCEPT_ENCODING)]
        headers += _trailers(status, message)
        self._h2.send_headers(sid, headers, end_stream=True)
        if not ended:
            self._reset(sid, ErrorCodes.NO_ERROR)

    def _on_data(self, event: h2.events.DataReceived, out: list) -> None:
        sid = event.stream_id
        stream = self._streams.get(sid)
        if stream is None:  # a call we already ended: keep the connection window open
            self._h2.acknowledge_received_data(event.flow_controlled_length, sid)
            return
        if stream.hold:
            stream.unacked += event.flow_controlled_length
        else:
            self._h2.acknowledge_received_data(event.flow_controlled_length, sid)
        try:
            messages = stream.decoder.feed(event.data)
        except FramingError as exc:
            self.abort(sid, exc.status, exc.message)
            out.append(CallAborted(sid, exc.status, exc.message))
            return
        for message in messages:
            out.append(MessageReceived(sid, message))

    def _on_stream_ended(self, event: h2.events.StreamEnded, out: list) -> None:
        sid = event.stream_id
        stream = self._streams.get(sid)
        if stream is None:
            return
        stream.half_closed = True
        if not stream.decoder.at_message_boundary:
            self.abort(sid, GrpcStatus.INTERNAL, "Truncated message")  # grpc-core's wording
            out.append(CallAborted(sid, GrpcStatus.INTERNAL, "Truncated message"))
            return
        out.append(HalfClosed(sid))

    def _on_stream_reset(self, event: h2.events.StreamReset, out: list) -> None:
        stream = self._streams.pop(event.stream_id, None)
        if stream is not None:
            self._forget(event.stream_id, stream)
            out.append(CallReset(event.stream_id, int(event.error_code)))

    def _on_window_updated(self, event: h2.events.WindowUpdated, out: list) -> None:
        if event.stream_id:
            stream = self._streams.get(event.stream_id)
            if stream is not None and stream.out:
                self._flush(event.stream_id, stream, out)
        elif self.queued_total:
            self._flush_all(out)

    def _on_settings_changed(self, event: h2.events.RemoteSettingsChanged, out: list) -> None:
        self.handshaken = True  # h2 reports the first SETTINGS only after a valid preface
        if self.queued_total:  # INITIAL_WINDOW_SIZE or MAX_FRAME_SIZE may have grown
            self._flush_all(out)

    def _on_ping(self, event: h2.events.PingReceived, out: list) -> None:
        """h2 has queued the ACK; a client pinging too often gets grpc-core's answer: GOAWAY
        ENHANCE_YOUR_CALM "too_many_pings" once it runs out of strikes."""
        if self._pings.received(idle=not self._streams):
            self._h2.close_connection(error_code=ErrorCodes.ENHANCE_YOUR_CALM, additional_data=b"too_many_pings")
            self.closed = True
            self._streams.clear()
            out.append(ConnectionTerminated(int(ErrorCodes.ENHANCE_YOUR_CALM), "too_many_pings"))

    def _on_ping_ack(self, event: h2.events.PingAckReceived, out: list) -> None:
        out.append(PingAcked(event.ping_data))

    def _on_terminated(self, event: h2.events.ConnectionTerminated, out: list) -> None:
        self.closed = True
        self._streams.clear()
        reason = (event.additional_data or b"").decode("latin-1")
        out.append(ConnectionTerminated(int(event.error_code or 0), reason))

    # -- output ----------------------------------------------------------------------------------
    def data_to_send(self) -> bytes:
        data = self._h2.data_to_send()
        if self._extra:
            data, self._extra = self._extra + data, b""
        return data

    def start_response(self, sid: int) -> None:
        """Response headers (`:status 200`, content-type, grpc-encoding when compressing)."""
        self._pings.data_sent()
        stream = self._streams.get(sid)
        if stream is None or stream.headers_sent:
            return
        stream.headers_sent = True
        headers = _HEADERS
        if stream.encoding is not None:
            headers = headers + [(b"grpc-encoding", stream.encoding.encode("ascii"))]
        try:
            self._h2.send_headers(sid, headers)
        except h2.exceptions.StreamClosedError:
            self._lost(sid, stream)

    def send_message(self, sid: int, payload: bytes | bytearray | memoryview) -> bool:
        """Frame and send (or queue for the windows) one message; False if the call is over."""
        self._pings.data_sent()
        stream = self._streams.get(sid)
        if stream is None or stream.trailers is not None:
            return False
        if not stream.headers_sent:
            self.start_response(sid)
            if stream is not self._streams.get(sid):
                return False
        prefix, body = encode_message(payload, stream.encoding)
        size = 5 + len(body)
        h2c = self._h2
        try:
            if (size <= SMALL and not stream.out and size <= h2c.max_outbound_frame_size
                    and size <= h2c.local_flow_control_window(sid)):
                h2c.send_data(sid, prefix + body)  # the common case: one frame, no queue
                return True
        except h2.exceptions.StreamClosedError:
            self._lost(sid, stream)
            return False
        stream.out.append(memoryview(prefix))
        stream.out.append(memoryview(body))
        stream.queued += size
        self.queued_total += size
        self._flush(sid, stream, None)
        return True

    def respond(self, sid: int, payload: bytes | bytearray | memoryview) -> None:
        """A whole unary response: headers, the message, OK trailers."""
        stream = self._streams.get(sid)
        if (stream is not None and stream.half_closed and not stream.headers_sent and stream.encoding is None
                and stream.trailers is None and len(payload) <= SMALL and self._shortcuts):
            frames = self._ok_blocks.get()  # the common case, in one go: h2_shortcuts
            if frames is not None and send_whole_response(self._h2, sid, frames, encode_message(payload)):
                self._pings.data_sent()
                self._finish(sid, stream)
                return
        self.start_response(sid)
        self.send_message(sid, payload)
        self.end(sid)

    def end(self, sid: int, status: int = 0, message: str = "") -> None:
        """Trailers once queued data is out; trailers-only if no headers went out yet."""
        stream = self._streams.get(sid)
        if stream is None or stream.trailers is not None:
            return
        trailers = _OK if not status else _trailers(status, message)
        if stream.out:
            stream.trailers = trailers
            return
        if not stream.headers_sent:
            trailers = _HEADERS + trailers
        try:
            self._h2.send_headers(sid, trailers, end_stream=True)
        except h2.exceptions.StreamClosedError:
            self._lost(sid, stream)
            return
        self._finish(sid, stream)

    def abort(self, sid: int, status: int, message: str) -> None:
        """End the call now with `status`, dropping response data not yet sent."""
        stream = self._streams.get(sid)
        if stream is None:
            return
        self.queued_total -= stream.queued
        stream.out.clear()
        stream.queued = 0
        stream.trailers = None
        self.end(sid, status, message)

    def reset(self, sid: int, error_code: int = ErrorCodes.CANCEL) -> None:
        """RST_STREAM: the call is over without a status."""
        stream = self._streams.pop(sid, None)
        if stream is not None:
            self._forget(sid, stream)
            self._reset(sid, error_code)

    def queued(self, sid: int) -> int:
        stream = self._streams.get(sid)
        return stream.queued if stream is not None else 0

    # -- flow control of received data -------------------------------------------------------------
    def hold_acks(self, sid: int) -> None:
        """Stop returning window for `sid` until `release_acks` (the consumer is behind)."""
        stream = self._streams.get(sid)
        if stream is not None:
            stream.hold = True

    def release_acks(self, sid: int) -> None:
        stream = self._streams.get(sid)
        if stream is not None:
            stream.hold = False
            if stream.unacked:
                self._h2.acknowledge_received_data(stream.unacked, sid)
                stream.unacked = 0

    # -- connection --------------------------------------------------------------------------------
    def ping(self, data: bytes = b"\x00" * 8) -> None:
        self._h2.ping(data)

    @property
    def idle(self) -> bool:
        return not self._streams

    def close(self, graceful: bool = True) -> None:
        """GOAWAY. Graceful: in-flight calls finish and new streams are refused; we build the frame
        ourselves because h2 refuses to send anything after its own GOAWAY."""
        if self.closed or (graceful and self.closing):
            return
        if graceful:
            self.closing = True
            goaway = GoAwayFrame(0, last_stream_id=self._h2.highest_inbound_stream_id,
                                 error_code=ErrorCodes.NO_ERROR)
            self._extra += self._h2.data_to_send() + goaway.serialize()
            return
        self.closed = True
        self._h2.close_connection()

    # -- internals ---------------------------------------------------------------------------------
    def _flush_all(self, out: list | None) -> None:
        for sid, stream in list(self._streams.items()):
            if stream.out:
                self._flush(sid, stream, out)

    def _flush(self, sid: int, stream: _Stream, out: list | None) -> None:
        """Send queued data as far as the windows allow; trailers after the last byte."""
        try:
            if not self._send_queued(sid, stream):
                return
            if stream.trailers is not None:
                self._h2.send_headers(sid, stream.trailers, end_stream=True)
                self._finish(sid, stream)
        except h2.exceptions.StreamClosedError:
            self._lost(sid, stream)
            return
        if out is not None:
            out.append(StreamDrained(sid))

    def _send_queued(self, sid: int, stream: _Stream) -> bool:
        """DATA frames from the queue while the windows allow; True once it is empty."""
        h2c = self._h2
        queue = stream.out
        while queue:
            room = min(h2c.local_flow_control_window(sid), h2c.max_outbound_frame_size)
            if room <= 0:
                return False
            parts = []
            size = 0
            while queue and size < room:
                head = queue[0]
                if len(head) <= room - size:
                    parts.append(queue.popleft())
                    size += len(head)
                else:
                    parts.append(head[:room - size])
                    queue[0] = head[room - size:]
                    size = room
            h2c.send_data(sid, parts[0] if len(parts) == 1 else b"".join(parts))
            stream.queued -= size
            self.queued_total -= size
        return True

    def _finish(self, sid: int, stream: _Stream) -> None:
        """Our side is done; if the client is still sending, tell it to stop (RST NO_ERROR)."""
        del self._streams[sid]
        self._forget(sid, stream)
        if not stream.half_closed:
            self._reset(sid, ErrorCodes.NO_ERROR)

    def _reset(self, sid: int, error_code: int) -> None:
        """RST_STREAM unless h2 already has the stream closed (its END_STREAM may be in this batch)."""
        try:
            self._h2.reset_stream(sid, error_code)
        except h2.exceptions.StreamClosedError:
            pass

    def _lost(self, sid: int, stream: _Stream) -> None:
        """h2 closed the stream under us (a stream error it answered itself): report it as a reset."""
        self._streams.pop(sid, None)
        self._forget(sid, stream)
        self._deferred.append(CallReset(sid, ErrorCodes.STREAM_CLOSED))

    def _forget(self, sid: int, stream: _Stream) -> None:
        self.queued_total -= stream.queued
        stream.queued = 0
        stream.out.clear()
        if stream.unacked:
            self._h2.acknowledge_received_data(stream.unacked, sid)  # the connection window
            stream.unacked = 0


def _trailers(status: int, message: str) -> list[tuple[bytes, bytes]]:
    trailers = [(b"grpc-status", b"%d" % status)]
    if message:
        trailers.append((b"grpc-message", encode_grpc_message(message)))
    return trailers


_DISPATCH = {
    h2.events.RequestReceived: GrpcConnection._on_request,
    h2.events.DataReceived: GrpcConnection._on_data,
    h2.events.StreamEnded: GrpcConnection._on_stream_ended,
    h2.events.StreamReset: GrpcConnection._on_stream_reset,
    h2.events.WindowUpdated: GrpcConnection._on_window_updated,
    h2.events.RemoteSettingsChanged: GrpcConnection._on_settings_changed,
    h2.events.PingReceived: GrpcConnection._on_ping,
    h2.events.PingAckReceived: GrpcConnection._on_ping_ack,
    h2.events.ConnectionTerminated: GrpcConnection._on_terminated,
}
