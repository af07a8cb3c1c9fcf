"""Shared-memory arenas that carry tensor bytes between the server and a Python-backend stub.

Rules: stdlib + numpy only (the stub imports this file as a top-level module). Each side owns one
arena and allocates only from it, for the tensors it sends; the peer maps it and reads the bytes in
place (`view`: an ndarray over the block, no copy). When the peer's last reference to a block dies,
a finalizer queues its offset, and the peer sends the owner a FREE frame with its next message.
Regions are anonymous memfds handed over by fd (nothing in /dev/shm to leak), or, without memfd,
a /dev/shm file that the creator unlinks as soon as the stub has mapped it.
A tensor that does not fit travels inline in the frame instead (one extra copy, never an error).
"""
from __future__ import annotations

import bisect
import ctypes
import mmap
import os
import struct
import tempfile
import threading
import weakref
from typing import Any

import numpy as np

ALIGN = 64
_LEN = struct.Struct("<I")

# Wire datatype -> numpy dtype (no BF16: the stub cannot assume ml_dtypes).
NUMPY_OF: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(np.object_),
}
_WIRE_OF: dict[np.dtype, str] = {v: k for k, v in NUMPY_OF.items() if k != "BYTES"}


def wire_of(dtype: np.dtype) -> str:
    """numpy dtype -> wire datatype; object/str/bytes arrays are BYTES."""
    if dtype.kind in "OSU":
        return "BYTES"
    wire = _WIRE_OF.get(dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype)
    if wire is None:
        raise TypeError(f"unsupported numpy dtype {dtype}")
    return wire


class Allocator:
    """First-fit allocator over [0, size) with coalescing frees; pure bookkeeping, not thread-safe."""

    __slots__ = ("size", "_starts", "_sizes", "used")

    def __init__(self, size: int) -> None:
        self.size = size
        self._starts: list[int] = [0]  # sorted starts of free ranges
        self._sizes: dict[int, int] = {0: size}
        self.used: dict[int, int] = {}  # offset -> allocated size

    def alloc(self, nbytes: int) -> int | None:
        need = max(ALIGN, (nbytes + ALIGN - 1) & ~(ALIGN - 1))
        for i, start in enumerate(self._starts):
            free = self._sizes[start]
            if free >= need:
                del self._sizes[start]
                if free == need:
                    del self._starts[i]
                else:
                    self._starts[i] = start + need
                    self._sizes[start + need] = free - need
                self.used[start] = need
                return start
        return None

    def free(self, offset: int) -> None:
        size = self.used.pop(offset, None)
        if size is None:
            raise ValueError(f"free of offset {offset}, which is not allocated")
        i = bisect.bisect_left(self._starts, offset)
        end = offset + size
        if i < len(self._starts) and self._starts[i] == end:  # merge with the next free range
            size += self._sizes.pop(end)
            del self._starts[i]
        if i > 0 and (prev := self._starts[i - 1]) + self._sizes[prev] == offset:  # and the previous
            self._sizes[prev] += size
            return
        self._starts.insert(i, offset)
        self._sizes[offset] = size

    @property
    def free_bytes(self) -> int:
        return sum(self._sizes.values())


def create_region(size: int) -> tuple[int, str | None]:
    """A new shared region of `size` bytes: (fd, path); path is None for an anonymous memfd."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("triton_python_backend_arena", 0)
        os.ftruncate(fd, size)
        return fd, None
    fd, path = tempfile.mkstemp(prefix="triton_python_backend_shm_region_", dir="/dev/shm")
    os.ftruncate(fd, size)
    return fd, path


class _Block:
    """Exports one arena block to numpy (through __array_interface__); its death frees the block."""

    __slots__ = ("__array_interface__", "__weakref__", "arena")


class PendingFrees:
    """Offsets of a peer's blocks that this side has stopped using; drained into FREE frames."""

    __slots__ = ("_offsets", "_lock")

    def __init__(self) -> None:
        self._offsets: list[int] = []
        self._lock = threading.Lock()

    def add(self, offset: int) -> None:
        with self._lock:
            self._offsets.append(offset)

    def drain(self) -> list[int]:
        with self._lock:
            out, self._offsets = self._offsets, []
        return out


