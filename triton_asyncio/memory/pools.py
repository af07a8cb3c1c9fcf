"""Best-fit memory pools over one big allocation each (Triton's pinned and CUDA memory pools).

Rules: pure Python, no CUDA import: the pool is handed an allocation (a base address, a size, and
for host memory a writable numpy view of it) and only does the bookkeeping, so the allocator is
unit-tested with a bytearray standing in for pinned or device memory. Blocks are aligned to
`ALIGNMENT` bytes (what cudaMalloc guarantees, and what TensorRT wants for its bindings). A
request the pool cannot satisfy returns None: the caller falls back to a one-off allocation, as
Triton does when its pool is exhausted. Thread-safe: instances' worker threads share one pool.
"""
from __future__ import annotations

import bisect
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

ALIGNMENT = 256
PINNED_DEFAULT = 256 * 1024 * 1024  # --pinned-memory-pool-byte-size
CUDA_DEFAULT = 64 * 1024 * 1024  # --cuda-memory-pool-byte-size, per GPU


def aligned(nbytes: int, alignment: int = ALIGNMENT) -> int:
    return max(alignment, (nbytes + alignment - 1) // alignment * alignment)


@dataclass(frozen=True, slots=True)
class Block:
    """One allocation from a pool: `ptr` is an address (host or device), `offset` is pool-relative."""

    ptr: int
    offset: int
    size: int  # the aligned size the pool reserved, >= what was asked for


class BestFitAllocator:
    """A free list of (offset, size) holes, sorted by offset; frees coalesce with their neighbours."""

    def __init__(self, size: int, alignment: int = ALIGNMENT) -> None:
        self.size = size
        self.alignment = alignment
        self._offsets: list[int] = [0] if size > 0 else []
        self._sizes: list[int] = [size] if size > 0 else []
        self._used: dict[int, int] = {}  # offset -> size of each live block
        self._lock = threading.Lock()

    @property
    def free_bytes(self) -> int:
        return sum(self._sizes)

    @property
    def used_bytes(self) -> int:
        return sum(self._used.values())

    def allocate(self, nbytes: int) -> tuple[int, int] | None:
        """(offset, reserved size) of the smallest hole that fits, or None."""
        need = aligned(nbytes, self.alignment)
        with self._lock:
            best = -1
            for i, size in enumerate(self._sizes):
                if size >= need and (best < 0 or size < self._sizes[best]):
                    best = i
                    if size == need:
                        break
            if best < 0:
                return None
            offset, size = self._offsets[best], self._sizes[best]
            if size == need:
                del self._offsets[best], self._sizes[best]
            else:  # carve from the front: the tail stays one hole
                self._offsets[best] = offset + need
                self._sizes[best] = size - need
            self._used[offset] = need
            return offset, need

    def free(self, offset: int) -> None:
        with self._lock:
            size = self._used.pop(offset, None)
            if size is None:
                raise ValueError(f"offset {offset} is not an allocated block")
            i = bisect.bisect_left(self._offsets, offset)
            if i > 0 and self._offsets[i - 1] + self._sizes[i - 1] == offset:  # merge with the hole before
                i -= 1
                self._sizes[i] += size
            else:
                self._offsets.insert(i, offset)
                self._sizes.insert(i, size)
            if i + 1 < len(self._offsets) and self._offsets[i] + self._sizes[i] == self._offsets[i + 1]:
                self._sizes[i] += self._sizes.pop(i + 1)
                del self._offsets[i + 1]


class MemoryPool:
    """A BestFitAllocator over one allocation. `allocation` is kept alive and freed on close."""

    def __init__(self, base_ptr: int, size: int, allocation: Any = None, host: np.ndarray | None = None,
                 device_id: int = -1) -> None:
        self.base_ptr = base_ptr
        self.device_id = device_id  # -1: host (pinned) memory
        self.allocation = allocation
        self.host = host  # uint8 view of the whole pool when it is host memory
        self._allocator = BestFitAllocator(size)

    @property
    def size(self) -> int:
        return self._allocator.size

    @property
    def free_bytes(self) -> int:
        return self._allocator.free_bytes

    def allocate(self, nbytes: int) -> Block | None:
        got = self._allocator.allocate(nbytes)
        if got is None:
            return None
        return Block(self.base_ptr + got[0], got[0], got[1])

    def release(self, block: Block) -> None:
        self._allocator.free(block.offset)

    def lease(self, nbytes: int) -> np.ndarray | None:
        """Host pools: a uint8 array of `nbytes` that goes back to the pool when the last view of it
        is gone (numpy views and memoryviews keep their base alive), or None when full."""
        if self.host is None:
            raise TypeError("lease() needs a host memory pool")
        block = self.allocate(nbytes)
        if block is None:
            return None
        piece = self.host[block.offset:block.offset + nbytes]  # a new ndarray object owns the lease
        weakref.finalize(piece, self.release, block)
        return piece

    def close(self) -> None:
        """Free the backing allocation (the caller guarantees no block is still in use)."""
        allocation, self.allocation, self.host = self.allocation, None, None
        free = getattr(allocation, "free", None)
        if callable(free):
            free()
