"""Microbenchmark: µs per request spent in HttpProtocol.data_received (parse + app + write).

Drives the protocol with a fake transport: one perf_analyzer-like infer POST (≈300 byte head,
128 byte binary body) per data_received, a trivial sync app, keep-alive. Compares with the
floor server's shape (bench/peers/floor/http_h11.py: h11, body chunks joined, same writes).
Run: .venv/bin/python bench/http_protocol_micro.py [n]
"""
from __future__ import annotations

import asyncio
import os
import platform
import sys
import time

import h11

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from triton_asyncio.transport.http.messages import HttpRequest, HttpResponse  # noqa: E402
from triton_asyncio.transport.http.protocol import HttpProtocol  # noqa: E402

BODY = b'{"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32","parameters":{"binary_data_size":64}}]}'
BODY = BODY[:64].ljust(64, b" ") + b"\x01" * 64  # 64 JSON header bytes + 64 tensor bytes = 128
REQUEST = (b"POST /v2/models/simple/infer HTTP/1.1\r\n"
           b"Host: localhost:8000\r\n"
           b"User-Agent: perf_analyzer/2.44 (linux; x86_64)\r\n"
           b"Accept: */*\r\n"
           b"Accept-Encoding: identity\r\n"
           b"Content-Type: application/octet-stream\r\n"
           b"Inference-Header-Content-Length: 64\r\n"
           b"Expect: \r\n"
           b"Content-Length: 128\r\n\r\n") + BODY
BIG = 2**20
REPLY_HEAD = b'{"model_name":"simple","model_version":"1","outputs":[]}'
REPLY = [REPLY_HEAD, b"\x02" * 64]
REPLY_HEADERS = [(b"content-type", b"application/octet-stream"),
                 (b"inference-header-content-length", b"%d" % len(REPLY_HEAD))]


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.nbytes = 0

    def write(self, data) -> None:
        self.nbytes += len(data)

    def writelines(self, chunks) -> None:
        for c in chunks:
            self.nbytes += len(c)

    def get_extra_info(self, name, default=None):
        return default

    def close(self) -> None:
        raise AssertionError("closed")


def app(request: HttpRequest) -> HttpResponse:
    request.header(b"inference-header-content-length")
    return HttpResponse(200, REPLY_HEADERS, REPLY)


class Floor(asyncio.Protocol):
    """The floor's data_received, with the same trivial handler."""

    def connection_made(self, transport) -> None:
        self.t = transport
        self.conn = h11.Connection(h11.SERVER)
        self.req = None
        self.body: list = []

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                return
            if ev is h11.PAUSED:
                conn.start_next_cycle()
                continue
            t = type(ev)
            if t is h11.Request:
                self.req = ev
                self.body = []
            elif t is h11.Data:
                self.body.append(ev.data)
            elif t is h11.EndOfMessage:
                req = self.req
                for k, v in req.headers:
                    if k == b"inference-header-content-length":
                        int(v)
                body = b"".join(self.body) if len(self.body) != 1 else self.body[0]
                assert len(body) in (128, BIG)
                chunks = REPLY
                hdrs = REPLY_HEADERS + [(b"content-length", str(sum(len(c) for c in chunks)).encode())]
                out = [conn.send(h11.Response(status_code=200, headers=hdrs))]
                for c in chunks:
                    out.append(conn.send(h11.Data(data=c)))
                out.append(conn.send(h11.EndOfMessage()))
                self.t.writelines(out)
                conn.start_next_cycle()


def measure(protocols: dict[str, asyncio.Protocol], pieces: list[bytes], n: int,
            rounds: int = 7) -> dict[str, float]:
    """Best µs/request for each protocol, rounds interleaved so that machine noise hits all alike."""
    best = {}
    for name, protocol in protocols.items():
        protocol.connection_made(FakeTransport())
        for _ in range(max(10, n // 20)):
            for piece in pieces:
                protocol.data_received(piece)
        best[name] = float("inf")
    for _ in range(rounds):
        for name, protocol in protocols.items():
            data_received = protocol.data_received
            t0 = time.perf_counter()
            for _ in range(n):
                for piece in pieces:
                    data_received(piece)
            best[name] = min(best[name], (time.perf_counter() - t0) / n * 1e6)
    return best


def big_request() -> list[bytes]:
    """A `big` infer POST (1 MiB body) as the socket delivers it: 64 KiB reads."""
    data = REQUEST.replace(b"Content-Length: 128", b"Content-Length: %d" % BIG)[:-128] + b"\x03" * BIG
    return [data[i:i + 65536] for i in range(0, len(data), 65536)]


async def main(n: int) -> None:
    print(f"{platform.processor() or platform.machine()} python {platform.python_version()} h11 {h11.__version__}")
    for label, pieces, count in (("simple (128 B body)", [REQUEST], n), ("big (1 MiB body)", big_request(), n // 100)):
        best = measure({"floor": Floor(), "ours": HttpProtocol(app)}, pieces, count)
        floor, ours = best["floor"], best["ours"]
        print(f"{label:20s} floor shape {floor:8.2f} µs/request   HttpProtocol {ours:8.2f} µs/request"
              f"   ({ours / floor:.2f}x)")


if __name__ == "__main__":
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000))
