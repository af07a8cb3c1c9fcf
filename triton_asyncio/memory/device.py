"""The device layer: CUDA contexts, streams, copies, memory pools and IPC handles, through pycuda.

Rules: with memory/cuda.py (the probe), the only module that imports CUDA bindings, and only
lazily: importing this module is free on a CPU-only host, and `available()` is False there.
Every CUDA call runs inside `activate(device_id)`, which pushes the device's *primary* context
(the one the CUDA runtime, onnxruntime and TensorRT use too, so pointers are shared with them) and
pops it again; the context stack is per thread, so instances' worker threads may do this at once.
Staging memory comes from the pools (`configure` sets their sizes from --pinned-memory-pool-byte-size
and --cuda-memory-pool-byte-size before first use); an exhausted pool falls back to a one-off
allocation, as Triton does. Failures raise DeviceError; callers turn it into Triton's messages.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import cuda
from .pools import CUDA_DEFAULT, PINNED_DEFAULT, MemoryPool

log = logging.getLogger("triton_asyncio.memory.device")

_lock = threading.Lock()
_pinned_bytes = PINNED_DEFAULT
_cuda_bytes: dict[int, int] = {}
_contexts: dict[int, Any] = {}
_device_pools: dict[int, MemoryPool | None] = {}
_pinned_pool: list[MemoryPool | None] = []  # [] until first use; [None] when disabled or failed


class DeviceError(RuntimeError):
    """A CUDA call failed (bad handle, out of memory, no device)."""


def _driver() -> Any:
    import pycuda.driver as drv  # type: ignore[import-not-found]

    return drv


def available() -> bool:
    """True when a CUDA device is visible and pycuda can drive it."""
    if not cuda.is_available():
        return False
    try:
        _driver()
    except ImportError:
        log.warning("a CUDA device is visible but pycuda is not installed: GPU paths are off")
        return False
    return True


def configure(pinned_bytes: int = PINNED_DEFAULT, cuda_bytes: Mapping[int, int] | None = None) -> None:
    """Pool sizes; must run before the first GPU use (later calls do not resize live pools)."""
    global _pinned_bytes
    with _lock:
        _pinned_bytes = max(0, pinned_bytes)
        _cuda_bytes.clear()
        _cuda_bytes.update(cuda_bytes or {})


# -- contexts, streams, events ---------------------------------------------------------------------
def _context(device_id: int) -> Any:
    ctx = _contexts.get(device_id)
    if ctx is not None:
        return ctx
    drv = _driver()
    with _lock:
        ctx = _contexts.get(device_id)
        if ctx is None:
            drv.init()
            if not 0 <= device_id < drv.Device.count():
                raise DeviceError(f"no CUDA device {device_id}")
            # retain_primary_context leaves the context off the stack: activate() pushes it
            ctx = drv.Device(device_id).retain_primary_context()
            _contexts[device_id] = ctx
    return ctx


@contextlib.contextmanager
def activate(device_id: int) -> Iterator[Any]:
    """Make `device_id`'s primary context current on this thread for the block; yields the driver."""
    drv = _driver()
    try:
        ctx = _context(device_id)
        ctx.push()
    except drv.Error as exc:
        raise DeviceError(str(exc)) from None
    try:
        yield drv
    finally:
        drv.Context.pop()


def create_stream(device_id: int) -> Any:
    """A new non-default stream on the device (one per model instance)."""
    with activate(device_id) as drv:
        return drv.Stream()


def create_event(device_id: int) -> Any:
    with activate(device_id) as drv:
        return drv.Event()


def synchronize(device_id: int, stream: Any) -> None:
    with activate(device_id):
        stream.synchronize()


# -- copies -----------------------------------------------------------------------------------------
def copy_htod(device_id: int, dst_ptr: int, src: Any, stream: Any = None) -> None:
    """Host buffer -> device address. With a stream the copy is async (and only truly so when
    `src` is pinned): the caller keeps `src` alive until the stream is synchronized."""
    with activate(device_id) as drv:
        try:
            if stream is None:
                drv.memcpy_htod(dst_ptr, src)
            else:
                drv.memcpy_htod_async(dst_ptr, src, stream)
        except drv.Error as exc:
            raise DeviceError(str(exc)) from None


def copy_dtoh(device_id: int, dst: Any, src_ptr: int, stream: Any = None) -> None:
    """Device address -> writable host buffer (`len(dst)` bytes); async on a stream, as above."""
    with activate(device_id) as drv:
        try:
            if stream is None:
                drv.memcpy_dtoh(dst, src_ptr)
            else:
                drv.memcpy_dtoh_async(dst, src_ptr, stream)
        except drv.Error as exc:
            raise DeviceError(str(exc)) from None


def copy_dtod(device_id: int, dst_ptr: int, src_ptr: int, nbytes: int, stream: Any = None) -> None:
    with activate(device_id) as drv:
        try:
            if stream is None:
                drv.memcpy_dtod(dst_ptr, src_ptr, nbytes)
            else:
                drv.memcpy_dtod_async(dst_ptr, src_ptr, nbytes, stream)
        except drv.Error as exc:
            raise DeviceError(str(exc)) from None


def read_device(device_id: int, src_ptr: int, nbytes: int) -> memoryview:
    """A synchronous device -> host copy into pinned staging memory; the lease returns to the pool
    when the last view of the result is gone."""
    host = pinned_buffer(nbytes)
    if nbytes:
        copy_dtoh(device_id, host, src_ptr)
    return memoryview(host)


