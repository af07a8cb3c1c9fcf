"""Clients that send one byte at a time, or stop halfway: the server must answer 408 and close
(HTTP read deadline) or close (gRPC handshake timeout) instead of holding the connection forever.

The server runs with both deadlines lowered to 1 s (serve_debug); their defaults are 30 s plus
1 s per 500 body bytes (HTTP, REQUEST_TIMEOUT and MIN_BODY_RATE in transport/http/protocol.py)
and 120 s (gRPC, HANDSHAKE_TIMEOUT in transport/grpc/protocol.py, grpc-core's default).
"""
from __future__ import annotations

import socket
import threading
import time

from .conftest import HANDSHAKE_TIMEOUT, REQUEST_TIMEOUT, baseline, check_recovered
from .proxy import CuttingProxy

HEAD = b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\n"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + SETTINGS
CLOSE_SLACK = 8.0  # seconds past the deadline the close may take on a loaded 2-core box


def _read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when the close came (monotonic)."""
    sock.settimeout(timeout)
    received = bytearray()
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return bytes(received), time.monotonic()


def _trickle_through_proxy(port: int, payload: bytes, results: list, limit: float) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        started = time.monotonic()
        s.sendall(payload)
        _, closed = _read_until_closed(s, limit)
        results.append(closed - started)


def test_http_head_trickled_one_byte_at_a_time_is_cut(debug_server):
    """Fifty clients whose heads arrive at 50 bytes/s: all closed about REQUEST_TIMEOUT later."""
    base = baseline(debug_server)
    limit = REQUEST_TIMEOUT + CLOSE_SLACK
    results: list[float] = []
    with CuttingProxy(debug_server.http_port) as proxy:
        proxy.configure(trickle=0.02)
        threads = [threading.Thread(target=_trickle_through_proxy, args=(proxy.port, HEAD + b"{" * 400, results,
                                                                         limit + 5)) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(limit + 10)
    print(f"trickled heads: {len(results)} closed after {min(results):.2f}-{max(results):.2f} s")
    assert len(results) == 50
    assert max(results) < limit  # the head alone (75 bytes) takes 1.5 s at this rate
    check_recovered(debug_server, base, "trickled heads")


def test_http_body_stalled_gets_408(debug_server):
    """Head at once, then a body at 50 bytes/s (below MIN_BODY_RATE): 408, then close."""
    base = baseline(debug_server)
    with socket.create_connection(("127.0.0.1", debug_server.http_port)) as s:
        started = time.monotonic()
        s.sendall(HEAD)
        s.settimeout(0.02)
        received = b""
        for _ in range(200):  # 4 s of trickling at most; the server cuts in after about 1 s
            try:
                s.send(b"{")
                received = s.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if received:
                break
        rest, closed = _read_until_closed(s, REQUEST_TIMEOUT + CLOSE_SLACK)
    print(f"stalled body: closed after {closed - started:.2f} s: {(received + rest)[:40]!r}")
    assert (received + rest).startswith(b"HTTP/1.1 408 ")
    assert closed - started < REQUEST_TIMEOUT + CLOSE_SLACK
    check_recovered(debug_server, base, "stalled body")


def test_grpc_preface_trickled_is_cut(debug_server):
    """An HTTP/2 preface at 20 bytes/s never completes within HANDSHAKE_TIMEOUT: closed."""
    base = baseline(debug_server)
    results: list[float] = []
    with CuttingProxy(debug_server.grpc_port) as proxy:
        proxy.configure(trickle=0.05)
        _trickle_through_proxy(proxy.port, H2_PREFACE, results, HANDSHAKE_TIMEOUT + CLOSE_SLACK + 5)
    print(f"trickled preface: closed after {results[0]:.2f} s")
    assert results[0] < HANDSHAKE_TIMEOUT + CLOSE_SLACK
    check_recovered(debug_server, base, "trickled preface")
