"""h11_shortcuts: every script runs twice, through HttpProtocol with the shortcut and with h11
alone; the bytes written, the connection's fate and h11's state must come out the same."""
from __future__ import annotations

import asyncio

import h11
import pytest

from triton_asyncio.transport.http import h11_shortcuts
from triton_asyncio.transport.http.messages import HttpRequest, HttpResponse
from triton_asyncio.transport.http.protocol import HttpProtocol

from .test_http_protocol import FakeTransport, parse


def app(request: HttpRequest):
    path = request.target
    body = [b"%s %s %d " % (request.method, path, len(request.body)), memoryview(b"tensor")]
    if path == b"/untrusted":
        return HttpResponse(200, [(b"content-type", b"text/plain")], body)
    if path == b"/missing":
        return HttpResponse(404, [(b"content-type", b"application/json")], [b'{"error":"x"}'], trusted=True)
    if path == b"/close":
        return HttpResponse(200, [(b"connection", b"close")], body, trusted=True)
    if path == b"/empty":
        return HttpResponse(200, [(b"content-type", b"text/plain")], [], trusted=True)
    if path == b"/async":
        async def later():
            await asyncio.sleep(0)
            return HttpResponse(200, [(b"content-type", b"application/octet-stream")], body, trusted=True)
        return later()
    return HttpResponse(200, [(b"content-type", b"application/octet-stream"),
                              (b"inference-header-content-length", b"12")], body, trusted=True)


def post(path: bytes = b"/infer", body: bytes = b"x" * 20, extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return (b"POST %s HTTP/%s\r\nHost: h\r\n%sContent-Length: %d\r\n\r\n" % (path, version, extra, len(body))) + body


SCRIPTS = {
    "keep-alive": [post(), post(), post(b"/infer", b"")],
    "pipelined": [post() + post(b"/other") + post()],
    "split": [post()[:7], post()[7:40], post()[40:] + post()[:3], post()[3:]],
    "http/1.0": [post(version=b"1.0")],
    "http/1.0 keep-alive asked": [post(version=b"1.0", extra=b"Connection: keep-alive\r\n")],
    "client closes": [post(extra=b"Connection: close\r\n")],
    "HEAD": [b"HEAD /infer HTTP/1.1\r\nHost: h\r\n\r\n", post()],
    "100-continue": [post(extra=b"Expect: 100-continue\r\n")],
    "untrusted": [post(b"/untrusted"), post()],
    "not 200": [post(b"/missing"), post()],
    "response closes": [post(b"/close"), post()],
    "empty body": [post(b"/empty"), post()],
    "async app": [post(b"/async"), post(), post(b"/async")],
    "chunked request": [b"POST /infer HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                        post()],
    "GET": [b"GET /infer HTTP/1.1\r\nHost: h\r\n\r\n", b"GET /infer?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"],
    "bad request after": [post(), b"garbage\r\n\r\n"],
    "eof": [post(), b""],
}


def _state(protocol: HttpProtocol) -> tuple:
    conn = protocol._conn
    return (conn.our_state, conn.their_state, conn.their_http_version, conn.client_is_waiting_for_100_continue,
            conn._request_method, conn._cstate.keep_alive, type(conn._writer), type(conn._reader))


async def _run(script: list[bytes], shortcuts: bool, server_header: bool) -> list:
    protocol = HttpProtocol(app, shortcuts=shortcuts, server_header=server_header)
    transport = FakeTransport()
    protocol.connection_made(transport)
    seen = []
    for data in script:
        if data:
            protocol.data_received(data)
        else:
            protocol.eof_received()
        for _ in range(5):
            await asyncio.sleep(0)
        seen.append((bytes(transport.out), transport.closed, _state(protocol)))
    protocol.connection_lost(None)
    return seen


@pytest.mark.parametrize("server_header", [False, True])
@pytest.mark.parametrize("name", list(SCRIPTS))
def test_shortcut_writes_and_leaves_what_h11_would(name, server_header):
    assert h11_shortcuts.AVAILABLE
    script = SCRIPTS[name]
    fast = asyncio.run(_run(script, True, server_header))
    slow = asyncio.run(_run(script, False, server_header))
    assert fast == slow
    assert fast[-1][0].startswith(b"HTTP/1.1 ")
    if name != "HEAD":  # parse() reads a body after every head
        assert parse(fast[-1][0])


def test_the_shortcut_is_taken_for_the_plain_case_only():
    conn = h11.Connection(h11.SERVER)
    headers = [(b"content-type", b"x"), (b"content-length", b"3")]
    assert h11_shortcuts.plain_head(conn, headers) is None  # no request yet
    conn.receive_data(post(body=b""))
    while conn.next_event() is not h11.NEED_DATA and conn.their_state is not h11.DONE:
        pass
    assert conn.their_state is h11.DONE
    assert h11_shortcuts.plain_head(conn, headers + [(b"connection", b"close")]) is None
    assert h11_shortcuts.plain_head(conn, [(b"transfer-encoding", b"chunked")]) is None
    assert conn.our_state is h11.SEND_RESPONSE  # refusals leave h11 as it was
    head = h11_shortcuts.plain_head(conn, headers)
    assert head == b"HTTP/1.1 200 OK\r\ncontent-type: x\r\ncontent-length: 3\r\n\r\n"
    assert conn.our_state is h11.DONE
    conn.start_next_cycle()
    assert (conn.our_state, conn.their_state) == (h11.IDLE, h11.IDLE)


def test_scripts_do_take_the_shortcut(monkeypatch):
    from triton_asyncio.transport.http import protocol

    taken = []

    def counting(conn, headers):
        head = h11_shortcuts.plain_head(conn, headers)
        taken.append(head is not None)
        return head
    monkeypatch.setattr(protocol, "plain_head", counting)
    asyncio.run(_run(SCRIPTS["keep-alive"] + SCRIPTS["async app"] + SCRIPTS["HEAD"], True, False))
    assert taken == [True, True, True, True, True, True, False, True]
