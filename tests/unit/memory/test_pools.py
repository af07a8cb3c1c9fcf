"""The best-fit pool allocator, over a bytearray standing in for pinned or device memory."""
from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

from triton_asyncio.memory import device
from triton_asyncio.memory.pools import ALIGNMENT, BestFitAllocator, MemoryPool, aligned


def test_sizes_are_aligned():
    assert aligned(1) == ALIGNMENT and aligned(ALIGNMENT) == ALIGNMENT and aligned(ALIGNMENT + 1) == 2 * ALIGNMENT
    assert aligned(0) == ALIGNMENT  # a zero-byte tensor still gets a distinct address


def test_allocate_until_full_then_none():
    alloc = BestFitAllocator(4 * ALIGNMENT)
    offsets = [alloc.allocate(ALIGNMENT)[0] for _ in range(4)]
    assert offsets == [0, ALIGNMENT, 2 * ALIGNMENT, 3 * ALIGNMENT]
    assert alloc.allocate(1) is None and alloc.free_bytes == 0


def test_best_fit_picks_the_smallest_hole():
    alloc = BestFitAllocator(10 * ALIGNMENT)
    a = alloc.allocate(3 * ALIGNMENT)[0]  # [0,3)
    b = alloc.allocate(ALIGNMENT)[0]  # [3,4)
    c = alloc.allocate(ALIGNMENT)[0]  # [4,5)
    alloc.allocate(ALIGNMENT)  # [5,6); the tail [6,10) stays free
    alloc.free(a)
    alloc.free(c)  # holes: [0,3) size 3, [4,5) size 1, [6,10) size 4
    assert alloc.allocate(ALIGNMENT)[0] == c  # the exact fit, not the first hole
    assert alloc.allocate(2 * ALIGNMENT)[0] == a  # 3 beats 4
    assert b == ALIGNMENT * 3


def test_free_coalesces_neighbours_back_into_one_hole():
    alloc = BestFitAllocator(3 * ALIGNMENT)
    blocks = [alloc.allocate(ALIGNMENT)[0] for _ in range(3)]
    for off in (blocks[0], blocks[2], blocks[1]):  # the middle one last joins both sides
        alloc.free(off)
    assert alloc.used_bytes == 0
    assert alloc.allocate(3 * ALIGNMENT) == (0, 3 * ALIGNMENT)  # one hole again


def test_double_free_and_unknown_offsets_are_refused():
    alloc = BestFitAllocator(2 * ALIGNMENT)
    off, _ = alloc.allocate(10)
    alloc.free(off)
    with pytest.raises(ValueError):
        alloc.free(off)
    with pytest.raises(ValueError):
        alloc.free(12345)


def test_empty_pool_allocates_nothing():
    assert BestFitAllocator(0).allocate(1) is None


def test_threads_never_get_overlapping_blocks():
    alloc = BestFitAllocator(64 * ALIGNMENT)
    seen: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(200):
            got = alloc.allocate(ALIGNMENT)
            if got is None:
                continue
            with lock:
                assert got[0] not in seen
                seen.append(got[0])
            with lock:
                seen.remove(got[0])
            alloc.free(got[0])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert alloc.used_bytes == 0 and alloc.free_bytes == 64 * ALIGNMENT


def test_pool_blocks_are_addresses_in_the_allocation():
    pool = MemoryPool(0x10000, 4 * ALIGNMENT, device_id=0)
    block = pool.allocate(100)
    assert block is not None and block.ptr == 0x10000 and block.size == ALIGNMENT
    second = pool.allocate(100)
    assert second is not None and second.ptr == 0x10000 + ALIGNMENT
    pool.release(block)
    assert pool.free_bytes == 3 * ALIGNMENT


def _host_pool(nbytes: int) -> MemoryPool:
    host = np.zeros(nbytes, np.uint8)  # stands in for cuMemHostAlloc's pinned memory
    return MemoryPool(host.ctypes.data, nbytes, allocation=None, host=host)


def test_a_lease_returns_to_the_pool_when_its_last_view_is_gone():
    pool = _host_pool(2 * ALIGNMENT)
    lease = pool.lease(10)
    assert lease is not None and lease.nbytes == 10
    lease[:] = 7
    view = memoryview(lease)
    del lease
    gc.collect()
    assert pool.free_bytes == ALIGNMENT  # the memoryview still holds it
    assert bytes(view) == b"\x07" * 10
    del view
    gc.collect()
    assert pool.free_bytes == 2 * ALIGNMENT


def test_lease_on_a_device_pool_is_a_type_error():
    with pytest.raises(TypeError):
        MemoryPool(0x1000, ALIGNMENT, device_id=0).lease(1)


def test_pinned_buffer_falls_back_to_pageable_when_the_pool_is_full(monkeypatch):
    pool = _host_pool(ALIGNMENT)
    monkeypatch.setattr(device, "_pinned_pool", [pool])
    first = device.pinned_buffer(ALIGNMENT)
    assert first.ctypes.data == pool.base_ptr
    second = device.pinned_buffer(16)  # the pool is full: plain memory, the request still runs
    assert second.nbytes == 16 and not (pool.base_ptr <= second.ctypes.data < pool.base_ptr + pool.size)
    monkeypatch.setattr(device, "_pinned_pool", [None])  # --pinned-memory-pool-byte-size=0
    assert device.pinned_buffer(8).nbytes == 8


def test_device_layer_is_off_without_a_gpu(monkeypatch):
    from triton_asyncio.memory import cuda
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    assert device.available() is False
