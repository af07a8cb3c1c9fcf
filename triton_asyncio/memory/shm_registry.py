"""The shared-memory region table (system regions; CUDA regions through the device layer).

Rules: one table for both kinds, keyed by the client's region name; Triton's messages and its
order of checks (spec 10.2-10.5). A system region maps `/dev/shm/<key>` whole and keeps a
memoryview of [offset, offset + byte_size): every access is a bounds-checked slice of that view,
so nothing outside the registered bytes is ever read or written. Unregistering drops the table
entry at once; the mapping itself lives until the last view a request still holds is gone
(Python's reference counting keeps in-flight requests safe). A CUDA region is the client's
cudaMalloc allocation opened through the device layer (memory/device.py, imported only when a
client registers one); requests reach it with `read` (a device -> pinned host copy) and `write`
(host -> device), both synchronous, so closing the handle at unregister never races a copy.
`cuda_regions` counts them so that the server keeps the system-only path free of any CUDA check.
No asyncio here.
"""
from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import Any

from ..errors import ErrorCode, TritonError, internal, invalid_arg, not_found, unsupported

DISABLED = "Client shared memory is disabled. Start the server with '--allow-client-shm=true' to enable."
RESERVED_PREFIX = "triton_python_backend_shm_region_"
SHM_DIR = "/dev/shm"


@dataclass(slots=True)
class Region:
    name: str
    kind: str  # "system" | "cuda"
    byte_size: int
    key: str = ""
    offset: int = 0
    device_id: int = 0
    view: memoryview | None = None  # system: the registered bytes, writable
    fd: int = -1  # system: the object, kept open to check its size before each access
    handle: object = None  # cuda: the device layer's IpcRegion (opened pointer, usable size)


