"""Request `Content-Encoding` decoding and response compression chosen by `Accept-Encoding`.

Rules: Triton accepts `gzip` (gzip stream) and `deflate` (zlib stream, as clients send it),
`identity` or empty means none, anything else is UNSUPPORTED "Unsupported compression type"
(the app adds `Accept-Encoding: gzip, deflate`). The decompressed size is capped at the max
input size. Responses are compressed whole (JSON + binary); IHCL keeps the uncompressed JSON
length; a compression failure sends the body uncompressed. Pure: no I/O.
"""
from __future__ import annotations

import re
import zlib

from ..errors import TritonError, internal, invalid_arg, unsupported

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_NUMBER = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else value


def decompress(body, encoding: bytes | str | None, max_size: int):
    """The request body decoded per `Content-Encoding` (unchanged for identity/empty)."""
    encoding = _text(encoding or "")
    if encoding in ("", "identity"):
        return body
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise unsupported("Unsupported compression type")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, max_size + 1)
    except zlib.error as e:
        raise internal(f"failed to decompress the request body: {e}") from None
    if len(out) > max_size or inflater.unconsumed_tail:
        raise invalid_arg(
            f"decompressed request size exceeds the maximum allowed input size of {max_size} bytes. "
            "Use --http-max-input-size to increase the limit.")
    return out


def choose_encoding(accept_encoding: bytes | str) -> str:
    """Triton's CompressionTypeUsed: highest `;q=` weight among identity/gzip/deflate, first wins ties."""
    chosen, weight = "identity", 0.0
    for entry in _text(accept_encoding).split(","):
        start = len(entry) - len(entry.lstrip(" "))
        wpos = entry.find(";q=")
        if start == len(entry) or (wpos >= 0 and start >= wpos):
            continue  # malformed
        kind = entry[start:] if wpos < 0 else entry[start:wpos]
        entry_weight = 1.0
        if wpos >= 0:
            m = _NUMBER.match(entry, wpos + 3)
            if m is None:
                continue
            entry_weight = float(m.group())
        if kind in ("identity", "gzip", "deflate") and entry_weight > weight:
            chosen, weight = kind, entry_weight
    return chosen


def compress(chunks: list, encoding: str) -> list:
    """Every chunk through one gzip/zlib stream; returns a one-element list."""
    deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, _WBITS[encoding])
    parts = [deflater.compress(c) for c in chunks]
    parts.append(deflater.flush())
    return [b"".join(parts)]


def compress_response(chunks: list, accept_encoding: bytes | str, headers: list) -> list:
    """Compress the body if `Accept-Encoding` asks for it; appends `content-encoding` to headers."""
    encoding = choose_encoding(accept_encoding)
    if encoding == "identity":
        return chunks
    try:
        body = compress(chunks, encoding)
    except (zlib.error, TritonError, ValueError, TypeError):
        return chunks  # Triton sends uncompressed when compression fails
    headers.append((b"content-encoding", encoding.encode("ascii")))
    return body
