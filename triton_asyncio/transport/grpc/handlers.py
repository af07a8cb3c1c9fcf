"""The contract between the gRPC transport (protocol.py, connection.py) and the RPC handlers.

Rules: the transport knows HTTP/2, framing, deadlines and compression, and nothing of Triton; the
handlers (service.py) know Triton's messages and the data plane, and nothing of HTTP/2. A handler
takes one serialized request message (a buffer view, valid for the call) and returns the
serialized response; an error is an `RpcError`, which the transport alone turns into
`grpc-status` / `grpc-message` trailers.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

Buffer = bytes | bytearray | memoryview


class RpcError(Exception):
    """Ends a call with a gRPC status (a `codec.status.GrpcStatus` value) and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message


@dataclass(slots=True)
class CallContext:
    """What a handler may read about its call."""

    method: str  # the :path, e.g. "/inference.GRPCInferenceService/ModelInfer"
    metadata: list[tuple[str, str]] = field(default_factory=list)  # non-pseudo, non-grpc-* headers
    deadline: float | None = None  # loop.time() by which the call must end (grpc-timeout); None: none
    peer: str = ""

    def header(self, name: str) -> str | None:
        for key, value in self.metadata:
            if key == name:
                return value
        return None


# Unary: request bytes -> response bytes, at once or awaited.
UnaryHandler = Callable[[Buffer, CallContext], "bytes | Awaitable[bytes]"]


class ResponseSink(Protocol):
    """Where a streaming handler puts its response messages, in order."""

    def send(self, message: bytes) -> None: ...

    @property
    def closed(self) -> bool:
        """True once the client reset the stream or the connection went away: stop sending."""
        ...

    async def drain(self) -> None:
        """Wait while this call's responses pile up unsent (a client that does not read)."""
        ...


# Bidirectional streaming: the request messages as they arrive (the iterator ends when the
# client half-closes), and the sink for responses. Returning ends the call with OK.
StreamHandler = Callable[[AsyncIterator[Buffer], ResponseSink, CallContext], Awaitable[None]]


class Router(Protocol):
    """Looks up the handler for a :path (bytes as received); None means UNIMPLEMENTED."""

    def unary(self, path: bytes) -> UnaryHandler | None: ...

    def stream(self, path: bytes) -> StreamHandler | None: ...
