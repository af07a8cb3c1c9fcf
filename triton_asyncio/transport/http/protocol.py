"""HTTP/1.1 connection glue: h11 in, HttpRequest to the app, HttpResponse out.

Rules: h11 decides everything about the wire (framing, keep-alive, pipelining, errors); this module
only feeds it, dispatches its events, reads each body into one buffer and writes each response
without joining. One request at a time per connection: while the app holds one, later input is held
by FlowControl. Nothing here knows routes or Triton; an exception escaping the app is the only
error turned into a status here (500), besides h11's own protocol errors (400/413/431).
"""
from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus

import h11

from ..tcp import set_nodelay
from .flow import FlowControl
from .h11_shortcuts import plain_head
from .messages import HttpRequest, HttpResponse

log = logging.getLogger("triton_asyncio.http")

App = Callable[[HttpRequest], "HttpResponse | Awaitable[HttpResponse]"]

MAX_CHUNKS = 65536
# A request (head and body) must arrive within REQUEST_TIMEOUT s plus 1 s per MIN_BODY_RATE bytes of
# body received, else 408 and close: without it a client trickling one byte at a time holds the
# connection and its buffer forever (every byte resets the keep-alive timer). tritonserver has no
# flag for this (libevhtp runs without read timeouts), so these are constants, Apache
# mod_reqtimeout's shape (header=20-40, body=20, MinRate=500) with one budget for head and body.
REQUEST_TIMEOUT = 30.0
MIN_BODY_RATE = 500  # bytes/s a slow body must keep up once REQUEST_TIMEOUT is spent
PREALLOCATE_MAX = 2**20  # largest Content-Length body read into one buffer allocated up front
_CHUNKS_ERROR = (f"Chunked request body exceeds maximum of {MAX_CHUNKS} non-empty chunks. "
                 "Send fewer or larger HTTP chunks.")
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_JSON = (b"content-type", b"application/json")
_CLOSE = (b"connection", b"close")
_SERVER = (b"server", b"triton_asyncio")
_NO_BODY = frozenset((204, 304))  # statuses h11 frames with an empty body, like HEAD


class Phase(enum.Enum):
    READING = "reading"  # input goes straight to h11 and its events are dispatched
    RUNNING = "running"  # an async app holds the current request; input is held
    DRAINING = "draining"  # response written, transport paused writing; input is held
    CLOSED = "closed"


