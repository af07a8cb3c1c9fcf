"""gRPC connection glue: bytes into GrpcConnection, its call events to the Router's handlers.

Rules: connection.py decides everything about HTTP/2 and framing; this module feeds it, dispatches
its events (a dict on the event type), runs handlers, and owns the asyncio side: tasks, deadlines,
keepalive PINGs, coalesced writes. A unary handler that returns bytes is answered inside
data_received, with no task. An `RpcError` becomes its status here and nowhere else; any other
exception is INTERNAL and logged.
"""
from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import Callable

from ...codec.status import GrpcStatus
from ..http.flow import FlowControl
from ..http.protocol import ServerState
from ..tcp import set_nodelay
from .connection import (
    CallAborted,
    CallReset,
    CallStarted,
    ConnectionTerminated,
    GrpcConnection,
    HalfClosed,
    MessageReceived,
    PingAcked,
    PingPolicy,
    StreamDrained,
)
from .handlers import Buffer, CallContext, Router, RpcError, StreamHandler, UnaryHandler

log = logging.getLogger("triton_asyncio.grpc")

STREAM_HIGH_WATER = 4 * 2**20  # queued response bytes on a stream above which its requests wait
_KEEPALIVE_PING = b"tritonka"
# grpc-core's GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS default (tritonserver sets no flag for it): a
# connection whose preface and SETTINGS have not arrived by then is closed, so a client trickling
# the preface a byte at a time does not hold it until the 2-hour keepalive PING.
HANDSHAKE_TIMEOUT = 120.0
_METHODS: dict[bytes, str] = {}  # :path -> str for the paths the router knows


class GrpcServerState(ServerState):
    """Shared by every connection of one listener: `connections`, `tasks`, `close_idle()` (GOAWAY,
    close once in-flight calls end) and `drain(timeout)`, as for HTTP."""


class _Call:
    """One call as the protocol sees it."""

    __slots__ = ("stream_id", "context", "unary", "request", "task", "timer", "requests")

    def __init__(self, stream_id: int, context: CallContext, unary: UnaryHandler | None) -> None:
        self.stream_id = stream_id
        self.context = context
        self.unary = unary
        self.request: Buffer | None = None
        self.task: asyncio.Future | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.requests: _Requests | None = None  # streaming calls only


