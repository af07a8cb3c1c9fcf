"""gRPC message framing, `grpc-timeout` and `grpc-message` encoding (PROTOCOL-HTTP2.md); pure.

Rules: a message on the wire is 1 byte compressed flag + 4-byte big-endian length + payload.
`MessageDecoder` reassembles messages across arbitrary chunk boundaries without copying a message
that lies inside one chunk; a message spanning chunks is copied into its own buffer, grown as
its bytes arrive (memory follows what was received, never what a prefix claims). Errors
are `FramingError(status, message)`, which the transport turns into trailers. Nothing here knows
HTTP/2 or asyncio.
"""
from __future__ import annotations

import zlib

from .status import GrpcStatus

Buffer = bytes | bytearray | memoryview

# grpc-encoding -> zlib wbits: gzip is a gzip stream, deflate a zlib stream (as grpc-core sends it)
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_IDENTITY = (None, "", "identity")
ACCEPT_ENCODING = b"identity,deflate,gzip"  # what we decode, sent back in grpc-accept-encoding


class FramingError(Exception):
    """A call-ending framing problem, with the gRPC status it ends the call with."""

    def __init__(self, status: GrpcStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def too_large(size: int, limit: int) -> FramingError:
    """grpc-core's wording (compression_filter.cc)."""
    return FramingError(GrpcStatus.RESOURCE_EXHAUSTED, f"Received message larger than max ({size} vs. {limit})")


def check_encoding(encoding: str | None) -> None:
    """Raise UNIMPLEMENTED for a grpc-encoding we cannot decode (the spec's answer to it)."""
    if encoding not in _IDENTITY and encoding not in _WBITS:
        raise FramingError(GrpcStatus.UNIMPLEMENTED,
                           f'grpc: Decompressor is not installed for grpc-encoding "{encoding}"')


class MessageDecoder:
    """Length-prefixed messages out of a byte stream, fed chunk by chunk."""

    __slots__ = ("_max", "_encoding", "_head", "_body", "_size", "_flag")

    def __init__(self, max_message_size: int, encoding: str | None = None) -> None:
        check_encoding(encoding)
        self._max = max_message_size
        self._encoding = None if encoding in _IDENTITY else encoding
        self._head = b""  # a partial 5-byte prefix
        self._body: bytearray | None = None  # the message being filled across chunks
        self._size = 0  # the size its prefix declared
        self._flag = 0

    @property
    def pending(self) -> int:
        """Bytes held for a message not yet complete."""
        return len(self._head) + (len(self._body) if self._body is not None else 0)

    @property
    def at_message_boundary(self) -> bool:
        return not self._head and self._body is None

    def feed(self, data: Buffer) -> list[Buffer]:
        """Complete messages in `data` (plus what was held before), in order."""
        out: list[Buffer] = []
        pos = 0
        end = len(data)
        if self._head or self._body is not None:
            pos = self._resume(data, out)
        if pos >= end:
            return out
        view = memoryview(data)
        limit = self._max
        while True:
            if end - pos < 5:
                self._head = bytes(view[pos:end])
                return out
            flag = data[pos]
            size = int.from_bytes(view[pos + 1:pos + 5], "big")
            pos += 5
            if flag > 1 or size > limit:
                raise self._bad_prefix(flag, size)
            stop = pos + size
            if stop > end:  # spans chunks: copy into its own buffer once
                self._start_body(flag, size, view[pos:end])
                return out
            out.append(view[pos:stop] if not flag else self._inflate(view[pos:stop]))
            if stop == end:
                return out
            pos = stop

    # -- the slow paths: a message split across chunks ------------------------------------------
    def _resume(self, data: Buffer, out: list[Buffer]) -> int:
        """Complete the held prefix or body from the front of `data`; return how much was used."""
        pos = 0
        if self._head:
            need = 5 - len(self._head)
            head = self._head + bytes(data[:need])
            if len(head) < 5:
                self._head = head
                return len(data)
            self._head = b""
            pos = need
            flag, size = head[0], int.from_bytes(head[1:5], "big")
            if flag > 1 or size > self._max:
                raise self._bad_prefix(flag, size)
            self._start_body(flag, size, b"")
        body = self._body
        assert body is not None
        take = min(self._size - len(body), len(data) - pos)
        body += memoryview(data)[pos:pos + take]
        pos += take
        if len(body) == self._size:
            self._body = None
            out.append(body if not self._flag else self._inflate(body))
        return pos

    def _start_body(self, flag: int, size: int, first: Buffer) -> None:
        self._flag = flag
        self._size = size
        # grown as bytes arrive, never preallocated: a 5-byte prefix must not reserve up to
        # max_message_size (2 GiB by default) before the peer has sent any of it
        self._body = bytearray(first)

    def _bad_prefix(self, flag: int, size: int) -> FramingError:
        if flag > 1:
            return FramingError(GrpcStatus.INTERNAL, f"Bad gRPC frame type 0x{flag:02x}")
        return too_large(size, self._max)

    def _inflate(self, payload: Buffer) -> bytes:
        encoding = self._encoding
        if encoding is None:
            raise FramingError(GrpcStatus.INTERNAL,
                               "Compressed message received without grpc-encoding (compressed flag set "
                               "with identity or empty encoding)")
        inflater = zlib.decompressobj(_WBITS[encoding])
        try:
            out = inflater.decompress(payload, self._max + 1)
        except zlib.error:
            raise FramingError(GrpcStatus.INTERNAL,
                               f"Unexpected error decompressing data for algorithm {encoding}") from None
        if len(out) > self._max:
            raise FramingError(GrpcStatus.RESOURCE_EXHAUSTED,
                               f"Received message after decompression larger than max "
                               f"({len(out) + len(inflater.unconsumed_tail)} vs. {self._max})")
        return out


def encode_message(payload: Buffer, compress: str | None = None) -> list[Buffer]:
    """[5-byte prefix, payload], uncopied; compressed only when that makes it smaller (as grpc-core)."""
    flag = b"\x00"
    if compress is not None and compress not in _IDENTITY:
        deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, _WBITS[compress])
        packed = deflater.compress(payload) + deflater.flush()
        if len(packed) < len(payload):
            payload, flag = packed, b"\x01"
    return [flag + len(payload).to_bytes(4, "big"), payload]