def _header_list(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """(name, value) pairs; reads h11's triples directly (4x cheaper than its Sequence API)."""
    try:
        return [(name, value) for _, name, value in headers._full_items]  # type: ignore[attr-defined]
    except AttributeError:  # a future h11 without _full_items
        return list(headers)


def _has_input(conn: h11.Connection) -> bool:
    """Whether h11 may have an event to give: unread bytes or end of input (when in doubt, yes)."""
    try:
        return bool(conn._receive_buffer) or conn._receive_buffer_closed  # type: ignore[attr-defined]
    except AttributeError:  # a future h11 without these
        return True


def _error_body(message: str) -> bytes:
    return json.dumps({"error": message}, separators=(",", ":")).encode()


def _content_length(headers: list[tuple[bytes, bytes]]) -> int:
    """Declared body length; -1 for chunked (h11 has already checked that the framing is valid)."""
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return -1


class ServerState:
    """Shared by every connection of one listener, for graceful shutdown."""

    def __init__(self) -> None:
        self.connections: set[HttpProtocol] = set()
        self.tasks: set[asyncio.Task] = set()

    def close_idle(self) -> None:
        """Close keep-alive connections with no request in flight; the others close after it."""
        for connection in list(self.connections):
            connection.shutdown()

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` s for in-flight requests, cancel what is left, then close all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.tasks and (remaining := deadline - loop.time()) > 0:
            await asyncio.wait(set(self.tasks), timeout=remaining)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.sleep(0)  # let done callbacks write their responses
        for connection in list(self.connections):
            connection.close()


class HttpProtocol(asyncio.Protocol):
    def __init__(self, app: App, *, max_input_size: int = 64 * 2**20, max_body_size: int = 2**31,
                 keepalive_timeout: float = 75.0, server_state: ServerState | None = None,
                 server_header: bool = False, shortcuts: bool = True) -> None:
        self._app = app
        self._shortcuts = shortcuts  # h11_shortcuts for plain responses (False: h11 alone, as tests compare)
        self.max_input_size = max_input_size  # Triton's finer limits are the app's to enforce
        self._max_body_size = max_body_size
        self._keepalive_timeout = keepalive_timeout
        # read at construction, so a test harness may lower the module constant before connections
        self._request_timeout = REQUEST_TIMEOUT
        self._read_started: float | None = None  # loop time of the current request's first byte
        self._state = server_state if server_state is not None else ServerState()
        self._extra_headers = [_SERVER] if server_header else []
        self._conn = h11.Connection(h11.SERVER)
        self._phase = Phase.READING
        self._closing = False  # graceful shutdown: close after the current response
        self._last_active = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Future | None = None  # the app's task for the current request, if async
        # the request being read
        self._request: h11.Request | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._expected = -1
        self._body: bytes | bytearray = b""
        self._filled = 0
        self._chunks = 0

    # -- asyncio.Protocol callbacks: glue only -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport = transport  # type: ignore[assignment]
        self._flow = FlowControl(self._transport)
        self._state.connections.add(self)
        set_nodelay(transport)
        self._last_active = self._loop.time()
        self._timer = self._loop.call_later(self._timer_period(), self._on_keepalive_timer)

    def data_received(self, data: bytes) -> None:
        self._last_active = self._loop.time()
        if self._phase is Phase.READING:
            if self._read_started is None:
                self._read_started = self._last_active
            self._conn.receive_data(data)
            self._handle_events()
        elif self._phase is not Phase.CLOSED:
            self._flow.hold(data)

    def eof_received(self) -> bool:
        self.data_received(b"")  # h11 reads b"" as end of input
        return True  # stay half-open: a response may still be owed; h11 tells us when to close

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = Phase.CLOSED
        self._state.connections.discard(self)
        if self._task is not None:
            # the client is gone: a request still queued leaves the queue without executing
            self._task.cancel()
        if self._timer is not None:
            self._timer.cancel()
        self._flow.resume_writing()  # wake anyone waiting on drain

    def pause_writing(self) -> None:
        self._flow.pause_writing()

    def resume_writing(self) -> None:
        self._flow.resume_writing()
        if self._phase is Phase.DRAINING:
            self._resume()

    # -- control from ServerState ----------------------------------------------------------------
    def shutdown(self) -> None:
        """Close now if idle, else after the response in progress."""
        busy = self._phase is Phase.RUNNING or (
            self._phase is Phase.READING and self._conn.their_state is not h11.IDLE)
        if busy:
            self._closing = True
        else:
            self.close()

    def close(self) -> None:
        if self._phase is not Phase.CLOSED:
            self._phase = Phase.CLOSED
            self._transport.close()

    # -- h11 events ------------------------------------------------------------------------------
    def _handle_events(self) -> None:
        conn = self._conn
        try:
            while self._phase is Phase.READING:
                event = conn.next_event()
                if not _DISPATCH[type(event)](self, event):
                    return
        except h11.RemoteProtocolError as exc:
            log.debug("invalid HTTP request: %s", exc)
            self._fail(exc.error_status_hint, str(exc))

    def _on_request(self, event: h11.Request) -> bool:
        self._request = event
        self._headers = headers = _header_list(event.headers)
        self._expected = expected = _content_length(headers)
        self._body = b""
        self._filled = self._chunks = 0
        if expected > self._max_body_size:
            self._fail(413, f"request body of {expected} bytes exceeds the maximum allowed size of "
                            f"{self._max_body_size} bytes")
            return False
        if self._conn.they_are_waiting_for_100_continue:
            self._transport.write(self._conn.send(h11.InformationalResponse(status_code=100, headers=[],
                                                                            reason=b"Continue")))
        return True

    def _on_data(self, event: h11.Data) -> bool:
        data = event.data
        if self._expected < 0:
            return self._on_chunk(event)
        if not self._body and len(data) == self._expected:
            self._body = data  # the whole body in one piece: keep it as it is
            return True
        body = self._body
        if not body:
            # preallocate what Content-Length promises only up to a bound: a few header bytes must
            # not reserve max_body_size (2 GiB) each; a bigger body grows as its bytes arrive
            body = self._body = bytearray(self._expected if self._expected <= PREALLOCATE_MAX else 0)
        end = self._filled + len(data)
        if len(body) >= end:
            body[self._filled:end] = data  # type: ignore[index]
        else:
            body += data  # type: ignore[operator]
        self._filled = end
        return True

    def _on_chunk(self, event: h11.Data) -> bool:
        if event.chunk_start:
            self._chunks += 1
            if self._chunks > MAX_CHUNKS:
                self._fail(400, _CHUNKS_ERROR)
                return False
        if not self._body:
            self._body = bytearray()
        self._body += event.data  # type: ignore[operator]
        if len(self._body) > self._max_body_size:
            self._fail(413, f"request body exceeds the maximum allowed size of {self._max_body_size} bytes")
            return False
        return True

    def _on_end_of_message(self, event: h11.EndOfMessage) -> bool:
        request = self._request
        assert request is not None
        self._read_started = None  # the whole request is in: its read deadline no longer applies
        self._run_app(HttpRequest(request.method, request.target, self._headers, self._body))
        self._body = b""
        # Nothing pipelined behind this request: h11 would only answer NEED_DATA (a few µs).
        return self._phase is Phase.READING and _has_input(self._conn)

    def _on_need_data(self, event: object) -> bool:
        return False

    def _on_paused(self, event: object) -> bool:
        return False

    def _on_connection_closed(self, event: h11.ConnectionClosed) -> bool:
        self.close()
        return False

    # -- the app -----------------------------------------------------------------------------------
    def _run_app(self, request: HttpRequest) -> None:
        try:
            result = self._app(request)
        except Exception as exc:
            result = _internal_error(exc)
        if isinstance(result, HttpResponse):
            self._respond(result)  # sync fast path: no task
            return
        try:
            task = asyncio.ensure_future(result)
        except TypeError as exc:  # neither a response nor awaitable: an app bug
            self._respond(_internal_error(exc))
            return
        self._phase = Phase.RUNNING
        self._task = task
        self._state.tasks.add(task)
        task.add_done_callback(self._on_app_done)

    def _on_app_done(self, task: asyncio.Future) -> None:
        self._task = None
        self._state.tasks.discard(task)  # type: ignore[arg-type]
        if task.cancelled():
            self.close()
            return
        exc = task.exception()
        response = task.result() if exc is None else _internal_error(exc)
        if not isinstance(response, HttpResponse):
            response = _internal_error(TypeError(f"app returned {type(response).__name__}, not HttpResponse"))
        if self._phase is Phase.CLOSED:
            return  # the peer left while the app ran: drop the result
        self._respond(response)
        if self._phase is Phase.READING:
            self._resume()

    def _resume(self) -> None:
        """Feed the input held while busy to h11 and carry on parsing."""
        self._phase = Phase.READING
        conn = self._conn
        held = self._flow.release()
        if held and self._read_started is None:
            self._read_started = self._loop.time()  # the next request's bytes came while busy
        for data in held:
            conn.receive_data(data)
        self._handle_events()

    # -- writing ---------------------------------------------------------------------------------
    def _respond(self, response: HttpResponse) -> None:
        """Write one response; then close, wait for the transport to drain, or read on."""
        if response.stream is not None:
            self._start_stream(response)
            return
        conn = self._conn
        try:
            out = self._encode(response)
        except (h11.LocalProtocolError, TypeError, ValueError) as exc:  # bad status or headers from the app
            log.error("cannot send response: %s", exc)
            self.close()
            return
        self._transport.writelines(out)
        if conn.our_state is h11.MUST_CLOSE or self._closing:
            self.close()
            return
        conn.start_next_cycle()
        self._last_active = self._loop.time()
        self._phase = Phase.DRAINING if self._flow.write_paused else Phase.READING

    def _start_stream(self, response: HttpResponse) -> None:
        """Send the head now (no Content-Length: h11 frames the body chunked, or by close for
        HTTP/1.0), then the stream's chunks from a task as they come; input is held meanwhile."""
        headers = list(response.headers) + self._extra_headers
        if self._closing:
            headers.append(_CLOSE)
        try:
            head = self._conn.send(h11.Response(status_code=response.status, headers=headers,
                                                reason=_REASONS.get(response.status, b"")))
        except (h11.LocalProtocolError, TypeError, ValueError) as exc:
            log.error("cannot send response: %s", exc)
            self.close()
            return
        self._transport.write(head)
        self._phase = Phase.RUNNING
        task = self._loop.create_task(self._pump(response.stream))
        self._task = task
        self._state.tasks.add(task)
        task.add_done_callback(self._on_stream_done)

    async def _pump(self, stream) -> None:
        conn, flow = self._conn, self._flow
        try:
            async for chunk in stream:
                if self._phase is Phase.CLOSED:
                    return
                if chunk:
                    self._transport.write(conn.send(h11.Data(data=chunk)))
                    self._last_active = self._loop.time()
                    if flow.write_paused:
                        await flow.drain()
        finally:
            await stream.aclose()
        if self._phase is not Phase.CLOSED:
            tail = conn.send(h11.EndOfMessage())
            if tail:
                self._transport.write(tail)

    def _on_stream_done(self, task: asyncio.Future) -> None:
        self._task = None
        self._state.tasks.discard(task)  # type: ignore[arg-type]
        if task.cancelled() or self._phase is Phase.CLOSED:
            self.close()
            return
        if task.exception() is not None:
            # the head is out: the only way left to say the body is incomplete is to cut it short
            log.error("exception while streaming a response", exc_info=task.exception())
            self.close()
            return
        if self._conn.our_state is h11.MUST_CLOSE or self._closing:
            self.close()
            return
        self._conn.start_next_cycle()
        self._last_active = self._loop.time()
        self._resume()

    def _encode(self, response: HttpResponse) -> list:
        conn = self._conn
        body = response.body
        status = response.status
        if status in _NO_BODY:
            size, headers = 0, list(response.headers)
        else:
            size = len(body[0]) if len(body) == 1 else sum(map(len, body))
            headers = response.headers + [(b"content-length", b"%d" % size)]
        if self._extra_headers:
            headers += self._extra_headers
        if self._closing:
            headers.append(_CLOSE)
        elif status == 200 and response.trusted and self._shortcuts:
            plain = plain_head(conn, headers)  # h11's state moved as sending it all would
            if plain is not None:
                return [plain, *body] if size else [plain]
        head = h11.Response(status_code=status, headers=headers, reason=_REASONS.get(status, b""),
                            _parsed=response.trusted)
        out = [conn.send(head)]
        if size and self._request is not None and self._request.method != b"HEAD":
            # h11's sendfile hook: a Data whose len() is the body size. With Content-Length framing
            # h11 only counts it and hands it back, so one send covers all buffers, uncopied.
            conn.send_with_data_passthrough(h11.Data(data=_Sized(size)))
            out += body
        tail = conn.send(h11.EndOfMessage())
        if tail:
            out.append(tail)
        return out

    def _fail(self, status: int, message: str) -> None:
        """Answer a request we cannot read (bad HTTP, too big) with an error, then close."""
        conn = self._conn
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = _error_body(message)
            headers = [_JSON, (b"content-length", b"%d" % len(body)), _CLOSE]
            try:
                head = conn.send(h11.Response(status_code=status, headers=headers,
                                              reason=_REASONS.get(status, b"")))
                self._transport.writelines([head, body])
            except h11.LocalProtocolError:
                pass
        self.close()

    # -- keep-alive --------------------------------------------------------------------------------
    def _timer_period(self) -> float:
        """Longest sleep of the one timer: a request that starts reading right after it is armed is
        still checked no later than its read deadline."""
        return min(self._keepalive_timeout, self._request_timeout)

    def _read_deadline(self) -> float | None:
        """When the request being read must be complete; None between requests or while busy."""
        if self._read_started is None or self._phase is not Phase.READING:
            return None
        return self._read_started + self._request_timeout + self._filled_bytes() / MIN_BODY_RATE

    def _filled_bytes(self) -> int:
        return self._filled if self._expected >= 0 else len(self._body)

    def _on_keepalive_timer(self) -> None:
        """Close after keepalive_timeout s without input or output, or answer 408 and close when a
        request is read too slowly; checked lazily, one timer."""
        self._timer = None
        if self._phase is Phase.CLOSED:
            return
        now = self._loop.time()
        deadline = self._read_deadline()
        if deadline is not None and now >= deadline:
            log.debug("HTTP request not received within %.0f s: closing", now - (self._read_started or now))
            self._fail(408, "request not received in time")
            return
        idle_for = now - self._last_active
        if self._phase is Phase.READING and idle_for >= self._keepalive_timeout:
            self.close()
            return
        delay = self._keepalive_timeout - idle_for if self._phase is Phase.READING else self._keepalive_timeout
        delay = min(delay, self._timer_period())
        if deadline is not None:
            delay = min(delay, deadline - now)
        self._timer = self._loop.call_later(delay, self._on_keepalive_timer)


class _Sized:
    """Stands in for the body in h11's Data event: h11 needs only its length."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


def _internal_error(exc: BaseException) -> HttpResponse:
    log.error("exception in HTTP app", exc_info=exc)
    return HttpResponse(500, [_JSON], [_error_body(str(exc))])


_DISPATCH: dict[type, Callable[[HttpProtocol, object], bool]] = {
    h11.Request: HttpProtocol._on_request,  # type: ignore[dict-item]
    h11.Data: HttpProtocol._on_data,  # type: ignore[dict-item]
    h11.EndOfMessage: HttpProtocol._on_end_of_message,  # type: ignore[dict-item]
    h11.NEED_DATA: HttpProtocol._on_need_data,
    h11.PAUSED: HttpProtocol._on_paused,
    h11.ConnectionClosed: HttpProtocol._on_connection_closed,  # type: ignore[dict-item]
}
