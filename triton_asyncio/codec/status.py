"""Triton's two status tables (HTTP and gRPC) and the error body shape.

Rules: the only place an ErrorCode becomes a transport status; frontends call these at the
edge and nowhere else. Pure: no I/O.
"""
from __future__ import annotations

import enum
import json

from ..errors import ErrorCode


class GrpcStatus(enum.IntEnum):
    """gRPC status codes (grpc/status.h), as sent in `grpc-status` trailers."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

# Triton's HttpCodeFromError: everything not listed is 400.
_HTTP: dict[ErrorCode, int] = {
    ErrorCode.INTERNAL: 500,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.UNSUPPORTED: 501,
}

# Triton's CodeToStatus, as grpc numeric status codes.
_GRPC: dict[ErrorCode, int] = {
    ErrorCode.UNKNOWN: 2,
    ErrorCode.INTERNAL: 13,
    ErrorCode.NOT_FOUND: 5,
    ErrorCode.INVALID_ARG: 3,
    ErrorCode.UNAVAILABLE: 14,
    ErrorCode.UNSUPPORTED: 12,
    ErrorCode.ALREADY_EXISTS: 6,
    ErrorCode.CANCELLED: 1,
}


def http_status(code: ErrorCode) -> int:
    return _HTTP.get(code, 400)


def grpc_status(code: ErrorCode) -> int:
    return _GRPC.get(code, 2)


def error_body(message: str) -> bytes:
    """`{"error":"<message>"}`, compact, UTF-8 unescaped as RapidJSON writes it."""
    return json.dumps({"error": message}, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogateescape")