# -- grpc-timeout -------------------------------------------------------------------------------------
_UNITS = {72: 3600.0, 77: 60.0, 83: 1.0, 109: 1e-3, 117: 1e-6, 110: 1e-9}  # H M S m u n


def parse_timeout(value: bytes) -> float | None:
    """`grpc-timeout` in seconds: 1-8 ASCII digits then H/M/S/m/u/n; None when malformed (grpc-core
    then runs the call without a deadline)."""
    if not 2 <= len(value) <= 9:
        return None
    unit = _UNITS.get(value[-1])
    digits = value[:-1]
    if unit is None or not digits.isdigit():
        return None
    return int(digits) * unit


# -- grpc-message percent-encoding ------------------------------------------------------------------
_UNRESERVED = frozenset(range(0x20, 0x7F)) - {0x25}  # space and VCHAR except '%'


def encode_grpc_message(text: str) -> bytes:
    """UTF-8, then every byte outside %x20-%x7E, and '%' itself, as %XX (uppercase hex)."""
    if text.isascii() and text.isprintable() and "%" not in text:
        return text.encode("ascii")
    return b"".join(bytes((b,)) if b in _UNRESERVED else b"%%%02X" % b
                    for b in text.encode("utf-8", "surrogateescape"))


def decode_grpc_message(value: bytes) -> str:
    """The inverse, lenient as the spec asks: a malformed %-sequence stays as it is."""
    if b"%" not in value:
        return value.decode("utf-8", "replace")
    out = bytearray()
    i, n = 0, len(value)
    while i < n:
        byte = value[i]
        if byte == 0x25 and i + 2 < n and _is_hex(value[i + 1:i + 3]):
            out.append(int(value[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(byte)
            i += 1
    return out.decode("utf-8", "replace")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)