class GrpcProtocol(asyncio.Protocol):
    def __init__(self, router: Router, *, max_message_size: int = 2**31 - 1,
                 server_state: GrpcServerState | None = None, keepalive_time_ms: int = 7_200_000,
                 keepalive_timeout_ms: int = 20_000, compression: str | None = None,
                 max_concurrent_streams: int = 4096, min_recv_ping_interval_ms: int = 300_000,
                 max_ping_strikes: int = 2, permit_pings_without_calls: bool = False) -> None:
        self._router = router
        self._ping_settings = (min_recv_ping_interval_ms, max_ping_strikes, permit_pings_without_calls)
        self._state = server_state if server_state is not None else GrpcServerState()
        self._max_message_size = max_message_size
        self._compression = compression
        self._max_streams = max_concurrent_streams
        self._keepalive_time = keepalive_time_ms / 1000
        self._keepalive_timeout = keepalive_timeout_ms / 1000
        self._calls: dict[int, _Call] = {}
        self._closed = False
        self._flush_scheduled = False
        self._peer = ""
        self._last_active = 0.0
        self._ping_timer: asyncio.TimerHandle | None = None
        self._awaiting_ack = False

    # -- asyncio.Protocol callbacks: glue only -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport = transport  # type: ignore[assignment]
        self._flow = FlowControl(self._transport)
        self._drained = asyncio.Event()
        self._state.connections.add(self)
        self._peer = _peer_name(transport)
        set_nodelay(transport)
        self._conn = GrpcConnection(max_message_size=self._max_message_size, compression=self._compression,
                                    max_concurrent_streams=self._max_streams,
                                    ping_policy=PingPolicy(*self._ping_settings))
        self._transport.write(self._conn.data_to_send())
        self._last_active = self._loop.time()
        self._ping_timer = self._loop.call_later(self._keepalive_time, self._on_keepalive)
        # read at connection time, so a test harness may lower the module constant
        self._handshake_timer: asyncio.TimerHandle | None = self._loop.call_later(
            HANDSHAKE_TIMEOUT, self._on_handshake_timeout)

    def data_received(self, data: bytes) -> None:
        self._last_active = self._loop.time()
        dispatch = _DISPATCH
        for event in self._conn.receive(data):
            dispatch[type(event)](self, event)
        self._flush()

    def eof_received(self) -> bool:
        return False  # the client is gone: close

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._state.connections.discard(self)
        if self._ping_timer is not None:
            self._ping_timer.cancel()
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        for call in list(self._calls.values()):
            self._drop(call)
        self._flow.resume_writing()  # wake anyone waiting on drain
        self._drained.set()

    def pause_writing(self) -> None:
        self._flow.pause_writing()

    def resume_writing(self) -> None:
        self._flow.resume_writing()

    # -- control from GrpcServerState -------------------------------------------------------------
    def shutdown(self) -> None:
        """GOAWAY now; close once the calls in flight have ended."""
        if not self._closed:
            self._conn.close(graceful=True)
            self._flush()

    def close(self) -> None:
        """GOAWAY (unless one went out already) and close."""
        if self._closed:
            return
        self._closed = True
        if not self._conn.closed:
            self._conn.close(graceful=False)
        data = self._conn.data_to_send()
        if data:
            self._transport.write(data)
        self._transport.close()

    # -- call events -----------------------------------------------------------------------------
    def _on_call_started(self, event: CallStarted) -> None:
        path = event.path
        router = self._router
        unary = router.unary(path)
        stream = router.stream(path) if unary is None else None
        if unary is None and stream is None:
            self._conn.end(event.stream_id, GrpcStatus.UNIMPLEMENTED,
                           f"Method not found: {path.decode('latin-1')}")
            return
        method = _METHODS.get(path)
        if method is None:
            method = _METHODS[path] = path.decode("latin-1")
        deadline = None
        if event.timeout is not None:
            deadline = self._loop.time() + event.timeout
        call = _Call(event.stream_id, CallContext(method, event.metadata, deadline, self._peer), unary)
        self._calls[event.stream_id] = call
        if deadline is not None:
            call.timer = self._loop.call_at(deadline, self._on_deadline, call)
        if stream is not None:
            self._start_stream(call, stream)

    def _on_message(self, event: MessageReceived) -> None:
        call = self._calls.get(event.stream_id)
        if call is None:
            return
        if call.requests is not None:
            call.requests.push(event.message)
        elif call.request is None:
            call.request = event.message
        else:  # grpc-java's wording; grpc-core reads one message and ignores the rest
            self._fail(call, GrpcStatus.INTERNAL, "Too many requests")

    def _on_half_closed(self, event: HalfClosed) -> None:
        call = self._calls.get(event.stream_id)
        if call is None:
            return
        if call.requests is not None:
            call.requests.close()
        elif call.request is None:
            self._fail(call, GrpcStatus.INTERNAL, "No payload")  # grpc C++'s GenericDeserialize
        elif call.task is None:
            self._run_unary(call)

    def _on_call_gone(self, event: CallReset | CallAborted) -> None:
        call = self._calls.get(event.stream_id)
        if call is not None:
            self._drop(call)

    def _on_drained(self, event: StreamDrained) -> None:
        self._drained.set()

    def _on_ping_acked(self, event: PingAcked) -> None:
        if event.data == _KEEPALIVE_PING:
            self._awaiting_ack = False

    def _on_terminated(self, event: ConnectionTerminated) -> None:
        if event.error_code:
            log.debug("gRPC connection from %s terminated: %s", self._peer, event.reason)
        for call in list(self._calls.values()):
            self._drop(call)
        self.close()

    # -- unary calls -----------------------------------------------------------------------------
    def _run_unary(self, call: _Call) -> None:
        try:
            result = call.unary(call.request, call.context)  # type: ignore[misc]
        except RpcError as exc:
            self._fail(call, exc.status, exc.message)
            return
        except Exception as exc:
            log.exception("exception in gRPC handler %s", call.context.method)
            self._fail(call, GrpcStatus.INTERNAL, str(exc))
            return
        if isinstance(result, (bytes, bytearray, memoryview)):
            self._forget(call)
            self._conn.respond(call.stream_id, result)  # sync fast path: no task
            return
        try:
            task = asyncio.ensure_future(result)
        except TypeError as exc:
            self._fail(call, GrpcStatus.INTERNAL, f"handler returned {type(result).__name__}, not bytes")
            log.error("gRPC handler %s: %s", call.context.method, exc)
            return
        self._track(call, task, self._on_unary_done)

    def _on_unary_done(self, call: _Call, task: asyncio.Future) -> None:
        self._state.tasks.discard(task)  # type: ignore[arg-type]
        error = _outcome(task, call)
        if self._calls.get(call.stream_id) is not call:
            return  # reset, timed out or the connection went away meanwhile
        self._forget(call)
        if error is None:
            result = task.result()
            if isinstance(result, (bytes, bytearray, memoryview)):
                self._conn.respond(call.stream_id, result)
            else:
                self._conn.end(call.stream_id, GrpcStatus.INTERNAL,
                               f"handler returned {type(result).__name__}, not bytes")
        else:
            self._conn.end(call.stream_id, *error)
        self._schedule_flush()

    # -- streaming calls -------------------------------------------------------------------------
    def _start_stream(self, call: _Call, handler: StreamHandler) -> None:
        call.requests = _Requests(self, call.stream_id)
        try:
            task = asyncio.ensure_future(handler(call.requests, _Sink(self, call), call.context))
        except Exception as exc:
            log.exception("exception in gRPC handler %s", call.context.method)
            self._fail(call, GrpcStatus.INTERNAL, str(exc))
            return
        self._track(call, task, self._on_stream_done)

    def _on_stream_done(self, call: _Call, task: asyncio.Future) -> None:
        self._state.tasks.discard(task)  # type: ignore[arg-type]
        error = _outcome(task, call)
        if self._calls.get(call.stream_id) is not call:
            return
        self._forget(call)
        self._conn.end(call.stream_id, *(error or (GrpcStatus.OK, "")))
        self._schedule_flush()

    async def wait_writable(self, sid: int) -> None:
        """Back-pressure for a streaming call: wait while its responses pile up unsent."""
        conn = self._conn
        while not self._closed:
            if self._flow.write_paused:
                await self._flow.drain()
            elif conn.queued(sid) > STREAM_HIGH_WATER:
                self._drained.clear()
                await self._drained.wait()
            else:
                return

    # -- shared call plumbing ----------------------------------------------------------------------
    def _track(self, call: _Call, task: asyncio.Future, done: Callable) -> None:
        call.task = task
        self._state.tasks.add(task)  # type: ignore[arg-type]
        task.add_done_callback(functools.partial(done, call))

    def _on_deadline(self, call: _Call) -> None:
        call.timer = None
        if self._calls.get(call.stream_id) is call:
            self._fail(call, GrpcStatus.DEADLINE_EXCEEDED, "Deadline Exceeded")
            self._flush()

    def _fail(self, call: _Call, status: int, message: str) -> None:
        """End the call with an error status now, cancelling its handler."""
        self._drop(call)
        self._conn.abort(call.stream_id, status, message)

    def _drop(self, call: _Call) -> None:
        """Forget the call and cancel its handler; send nothing (the caller decides)."""
        self._forget(call)
        if call.task is not None:
            call.task.cancel()
        if call.requests is not None:
            call.requests.close()

    def _forget(self, call: _Call) -> None:
        self._calls.pop(call.stream_id, None)
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None

    # -- writing ---------------------------------------------------------------------------------
    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._closed:
            return
        data = self._conn.data_to_send()
        if data:
            self._transport.write(data)
        if self._conn.closing and not self._calls and self._conn.idle:
            self.close()  # graceful shutdown: the last call has ended

    def _schedule_flush(self) -> None:
        """Coalesce the writes of everything that completes in one loop turn."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    # -- keepalive ---------------------------------------------------------------------------------
    def _on_handshake_timeout(self) -> None:
        self._handshake_timer = None
        if not self._closed and not self._conn.handshaken:
            log.debug("gRPC connection from %s: no HTTP/2 preface in %.0f s, closing", self._peer,
                      HANDSHAKE_TIMEOUT)
            self.close()

    def _on_keepalive(self) -> None:
        """PING after keepalive_time s without input; close if no ack within keepalive_timeout s."""
        self._ping_timer = None
        if self._closed:
            return
        if self._awaiting_ack:
            log.debug("gRPC keepalive: no PING ack from %s, closing", self._peer)
            self.close()
            return
        idle_for = self._loop.time() - self._last_active
        if idle_for >= self._keepalive_time:
            self._awaiting_ack = True
            self._conn.ping(_KEEPALIVE_PING)
            self._flush()
            delay = self._keepalive_timeout
        else:
            delay = self._keepalive_time - idle_for
        self._ping_timer = self._loop.call_later(delay, self._on_keepalive)


class _Requests:
    """The request messages of a streaming call, as an async iterator fed from data_received."""

    __slots__ = ("_protocol", "_sid", "_items", "_waiter", "_done")

    def __init__(self, protocol: GrpcProtocol, sid: int) -> None:
        self._protocol = protocol
        self._sid = sid
        self._items: collections.deque[Buffer] = collections.deque()
        self._waiter: asyncio.Future | None = None
        self._done = False

    def push(self, message: Buffer) -> None:
        self._items.append(message)
        if len(self._items) == 1:
            self._protocol._conn.hold_acks(self._sid)  # the handler is behind: stop opening the window
            self._wake()

    def close(self) -> None:
        self._done = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> _Requests:
        return self

    async def __anext__(self) -> Buffer:
        while not self._items:
            if self._done:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = self._items.popleft()
        protocol = self._protocol
        if not self._items:
            protocol._conn.release_acks(self._sid)
            protocol._schedule_flush()
        await protocol.wait_writable(self._sid)
        return message


class _Sink:
    """ResponseSink of a streaming call: each message is framed and queued at once."""

    __slots__ = ("_protocol", "_call")

    def __init__(self, protocol: GrpcProtocol, call: _Call) -> None:
        self._protocol = protocol
        self._call = call

    def send(self, message: bytes) -> None:
        protocol = self._protocol
        if self.closed:
            return
        protocol._conn.send_message(self._call.stream_id, message)
        protocol._schedule_flush()

    @property
    def closed(self) -> bool:
        protocol = self._protocol
        return protocol._closed or protocol._calls.get(self._call.stream_id) is not self._call

    async def drain(self) -> None:
        await self._protocol.wait_writable(self._call.stream_id)


def _outcome(task: asyncio.Future, call: _Call) -> tuple[int, str] | None:
    """None for a result; else the (status, message) the call ends with. Always reads the exception."""
    if task.cancelled():
        return GrpcStatus.CANCELLED, "Cancelled"
    exc = task.exception()
    if exc is None:
        return None
    if isinstance(exc, RpcError):
        return exc.status, exc.message
    log.error("exception in gRPC handler %s", call.context.method, exc_info=exc)
    return GrpcStatus.INTERNAL, str(exc)


def _peer_name(transport: asyncio.BaseTransport) -> str:
    """grpc-core's form: ipv4:127.0.0.1:5000, ipv6:[::1]:5000, unix:/path."""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"
    return f"unix:{peer}" if peer else ""


_DISPATCH: dict[type, Callable] = {
    CallStarted: GrpcProtocol._on_call_started,
    MessageReceived: GrpcProtocol._on_message,
    HalfClosed: GrpcProtocol._on_half_closed,
    CallReset: GrpcProtocol._on_call_gone,
    CallAborted: GrpcProtocol._on_call_gone,
    StreamDrained: GrpcProtocol._on_drained,
    PingAcked: GrpcProtocol._on_ping_acked,
    ConnectionTerminated: GrpcProtocol._on_terminated,
}
