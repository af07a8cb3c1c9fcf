"""Tensors as the data plane sees them, and the BYTES length-prefixed format.

Rules: a Tensor holds either raw little-endian bytes (a memoryview over a received buffer or
shared memory: no copy) or a numpy array; conversions happen lazily and at most once.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import invalid_arg
from .datatype import NUMPY_DTYPE, element_count

_LEN = struct.Struct("<I")


@dataclass(slots=True)
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    # Raw little-endian bytes (bytes, bytearray or memoryview), or None when `array` is set.
    raw: Any = None
    array: np.ndarray | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    def as_numpy(self) -> np.ndarray:
        """A numpy view (fixed-size types) or an object array of bytes (BYTES)."""
        if self.array is None:
            self.array = raw_to_numpy(self.datatype, self.shape, self.raw)
        return self.array

    def as_bytes(self):
        """Raw little-endian bytes (a buffer); BYTES arrays are serialized length-prefixed."""
        if self.raw is None:
            self.raw = numpy_to_raw(self.datatype, self.array)
        return self.raw

    def raw_size(self) -> int:
        raw = self.as_bytes()
        return raw.nbytes if isinstance(raw, memoryview) else len(raw)


def raw_to_numpy(datatype: str, shape, raw) -> np.ndarray:
    if datatype == "BYTES":
        return deserialize_bytes(raw, element_count(shape)).reshape(shape)
    dtype = NUMPY_DTYPE.get(datatype)
    if dtype is None:
        raise invalid_arg(f"invalid datatype '{datatype}'")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def numpy_to_raw(datatype: str, array: np.ndarray):
    if datatype == "BYTES":
        return serialize_bytes(array)
    dtype = NUMPY_DTYPE[datatype]
    if array.dtype != dtype:
        array = array.astype(dtype)
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return memoryview(array).cast("B") if array.size else b""


def serialize_bytes(array: np.ndarray) -> bytes:
    """Each element as a 4-byte little-endian length then its bytes (str is UTF-8 encoded)."""
    parts: list[bytes] = []
    pack = _LEN.pack
    for item in array.reshape(-1):
        if isinstance(item, str):
            item = item.encode("utf-8")
        elif not isinstance(item, (bytes, bytearray)):
            item = str(item).encode("utf-8")
        parts.append(pack(len(item)))
        parts.append(bytes(item))
    return b"".join(parts)


def deserialize_bytes(raw, count: int | None = None) -> np.ndarray:
    """Length-prefixed elements -> 1-D object array of bytes. Raises on truncation."""
    buf = memoryview(raw).cast("B") if not isinstance(raw, bytes) else raw
    out: list[bytes] = []
    pos, end = 0, len(buf)
    unpack = _LEN.unpack_from
    while pos < end:
        if end - pos < 4:
            raise invalid_arg("incomplete string length indicator")
        (n,) = unpack(buf, pos)
        pos += 4
        if end - pos < n:
            raise invalid_arg("incomplete string data")
        out.append(bytes(buf[pos:pos + n]))
        pos += n
    if count is not None and len(out) != count:
        raise invalid_arg(f"expected {count} string elements, got {len(out)}")
    arr = np.empty(len(out), dtype=np.object_)
    arr[:] = out
    return arr


def count_bytes_elements(raw) -> int | None:
    """Number of length-prefixed elements in raw, or None if the framing is incomplete."""
    buf = memoryview(raw).cast("B") if not isinstance(raw, bytes) else raw
    pos, end, n = 0, len(buf), 0
    unpack = _LEN.unpack_from
    while pos < end:
        if end - pos < 4:
            return None
        pos += 4 + unpack(buf, pos)[0]
        n += 1
    return n if pos == end else None
