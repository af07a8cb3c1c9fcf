"""The shared-memory arena: allocator bookkeeping, zero-copy views whose death frees the block."""
from __future__ import annotations

import gc

import numpy as np
import pytest

from triton_asyncio.backends.python import arena


def test_allocator_aligns_and_coalesces():
    alloc = arena.Allocator(1024)
    a, b, c = alloc.alloc(10), alloc.alloc(64), alloc.alloc(65)
    assert (a, b, c) == (0, 64, 128)
    assert alloc.alloc(1024) is None
    alloc.free(b)
    alloc.free(a)  # merges with b's range
    assert alloc.alloc(128) == 0
    alloc.free(0)
    alloc.free(c)  # merges both ways: the arena is whole again
    assert alloc.free_bytes == 1024 and alloc.alloc(1024) == 0


def test_allocator_rejects_unknown_free():
    with pytest.raises(ValueError, match="not allocated"):
        arena.Allocator(256).free(64)


def _pair(size=1 << 16):
    fd, path = arena.create_region(size)
    assert path is None  # memfd on Linux: nothing in /dev/shm
    return arena.Arena(fd, size, owner=True), arena.Arena(fd, size, owner=False)


def test_view_is_zero_copy_and_frees_when_the_last_view_dies():
    owner, peer = _pair()
    frees = arena.PendingFrees()
    desc = arena.to_desc(owner, "X", "FP32", [2, 3], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert desc[3] >= 0 and desc[5] is None
    array = arena.from_desc(peer, desc, frees)
    np.testing.assert_array_equal(array, np.arange(6, dtype=np.float32).reshape(2, 3))
    owner.mm[desc[3]:desc[3] + 4] = np.float32(42).tobytes()  # same memory: the view sees the write
    assert array[0, 0] == 42
    row = array[1]
    del array
    gc.collect()
    assert frees.drain() == []  # `row` still uses the block
    del row
    gc.collect()
    offsets = frees.drain()
    assert offsets == [desc[3]]
    owner.free(offsets)
    assert owner.free_bytes == owner.size


def test_bytes_tensors_are_copied_out_and_freed_at_once():
    owner, peer = _pair()
    frees = arena.PendingFrees()
    data = np.array([b"ab", "ü", b""], dtype=np.object_).reshape(3, 1)
    desc = arena.to_desc(owner, "S", "BYTES", [3, 1], data)
    out = arena.from_desc(peer, desc, frees)
    assert out.tolist() == [[b"ab"], ["ü".encode()], [b""]]
    assert frees.drain() == [desc[3]]


def test_full_arena_falls_back_to_inline_bytes():
    owner, peer = _pair(4096)
    big = np.ones(2048, dtype=np.float32)  # 8 KiB > arena
    desc = arena.to_desc(owner, "B", "FP32", [2048], big)
    assert desc[3] == -1 and len(desc[5]) == big.nbytes
    np.testing.assert_array_equal(arena.from_desc(peer, desc, arena.PendingFrees()), big)


def test_raw_bytes_and_non_contiguous_arrays():
    owner, peer = _pair()
    frees = arena.PendingFrees()
    raw = memoryview(np.arange(4, dtype=np.int32).tobytes())
    np.testing.assert_array_equal(arena.from_desc(peer, arena.to_desc(owner, "R", "INT32", [4], raw), frees),
                                  np.arange(4, dtype=np.int32))
    strided = np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2]
    np.testing.assert_array_equal(
        arena.from_desc(peer, arena.to_desc(owner, "S", "INT64", [3, 2], strided), frees), strided)
    empty = arena.to_desc(owner, "E", "FP32", [0, 3], np.zeros((0, 3), np.float32))
    assert arena.from_desc(peer, empty, frees).shape == (0, 3)


def test_view_outside_the_arena_is_rejected():
    owner, peer = _pair(4096)
    with pytest.raises(ValueError, match="outside the arena"):
        peer.view(4000, 200, np.dtype(np.uint8), (200,), arena.PendingFrees())
