"""HttpProtocol over a fake transport (byte literals in, parsed responses out), plus one real socket."""
from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading

import pytest

from triton_asyncio.transport.http.flow import HIGH_WATER
from triton_asyncio.transport.http.messages import HttpRequest, HttpResponse
from triton_asyncio.transport.http.protocol import HttpProtocol, ServerState


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.reading = True

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

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name, default=None):
        return default


def parse(out: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Responses in `out`: (status, headers, body); 1xx responses have an empty body."""
    responses = []
    data = bytes(out)
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
        size = int(headers.get(b"content-length", b"0"))
        responses.append((status, headers, data[:size]))
        data = data[size:]
    return responses


def echo(request: HttpRequest) -> HttpResponse:
    body = b"%s %s %d" % (request.method, request.target, len(request.body))
    return HttpResponse(200, [(b"content-type", b"text/plain")], [body])


async def async_echo(request: HttpRequest) -> HttpResponse:
    await asyncio.sleep(0)
    return echo(request)


def connect(app, **kwargs) -> tuple[HttpProtocol, FakeTransport]:
    protocol = HttpProtocol(app, **kwargs)
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


def run(coro):
    return asyncio.run(coro)


POST = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
GET = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"


# -- requests and bodies ----------------------------------------------------------------------------
def test_simple_get():
    async def main():
        protocol, transport = connect(echo)
        protocol.data_received(GET)
        [(status, headers, body)] = parse(transport.out)
        assert (status, body) == (200, b"GET /v2/health/live 0")
        assert headers[b"content-length"] == b"21" and headers[b"content-type"] == b"text/plain"
        assert transport.out.startswith(b"HTTP/1.1 200 OK\r\n")
        assert not transport.closed
    run(main())


def test_post_content_length_body_single_and_split():
    seen = []

    def app(request: HttpRequest) -> HttpResponse:
        seen.append(request.body)
        return echo(request)

    async def main():
        protocol, transport = connect(app)
        protocol.data_received(POST)
        for piece in (POST[:10], POST[10:-3], POST[-3:-1], POST[-1:]):
            protocol.data_received(piece)
        assert [r[2] for r in parse(transport.out)] == [b"POST /v2/models/m/infer 5"] * 2
        assert seen[0] == seen[1] == b"hello"
        assert isinstance(seen[1], bytearray)  # split: copied into one preallocated buffer
    run(main())


def test_request_header_lookup_and_target_with_query():
    seen = []

    def app(request: HttpRequest) -> HttpResponse:
        seen.append((request.target, request.header(b"inference-header-content-length"), request.header(b"x")))
        return HttpResponse(200)

    async def main():
        protocol, _ = connect(app)
        protocol.data_received(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nInference-Header-Content-Length: 7\r\n\r\n")
        assert seen == [(b"/a?b=1", b"7", None)]
    run(main())


def test_chunked_body():
    seen = []

    def app(request: HttpRequest) -> HttpResponse:
        seen.append(bytes(request.body))
        return echo(request)

    async def main():
        protocol, transport = connect(app)
        protocol.data_received(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
        protocol.data_received(b"lo\r\n6\r\n world\r\n0\r\n\r\n")
        assert seen == [b"hello world"]
        assert parse(transport.out)[0][2] == b"POST /c 11"
    run(main())


def test_head_has_content_length_but_no_body():
    async def main():
        protocol, transport = connect(echo)
        protocol.data_received(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n" + GET)
        assert transport.out.startswith(b"HTTP/1.1 200 OK\r\n")
        head, _, rest = bytes(transport.out).partition(b"\r\n\r\n")
        assert b"content-length: 9" in head
        assert rest.startswith(b"HTTP/1.1 200 OK\r\n")  # no body bytes in between
    run(main())


def test_multi_buffer_and_memoryview_body_written_uncopied():
    big = bytearray(b"x" * 100)
    parts = [b"ab", memoryview(big)[10:20], b"", big]

    async def main():
        protocol, transport = connect(lambda r: HttpResponse(200, [], parts))
        written = []
        transport.writelines = lambda chunks: written.extend(chunks)  # type: ignore[method-assign]
        protocol.data_received(GET)
        assert written[1:] == parts and written[4] is big
        assert b"content-length: 112" in written[0]
    run(main())


def test_204_sends_no_body_and_bad_headers_close():
    async def main():
        protocol, transport = connect(lambda r: HttpResponse(204, [], [b"ignored"]))
        protocol.data_received(GET + GET)
        assert transport.out == b"HTTP/1.1 204 No Content\r\n\r\n" * 2
        protocol, transport = connect(lambda r: HttpResponse(200, [(b"bad header", b"x")], []))
        protocol.data_received(GET)
        assert transport.out == b"" and transport.closed
    run(main())


# -- keep-alive and pipelining ----------------------------------------------------------------------
def test_pipelined_requests_answered_in_order_sync():
    async def main():
        protocol, transport = connect(echo)
        protocol.data_received(POST + GET + POST)
        assert [r[2] for r in parse(transport.out)] == [
            b"POST /v2/models/m/infer 5", b"GET /v2/health/live 0", b"POST /v2/models/m/infer 5"]
    run(main())


def test_pipelined_requests_answered_in_order_async():
    order = []

    async def app(request: HttpRequest) -> HttpResponse:
        order.append(request.target)
        await asyncio.sleep(0.01 if request.method == b"POST" else 0)
        return echo(request)

    async def main():
        state = ServerState()
        protocol, transport = connect(app, server_state=state)
        protocol.data_received(POST + GET)
        assert transport.out == b"" and len(state.tasks) == 1
        protocol.data_received(POST[:20])  # arrives while the app runs: held
        protocol.data_received(POST[20:])
        for _ in range(50):
            await asyncio.sleep(0.005)
            if len(parse(transport.out)) == 3:
                break
        assert [r[2] for r in parse(transport.out)] == [
            b"POST /v2/models/m/infer 5", b"GET /v2/health/live 0", b"POST /v2/models/m/infer 5"]
        assert order == [b"/v2/models/m/infer", b"/v2/health/live", b"/v2/models/m/infer"]
        assert not state.tasks
    run(main())


def test_connection_close_from_client_honoured():
    async def main():
        protocol, transport = connect(echo)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert parse(transport.out)[0][0] == 200 and transport.closed
    run(main())


def test_http10_without_keepalive_closes():
    async def main():
        protocol, transport = connect(echo)
        protocol.data_received(b"GET / HTTP/1.0\r\n\r\n")
        assert parse(transport.out)[0][0] == 200 and transport.closed
    run(main())


def test_eof_after_request_answers_then_closes():
    async def main():
        protocol, transport = connect(async_echo)
        protocol.data_received(GET)
        assert protocol.eof_received() is True
        assert not transport.closed
        await asyncio.sleep(0.01)
        assert parse(transport.out)[0][0] == 200 and transport.closed
    run(main())


def test_keepalive_timeout_closes_idle_connection():
    async def main():
        protocol, transport = connect(echo, keepalive_timeout=0.05)
        protocol.data_received(GET)
        await asyncio.sleep(0.03)
        assert not transport.closed
        await asyncio.sleep(0.1)
        assert transport.closed
    run(main())


def test_keepalive_timer_spares_a_running_request():
    async def slow(request: HttpRequest) -> HttpResponse:
        await asyncio.sleep(0.12)
        return echo(request)

    async def main():
        protocol, transport = connect(slow, keepalive_timeout=0.05)
        protocol.data_received(GET)
        await asyncio.sleep(0.15)
        assert parse(transport.out)[0][0] == 200 and not transport.closed
    run(main())


# -- sync and async apps, errors -------------------------------------------------------------------
def test_sync_app_needs_no_task():
    async def main():
        state = ServerState()
        protocol, transport = connect(echo, server_state=state)
        protocol.data_received(GET)
        assert parse(transport.out)[0][0] == 200 and not state.tasks
    run(main())


def test_async_app_is_tracked_then_written():
    async def main():
        state = ServerState()
        protocol, transport = connect(async_echo, server_state=state)
        protocol.data_received(GET)
        assert len(state.tasks) == 1 and transport.out == b""
        await asyncio.sleep(0.01)
        assert parse(transport.out)[0][2] == b"GET /v2/health/live 0" and not state.tasks
    run(main())


@pytest.mark.parametrize("asynchronous", [False, True])
def test_exception_in_app_is_500(asynchronous, caplog):
    def boom(request: HttpRequest) -> HttpResponse:
        raise ValueError("kaboom")

    async def aboom(request: HttpRequest) -> HttpResponse:
        raise ValueError("kaboom")

    async def main():
        protocol, transport = connect(aboom if asynchronous else boom)
        protocol.data_received(GET)
        await asyncio.sleep(0.01)
        [(status, headers, body)] = parse(transport.out)
        assert (status, json.loads(body)) == (500, {"error": "kaboom"})
        assert headers[b"content-type"] == b"application/json" and not transport.closed
        protocol.data_received(GET)  # the connection keeps serving
        await asyncio.sleep(0.01)
        assert len(parse(transport.out)) == 2

    with caplog.at_level("ERROR", logger="triton_asyncio.http"):
        run(main())
    assert "kaboom" in caplog.text


def test_malformed_request_line_is_400_and_close():
    async def main():
        protocol, transport = connect(echo)
        protocol.data_received(b"GARBAGE\r\n\r\n")
        [(status, headers, body)] = parse(transport.out)
        assert status == 400 and "error" in json.loads(body)
        assert headers[b"connection"] == b"close" and transport.closed
        protocol.data_received(GET)  # never raises after close
    run(main())


def test_bad_content_length_is_400():
    async def main():
        protocol, transport = connect(echo)
        protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        assert parse(transport.out)[0][0] == 400 and transport.closed
    run(main())


def test_oversized_body_is_413_and_close():
    called = []

    async def main():
        protocol, transport = connect(lambda r: called.append(r), max_body_size=4)
        protocol.data_received(POST)
        [(status, _, body)] = parse(transport.out)
        assert status == 413 and "exceeds the maximum allowed size of 4 bytes" in json.loads(body)["error"]
        assert transport.closed and not called
    run(main())


def test_oversized_chunked_body_is_413():
    async def main():
        protocol, transport = connect(echo, max_body_size=8)
        protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        protocol.data_received(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n")
        assert parse(transport.out)[0][0] == 413 and transport.closed
    run(main())


def test_too_many_chunks_is_400_and_close():
    called = []

    async def main():
        protocol, transport = connect(lambda r: called.append(r))
        protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        protocol.data_received(b"1\r\nx\r\n" * 65537 + b"0\r\n\r\n")
        [(status, _, body)] = parse(transport.out)
        assert status == 400 and json.loads(body) == {"error": (
            "Chunked request body exceeds maximum of 65536 non-empty chunks. Send fewer or larger HTTP chunks.")}
        assert transport.closed and not called
    run(main())


def test_exactly_max_chunks_is_fine():
    async def main():
        protocol, transport = connect(echo)
        protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                               + b"1\r\nx\r\n" * 65536 + b"0\r\n\r\n")
        assert parse(transport.out)[0][2] == b"POST / 65536"
    run(main())


def test_expect_100_continue():
    async def main():
        protocol, transport = connect(echo)
        protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert transport.out == b"HTTP/1.1 100 Continue\r\n\r\n"
        protocol.data_received(b"hello")
        assert [r[0] for r in parse(transport.out)] == [100, 200]
    run(main())


def test_empty_expect_header_sends_no_100():
    async def main():
        protocol, transport = connect(echo)
        protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: \r\n\r\n")
        assert transport.out == b""
    run(main())


def test_connection_lost_while_app_runs_cancels_it():
    finished, cancelled = [], []

    async def app(request: HttpRequest) -> HttpResponse:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        finished.append(True)
        return echo(request)

    async def main():
        state = ServerState()
        protocol, transport = connect(app, server_state=state)
        protocol.data_received(GET)
        await asyncio.sleep(0)
        protocol.connection_lost(None)
        assert protocol not in state.connections
        await asyncio.sleep(0.03)
        assert cancelled == [True] and not finished and transport.out == b"" and not state.tasks
    run(main())


def test_connection_lost_mid_body_is_quiet():
    async def main():
        protocol, transport = connect(echo)
        protocol.data_received(POST[:-2])
        protocol.connection_lost(None)
        protocol.data_received(b"lo")
        assert transport.out == b""
    run(main())


# -- flow control -----------------------------------------------------------------------------------
def test_reading_pauses_when_held_input_exceeds_high_water():
    release = asyncio.Event

    async def main():
        gate = release()

        async def app(request: HttpRequest) -> HttpResponse:
            await gate.wait()
            return echo(request)

        protocol, transport = connect(app)
        protocol.data_received(GET)
        flood = GET * (HIGH_WATER // len(GET) + 2)
        protocol.data_received(flood[: len(flood) // 2])
        assert transport.reading
        protocol.data_received(flood[len(flood) // 2:])
        assert not transport.reading
        gate.set()
        for _ in range(500):
            await asyncio.sleep(0.01)
            if len(parse(transport.out)) == 1 + flood.count(b"GET "):
                break
        assert transport.reading
        assert len(parse(transport.out)) == 1 + flood.count(b"GET ")
    run(main())


def test_write_pause_stops_processing_until_resume():
    async def main():
        protocol, transport = connect(echo)
        protocol.pause_writing()
        protocol.data_received(GET + GET)  # first answered, then we wait for the peer to read
        assert len(parse(transport.out)) == 1
        protocol.data_received(GET)
        assert len(parse(transport.out)) == 1
        protocol.resume_writing()
        assert len(parse(transport.out)) == 3
    run(main())


# -- graceful shutdown ----------------------------------------------------------------------------
def test_close_idle_and_drain():
    async def slow(request: HttpRequest) -> HttpResponse:
        await asyncio.sleep(0.02)
        return echo(request)

    async def main():
        state = ServerState()
        idle, idle_transport = connect(slow, server_state=state)
        busy, busy_transport = connect(slow, server_state=state)
        busy.data_received(GET)
        state.close_idle()
        assert idle_transport.closed and not busy_transport.closed
        await state.drain(1.0)
        [(status, headers, _)] = parse(busy_transport.out)
        assert status == 200 and headers[b"connection"] == b"close" and busy_transport.closed
    run(main())


def test_drain_timeout_cancels_and_closes():
    async def stuck(request: HttpRequest) -> HttpResponse:
        await asyncio.sleep(10)
        return echo(request)

    async def main():
        state = ServerState()
        protocol, transport = connect(stuck, server_state=state)
        protocol.data_received(GET)
        await state.drain(0.02)
        assert transport.closed and transport.out == b""
    run(main())


def test_app_returning_garbage_is_500():
    async def bad_async(request: HttpRequest):
        return "not a response"

    async def main():
        for app in (lambda r: "not a response", bad_async):
            protocol, transport = connect(app)
            protocol.data_received(GET)
            await asyncio.sleep(0.01)
            assert parse(transport.out)[0][0] == 500 and not transport.closed

    run(main())


# -- a real socket ----------------------------------------------------------------------------------
def _uvloop_factory():
    uvloop = pytest.importorskip("uvloop")
    return uvloop.new_event_loop


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_real_socket_two_requests_on_one_connection(loop_name):
    factory = _uvloop_factory() if loop_name == "uvloop" else None
    body = bytearray(b"0123456789")

    async def app(request: HttpRequest) -> HttpResponse:
        if request.method == b"POST":
            return HttpResponse(200, [(b"content-type", b"application/octet-stream")],
                                [bytes(request.body), memoryview(body)[2:5]])
        return echo(request)

    def client(port: int, result: list) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/v2/health/live")
        first = connection.getresponse()
        result.append((first.status, first.read()))
        connection.request("POST", "/v2/models/m/infer", body=b"payload")
        second = connection.getresponse()
        result.append((second.status, second.read()))
        connection.close()

    async def main():
        loop = asyncio.get_running_loop()
        state = ServerState()
        nodelay: list = []

        class Recording(HttpProtocol):
            def connection_made(self, transport):
                super().connection_made(transport)
                sock = transport.get_extra_info("socket")
                nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        server = await loop.create_server(lambda: Recording(app, server_state=state), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        result: list = []
        thread = threading.Thread(target=client, args=(port, result))
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.01)
        assert result == [(200, b"GET /v2/health/live 0"), (200, b"payload234")]
        assert nodelay and all(nodelay)
        server.close()
        await state.drain(1.0)
        await server.wait_closed()

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