class ShmRegistry:
    def __init__(self, enabled: bool = False, shm_dir: str = SHM_DIR) -> None:
        self.enabled = enabled
        self.shm_dir = shm_dir
        self._regions: dict[str, Region] = {}
        self.cuda_regions = 0  # how many CUDA regions are registered

    def _gate(self) -> None:
        if not self.enabled:
            raise unsupported(DISABLED)

    # -- system regions ---------------------------------------------------------------------------
    def register_system(self, name: str, key: str, offset: int, byte_size: int) -> None:
        self._gate()
        stripped = key.lstrip("/")
        if not stripped:
            raise invalid_arg(f"cannot register shared memory region '{name}' - invalid shm key '{key}'")
        if stripped.split("/", 1)[0].startswith(RESERVED_PREFIX):
            raise invalid_arg(f"cannot register shared memory region '{name}' with key '{key}' as the key "
                              f"contains the reserved prefix '{RESERVED_PREFIX}'")
        if name in self._regions:
            raise TritonError(ErrorCode.ALREADY_EXISTS, f"shared memory region '{name}' already in manager")
        path = os.path.join(self.shm_dir, stripped)
        try:
            # shm_open's rule: one name under /dev/shm, no further '/' (so no '..' walk to any file
            # the server's user can open); O_NOFOLLOW keeps a planted symlink from doing the same
            if "/" in stripped or stripped in (".", ".."):
                raise OSError("not a shared-memory object name")
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            # Triton's message says only the key; the usual cause is worth saying (its issue #7887)
            raise internal(f"Unable to open shared memory region: '{key}' (no such shared-memory object "
                           f"in {self.shm_dir}: the client and the server must share the IPC namespace; "
                           f"in containers, run with --ipc=host)") from None
        try:
            try:
                size = os.fstat(fd).st_size
            except OSError:
                raise internal(f"Invalid shared memory region: '{key}'") from None
            # the codecs pass only uint64s, but a negative here would slice from the end of the map
            if offset < 0 or byte_size < 0 or offset + byte_size > size:
                raise invalid_arg(f"failed to register shared memory region '{name}': invalid args")
            if byte_size == 0:
                view = memoryview(bytearray(0))
            else:
                try:
                    mapped = mmap.mmap(fd, offset + byte_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
                except (OSError, ValueError) as e:
                    raise invalid_arg(f"failed to register shared memory region '{name}': unable to process "
                                      f"address space{e.strerror if isinstance(e, OSError) else e}") from None
                view = memoryview(mapped)[offset:offset + byte_size]
        except BaseException:
            os.close(fd)
            raise
        # The fd stays open: each access checks the object's size, because touching a mapped page
        # that its owner truncated away kills the process with SIGBUS instead of raising.
        self._regions[name] = Region(name, "system", byte_size, key=key, offset=offset, view=view, fd=fd)

    # -- cuda regions --------------------------------------------------------------------------------
    def register_cuda(self, name: str, raw_handle: bytes, device_id: int, byte_size: int) -> None:
        """Triton's checks in its order (spec 10.3); the handle is opened on `device_id`."""
        self._gate()
        if len(raw_handle) != 64:
            raise invalid_arg("'raw_handle' must be a valid base64 encoded cudaIpcMemHandle_t")
        if name in self._regions:
            raise TritonError(ErrorCode.ALREADY_EXISTS, f"shared memory region '{name}' already in manager")
        from . import device  # the device layer, imported only when a client asks for the GPU

        if not device.available():
            raise invalid_arg(f"failed to register CUDA shared memory region: '{name}', GPUs not supported")
        if device_id < 0 or byte_size < 0:
            raise invalid_arg("failed to register shared memory region: invalid args")
        try:
            opened = device.open_ipc(device_id, raw_handle)
        except device.DeviceError:  # bad handle, wrong device, or a handle from this very process
            raise invalid_arg("failed to register shared memory region: invalid args") from None
        if opened.size < byte_size:  # Triton's cuMemGetAddressRange check (24.06)
            _close_ipc(opened)
            raise invalid_arg(f"failed to register shared memory region '{name}': invalid args")
        self._regions[name] = Region(name, "cuda", byte_size, device_id=device_id, handle=opened)
        self.cuda_regions += 1

    # -- status and unregister ----------------------------------------------------------------------
    def status(self, kind: str, name: str = "") -> list[Region]:
        if not name:
            return [r for r in self._regions.values() if r.kind == kind]
        region = self._regions.get(name)
        label = "system" if kind == "system" else "cuda"
        if region is None:
            raise not_found(f"Unable to find {label} shared memory region: '{name}'")
        if region.kind != kind:
            other = "CUDA" if region.kind == "cuda" else "system"
            mine = "system" if kind == "system" else "CUDA"
            raise not_found(f"The region named '{name}' is registered as {other} shared memory, "
                            f"not {mine} shared memory")
        return [region]

    def unregister(self, kind: str, name: str = "") -> list[Region]:
        """Drop one region of `kind` (unknown names: nothing) or all of them; returns those dropped."""
        self._gate()
        names = [name] if name else list(self._regions)
        dropped = []
        for n in names:
            region = self._regions.get(n)
            if region is not None and region.kind == kind:
                del self._regions[n]
                if region.kind == "cuda":
                    self.cuda_regions -= 1
                _release(region)
                dropped.append(region)
        return dropped

    def close(self) -> None:
        for region in self._regions.values():
            _release(region)
        self._regions.clear()
        self.cuda_regions = 0

    # -- access from requests -------------------------------------------------------------------------
    def view(self, name: str, offset: int, byte_size: int) -> memoryview:
        """The bytes [offset, offset + byte_size) of a system region, as a writable view."""
        region = self._regions.get(name)
        if region is None:
            raise not_found(f"Unable to find shared memory region: '{name}'")
        if region.kind != "system":
            raise unsupported(f"shared memory region '{name}' is CUDA shared memory: use read() or write()")
        _check_bounds(region, offset, byte_size)
        assert region.view is not None
        if byte_size and os.fstat(region.fd).st_size < region.offset + offset + byte_size:
            raise invalid_arg(f"shared memory region '{name}' is smaller than when it was registered: its "
                              f"owner truncated '{region.key}'")
        return region.view[offset:offset + byte_size]


    def read(self, name: str, offset: int, byte_size: int) -> memoryview:
        """The bytes [offset, offset + byte_size) of any region, for an input: a view of a system
        region, a pinned host copy of a CUDA one."""
        region = self._regions.get(name)
        if region is None or region.kind == "system":
            return self.view(name, offset, byte_size)
        _check_bounds(region, offset, byte_size)
        from . import device

        opened: device.IpcRegion = region.handle  # type: ignore[assignment]
        try:
            return device.read_device(region.device_id, opened.ptr + offset, byte_size)
        except device.DeviceError as exc:
            raise internal(f"failed to copy from CUDA shared memory region '{name}': {exc}") from None

    def write(self, name: str, offset: int, byte_size: int, raw: Any) -> None:
        """Copy `raw` (at most `byte_size` bytes) to [offset, ...) of any region, for an output."""
        region = self._regions.get(name)
        if region is None or region.kind == "system":
            size = raw.nbytes if isinstance(raw, memoryview) else len(raw)
            self.view(name, offset, byte_size)[:size] = raw
            return
        _check_bounds(region, offset, byte_size)
        from . import device

        opened: device.IpcRegion = region.handle  # type: ignore[assignment]
        try:
            device.copy_htod(region.device_id, opened.ptr + offset, raw)
        except device.DeviceError as exc:
            raise internal(f"failed to copy to CUDA shared memory region '{name}': {exc}") from None


def _check_bounds(region: Region, offset: int, byte_size: int) -> None:
    # gRPC carries offset and size as int64: a negative one is Triton's size_t wrapped around,
    # i.e. past the end, and must never become a Python slice counted from the end of the view
    if offset < 0 or (offset >= region.byte_size and region.byte_size):
        raise invalid_arg(f"Invalid offset for shared memory region: '{region.name}'")
    if byte_size < 0 or offset + byte_size > region.byte_size:
        raise invalid_arg(f"Invalid offset + byte size for shared memory region: '{region.name}'")


def _close_ipc(opened: Any) -> None:
    try:
        opened.close()
    except Exception:  # noqa: BLE001 - the client may have freed it already; nothing to give back
        pass


def _release(region: Region) -> None:
    if region.kind == "cuda":
        _close_ipc(region.handle)
        region.handle = None
        return
    if region.fd >= 0:
        os.close(region.fd)
        region.fd = -1
    view = region.view
    region.view = None
    if view is not None:
        obj = view.obj
        view.release()
        if isinstance(obj, mmap.mmap):
            try:
                obj.close()
            except BufferError:
                pass  # a request still reads or writes it: unmapped when its last view goes
