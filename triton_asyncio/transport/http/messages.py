"""The two values that cross between HttpProtocol and an app: one request in, one response out.

Rules: plain slotted dataclasses, no parsing and no I/O. A request body is the whole body in ONE
buffer; a response body is a list of buffers written in order and never joined. Header names are
lower-case bytes, as h11 gives them; the protocol adds Content-Length itself.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

Buffer = bytes | bytearray | memoryview


@dataclass(slots=True)
class HttpRequest:
    method: bytes  # b"GET"
    target: bytes  # raw target with the query string, e.g. b"/v2/models/simple/infer?x=1"
    headers: list[tuple[bytes, bytes]]  # lower-cased names
    body: Buffer = b""

    def header(self, name: bytes) -> bytes | None:
        """The first value of the lower-case header `name`, or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # without Content-Length
    body: list[Buffer] = field(default_factory=list)  # written in order, no joining
    # True when every header was built by our own code from constants and numbers (lower-case,
    # valid): the protocol then skips h11's per-header validation, a third of its send cost.
    trusted: bool = False
    # A body produced over time (server-sent events): sent chunked after `body`, which stays empty.
    stream: AsyncIterator[Buffer] | None = None