class Arena:
    """One mapped region; `owner=True` allocates from it, the peer's copy only views it."""

    def __init__(self, fd: int, size: int, owner: bool) -> None:
        self.size = size
        self.mm = mmap.mmap(fd, size)
        self._mv = memoryview(self.mm)
        self._base = ctypes.addressof(ctypes.c_char.from_buffer(self.mm))
        self._alloc = Allocator(size) if owner else None
        self._lock = threading.Lock()

    # -- owner side ---------------------------------------------------------------------------
    def put(self, data: Any) -> tuple[int, int] | None:
        """Copy a contiguous buffer or an ndarray into a new block: (offset, nbytes), or None if full."""
        if isinstance(data, np.ndarray):
            nbytes = data.nbytes
        else:
            data = memoryview(data).cast("B")
            nbytes = data.nbytes
        with self._lock:
            offset = self._alloc.alloc(nbytes)  # type: ignore[union-attr]
        if offset is None:
            return None
        if isinstance(data, np.ndarray):
            dst = np.ndarray(data.shape, data.dtype, buffer=self._mv, offset=offset)
            np.copyto(dst, data, casting="no")
        else:
            self._mv[offset:offset + nbytes] = data
        return offset, nbytes

    def free(self, offsets: list[int]) -> None:
        with self._lock:
            for offset in offsets:
                self._alloc.free(offset)  # type: ignore[union-attr]

    @property
    def free_bytes(self) -> int:
        with self._lock:
            return self._alloc.free_bytes  # type: ignore[union-attr]

    # -- peer side ----------------------------------------------------------------------------
    def view(self, offset: int, nbytes: int, dtype: np.dtype, shape: tuple[int, ...],
             frees: PendingFrees) -> np.ndarray:
        """An ndarray over a peer block, no copy; the block is released when the array (and every
        view of it) is gone."""
        if offset < 0 or offset + nbytes > self.size:
            raise ValueError(f"block [{offset}, {offset + nbytes}) outside the arena")
        block = _Block()
        block.arena = self  # keeps the mapping alive while arrays use it
        block.__array_interface__ = {"shape": tuple(shape), "typestr": dtype.str,
                                     "data": (self._base + offset, False), "version": 3}
        weakref.finalize(block, frees.add, offset)
        return np.asarray(block)

    def read(self, offset: int, nbytes: int) -> memoryview:
        """The block's bytes as a memoryview (the caller copies what it keeps, then frees)."""
        if offset < 0 or offset + nbytes > self.size:
            raise ValueError(f"block [{offset}, {offset + nbytes}) outside the arena")
        return self._mv[offset:offset + nbytes]


# -- tensors on the wire ----------------------------------------------------------------------
# A tensor descriptor is (name, datatype, shape, offset, nbytes, inline): offset -1 means the bytes
# are `inline` (the arena was full, or the tensor is empty).


def serialize_bytes(array: np.ndarray) -> bytes:
    """BYTES elements as 4-byte little-endian lengths + data (str elements UTF-8 encoded)."""
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


def deserialize_bytes(raw: Any) -> np.ndarray:
    """Length-prefixed elements -> 1-D object array of bytes."""
    buf = memoryview(raw).cast("B")
    out: list[bytes] = []
    pos, end = 0, len(buf)
    while pos < end:
        if end - pos < 4:
            raise ValueError("incomplete string length indicator")
        (n,) = _LEN.unpack_from(buf, pos)
        pos += 4
        if end - pos < n:
            raise ValueError("incomplete string data")
        out.append(bytes(buf[pos:pos + n]))
        pos += n
    array = np.empty(len(out), dtype=np.object_)
    array[:] = out
    return array


def to_desc(arena: Arena, name: str, datatype: str, shape: list[int], data: Any) -> tuple:
    """Place one tensor (ndarray, or raw little-endian bytes) in `arena`; its descriptor."""
    if datatype == "BYTES" and isinstance(data, np.ndarray):
        data = serialize_bytes(data)
    elif isinstance(data, np.ndarray) and not data.flags.c_contiguous:
        data = np.ascontiguousarray(data)
    nbytes = data.nbytes if isinstance(data, (np.ndarray, memoryview)) else len(data)
    placed = arena.put(data) if nbytes else None
    if placed is None:
        raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
        return (name, datatype, list(shape), -1, nbytes, raw)
    return (name, datatype, list(shape), placed[0], nbytes, None)


def from_desc(peer: Arena, desc: tuple, frees: PendingFrees) -> np.ndarray:
    """The tensor a descriptor names, as an ndarray: a view into `peer` (fixed-size types) or an
    object array of bytes (BYTES, copied out and its block released at once)."""
    _name, datatype, shape, offset, nbytes, inline = desc
    shape = tuple(shape)
    if datatype == "BYTES":
        if offset < 0:
            array = deserialize_bytes(inline)
        else:
            array = deserialize_bytes(peer.read(offset, nbytes))
            frees.add(offset)
        return array.reshape(shape)
    dtype = NUMPY_OF.get(datatype)
    if dtype is None:
        raise TypeError(f"unsupported datatype {datatype}")
    if offset < 0:
        return np.frombuffer(inline, dtype=dtype).reshape(shape) if nbytes else np.zeros(shape, dtype)
    return peer.view(offset, nbytes, dtype, shape, frees)