# -- pools ----------------------------------------------------------------------------------------------
def pinned_buffer(nbytes: int) -> np.ndarray:
    """A uint8 host array of `nbytes` from the pinned pool; when the pool is full or disabled,
    pageable memory (Triton's non-pinned fallback: slower copies, but the request still runs)."""
    pool = _pinned()
    if pool is not None:
        piece = pool.lease(nbytes)
        if piece is not None:
            return piece
    return np.empty(nbytes, np.uint8)


def _pinned() -> MemoryPool | None:
    if _pinned_pool:
        return _pinned_pool[0]
    with _lock:
        if not _pinned_pool:
            _pinned_pool.append(_make_pinned_pool(_pinned_bytes))
    return _pinned_pool[0]


def _make_pinned_pool(nbytes: int) -> MemoryPool | None:
    if nbytes <= 0:
        return None
    drv = _driver()
    try:
        drv.init()
        with activate(0):  # PORTABLE: pinned for every context, whichever device it was made on
            host = drv.pagelocked_empty(nbytes, np.uint8, mem_flags=drv.host_alloc_flags.PORTABLE)
    except (drv.Error, DeviceError) as exc:
        log.warning("failed to allocate pinned system memory pool of %d bytes: %s", nbytes, exc)
        return None
    return MemoryPool(host.ctypes.data, nbytes, allocation=host.base, host=host)


@dataclass(slots=True)
class DeviceBuffer:
    """Device memory from a pool (or a one-off allocation); `release()` gives it back, once."""

    device_id: int
    ptr: int
    size: int
    _owner: Any = None  # the MemoryPool the block came from, or the pycuda DeviceAllocation
    _block: Any = None

    def release(self) -> None:
        owner, self._owner = self._owner, None
        if isinstance(owner, MemoryPool):
            owner.release(self._block)
        elif owner is not None:
            with activate(self.device_id):
                owner.free()


def device_buffer(device_id: int, nbytes: int) -> DeviceBuffer:
    """`nbytes` (> 0) of device memory on `device_id`, from its pool when the pool has room."""
    pool = _device_pool(device_id)
    if pool is not None:
        block = pool.allocate(nbytes)
        if block is not None:
            return DeviceBuffer(device_id, block.ptr, block.size, pool, block)
    with activate(device_id) as drv:
        try:
            allocation = drv.mem_alloc(max(nbytes, 1))
        except drv.Error as exc:
            raise DeviceError(f"failed to allocate {nbytes} bytes on GPU {device_id}: {exc}") from None
    return DeviceBuffer(device_id, int(allocation), nbytes, allocation)


def _device_pool(device_id: int) -> MemoryPool | None:
    if device_id in _device_pools:
        return _device_pools[device_id]
    nbytes = _cuda_bytes.get(device_id, CUDA_DEFAULT)
    pool = None
    if nbytes > 0:
        try:
            with activate(device_id) as drv:
                allocation = drv.mem_alloc(nbytes)
            pool = MemoryPool(int(allocation), nbytes, allocation=allocation, device_id=device_id)
        except Exception as exc:  # pycuda's Error, or DeviceError for a missing device
            log.warning("failed to allocate CUDA memory pool of %d bytes on GPU %d: %s", nbytes, device_id, exc)
    with _lock:
        return _device_pools.setdefault(device_id, pool)


# -- IPC ---------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class IpcRegion:
    """A client's cudaMalloc allocation opened in this process: `size` bytes from `ptr` are usable."""

    device_id: int
    ptr: int
    size: int
    handle: Any = None

    def close(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            with activate(self.device_id):
                handle.close()


def open_ipc(device_id: int, raw_handle: bytes) -> IpcRegion:
    """cudaIpcOpenMemHandle on `device_id` (lazy peer access, as Triton opens it)."""
    with activate(device_id) as drv:
        try:
            handle = drv.IPCMemoryHandle(bytes(raw_handle), drv.ipc_mem_flags.LAZY_ENABLE_PEER_ACCESS)
        except (drv.Error, TypeError, ValueError) as exc:
            raise DeviceError(str(exc)) from None
        ptr = int(handle)
        try:
            # IPC handles name an allocation's base; what is usable is the rest of that allocation
            base, size = drv.mem_get_address_range(ptr)
        except drv.Error as exc:
            handle.close()
            raise DeviceError(str(exc)) from None
    return IpcRegion(device_id, ptr, int(size) - (ptr - int(base)), handle)


# -- shutdown -----------------------------------------------------------------------------------------------
@atexit.register
def shutdown() -> None:
    """Free the pools and let go of the primary contexts (pycuda complains about leaked ones)."""
    with _lock:
        pools = [p for p in (*_device_pools.values(), *_pinned_pool) if p is not None]
        _device_pools.clear()
        _pinned_pool.clear()
        contexts = list(_contexts.items())
        _contexts.clear()
    for pool in pools:
        try:
            # the pinned pool (device -1) was allocated in device 0's context
            with activate_ctx(contexts, max(pool.device_id, 0)):
                pool.close()
        except Exception as exc:  # best effort at exit
            log.debug("freeing a memory pool failed: %s", exc)
    for _, ctx in contexts:
        try:
            ctx.detach()
        except Exception as exc:
            log.debug("releasing a CUDA context failed: %s", exc)


@contextlib.contextmanager
def activate_ctx(contexts: list[tuple[int, Any]], device_id: int) -> Iterator[None]:
    """activate() for shutdown, when the table has already been emptied."""
    ctx = dict(contexts).get(device_id)
    if ctx is None:
        yield
        return
    ctx.push()
    try:
        yield
    finally:
        _driver().Context.pop()
