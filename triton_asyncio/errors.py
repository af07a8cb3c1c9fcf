"""The one exception type that crosses layers.

Rules: every layer raises TritonError(code, message); only the frontends' status tables
(codec/status.py) turn a code into an HTTP or gRPC status. Nothing here imports the project.
"""
from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """Triton's neutral error codes (TRITONSERVER_ERROR_*), numbered as Triton numbers them."""

    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7


class TritonError(Exception):
    """An error with Triton's neutral code; the message is what the client sees."""

    __slots__ = ("code", "message")

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"TritonError({self.code.name}, {self.message!r})"


def invalid_arg(message: str) -> TritonError:
    return TritonError(ErrorCode.INVALID_ARG, message)


def not_found(message: str) -> TritonError:
    return TritonError(ErrorCode.NOT_FOUND, message)


def internal(message: str) -> TritonError:
    return TritonError(ErrorCode.INTERNAL, message)


def unavailable(message: str) -> TritonError:
    return TritonError(ErrorCode.UNAVAILABLE, message)


def unsupported(message: str) -> TritonError:
    return TritonError(ErrorCode.UNSUPPORTED, message)
