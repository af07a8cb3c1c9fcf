"""CUDA shared-memory registration, Triton's checks in order, with the CUDA IPC calls replaced by a
test double: 'device memory' is a bytearray and an opened handle is an offset into it."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from triton_asyncio.errors import ErrorCode, TritonError
from triton_asyncio.memory import device
from triton_asyncio.memory.shm_registry import ShmRegistry

BASE = 0x7F0000000000
HANDLE = b"h" * 64


@dataclass
class FakeOpened:
    """What device.open_ipc returns: the opened pointer and the usable size of the allocation."""

    device_id: int
    ptr: int
    size: int
    closed: int = 0

    def close(self) -> None:
        self.closed += 1


class FakeCuda:
    """cudaIpcOpenMemHandle / cudaMemcpy over one client allocation of `size` bytes on GPU 0."""

    def __init__(self, size: int = 128) -> None:
        self.memory = bytearray(size)
        self.opened: list[FakeOpened] = []

    def open_ipc(self, device_id: int, raw_handle: bytes) -> FakeOpened:
        if device_id != 0 or raw_handle != HANDLE:
            raise device.DeviceError("cudaErrorInvalidValue")
        opened = FakeOpened(device_id, BASE, len(self.memory))
        self.opened.append(opened)
        return opened

    def read_device(self, device_id: int, ptr: int, nbytes: int) -> memoryview:
        return memoryview(bytes(self.memory[ptr - BASE:ptr - BASE + nbytes]))

    def copy_htod(self, device_id: int, ptr: int, src, stream=None) -> None:
        data = bytes(src)
        self.memory[ptr - BASE:ptr - BASE + len(data)] = data


@pytest.fixture()
def fake(monkeypatch):
    cuda = FakeCuda()
    monkeypatch.setattr(device, "available", lambda: True)
    for name in ("open_ipc", "read_device", "copy_htod"):
        monkeypatch.setattr(device, name, getattr(cuda, name))
    return cuda


@pytest.fixture()
def registry(tmp_path):
    (tmp_path / "seg").write_bytes(bytes(64))
    return ShmRegistry(enabled=True, shm_dir=str(tmp_path))


def _error(call) -> TritonError:
    with pytest.raises(TritonError) as info:
        call()
    return info.value


def test_checks_in_triton_order(registry, fake, monkeypatch):
    disabled = ShmRegistry(enabled=False)
    assert _error(lambda: disabled.register_cuda("c", b"x", 0, 8)).code is ErrorCode.UNSUPPORTED  # gate first
    err = _error(lambda: registry.register_cuda("c", b"x" * 63, 0, 8))  # then the handle's length
    assert (err.code, err.message) == (ErrorCode.INVALID_ARG,
                                       "'raw_handle' must be a valid base64 encoded cudaIpcMemHandle_t")
    registry.register_system("c", "/seg", 0, 8)
    err = _error(lambda: registry.register_cuda("c", HANDLE, 0, 8))  # then the name, whatever its kind
    assert (err.code, err.message) == (ErrorCode.ALREADY_EXISTS, "shared memory region 'c' already in manager")
    monkeypatch.setattr(device, "available", lambda: False)
    err = _error(lambda: registry.register_cuda("g", HANDLE, 0, 8))  # then the build/host has no GPU
    assert err.message == "failed to register CUDA shared memory region: 'g', GPUs not supported"
    assert err.code is ErrorCode.INVALID_ARG
    assert fake.opened == []  # nothing was opened on the way


def test_open_failure_and_oversize_are_invalid_args(registry, fake):
    for bad in (lambda: registry.register_cuda("c", b"z" * 64, 0, 8),  # not a live handle
                lambda: registry.register_cuda("c", HANDLE, 1, 8),  # another GPU
                lambda: registry.register_cuda("c", HANDLE, -1, 8)):
        err = _error(bad)
        assert (err.code, err.message) == (ErrorCode.INVALID_ARG, "failed to register shared memory region: invalid args")
    err = _error(lambda: registry.register_cuda("c", HANDLE, 0, 129))  # bigger than the allocation
    assert (err.code, err.message) == (ErrorCode.INVALID_ARG,
                                       "failed to register shared memory region 'c': invalid args")
    assert [o.closed for o in fake.opened] == [1]  # the handle it did open was closed again
    assert registry.status("cuda") == [] and registry.cuda_regions == 0


def test_register_status_read_write_unregister(registry, fake):
    registry.register_cuda("c", HANDLE, 0, 64)
    [region] = registry.status("cuda")
    assert (region.name, region.device_id, region.byte_size, region.kind) == ("c", 0, 64, "cuda")
    assert registry.cuda_regions == 1 and registry.status("cuda", "c") == [region]
    err = _error(lambda: registry.status("system", "c"))
    assert err.message == "The region named 'c' is registered as CUDA shared memory, not system shared memory"
    fake.memory[8:12] = b"abcd"
    assert bytes(registry.read("c", 8, 4)) == b"abcd"  # device -> host
    registry.write("c", 16, 8, b"wxyz")  # host -> device
    assert bytes(fake.memory[16:20]) == b"wxyz"
    assert _error(lambda: registry.read("c", 64, 1)).message == "Invalid offset for shared memory region: 'c'"
    assert _error(lambda: registry.write("c", 60, 8, b"x")).message == \
        "Invalid offset + byte size for shared memory region: 'c'"
    assert _error(lambda: registry.view("c", 0, 4)).code is ErrorCode.UNSUPPORTED  # no host view of the GPU
    assert registry.unregister("system", "c") == [] and registry.cuda_regions == 1  # wrong kind: nothing
    registry.unregister("cuda", "c")
    assert fake.opened[0].closed == 1 and registry.cuda_regions == 0 and registry.status("cuda") == []
    assert _error(lambda: registry.read("c", 0, 1)).code is ErrorCode.NOT_FOUND


def test_read_and_write_still_serve_system_regions(registry, fake):
    registry.register_system("s", "/seg", 0, 64)
    registry.register_cuda("c", HANDLE, 0, 64)
    registry.write("s", 0, 8, b"12345678")
    assert bytes(registry.read("s", 0, 8)) == b"12345678"


def test_close_closes_every_handle(registry, fake):
    registry.register_cuda("a", HANDLE, 0, 8)
    registry.register_cuda("b", HANDLE, 0, 8)
    registry.close()
    assert [o.closed for o in fake.opened] == [1, 1] and registry.cuda_regions == 0


def test_server_routes_cuda_regions_through_read_and_write(registry, fake):
    """The server's shm steps (called unbound: only its `shm` attribute is used) copy inputs out of
    and outputs into a CUDA region."""
    from types import SimpleNamespace

    import numpy as np

    from triton_asyncio.core.request import InferenceRequest, RequestedOutput, ShmRef
    from triton_asyncio.core.response import InferenceResponse
    from triton_asyncio.core.tensor import Tensor
    from triton_asyncio.server.inference_server import InferenceServer

    registry.register_cuda("c", HANDLE, 0, 128)
    fake.memory[0:16] = np.arange(4, dtype=np.int32).tobytes()
    server = SimpleNamespace(shm=registry)
    req = InferenceRequest("m", shm_inputs={"IN": ShmRef("c", 16, 0, "INT32", [1, 4])},
                           outputs={"OUT": RequestedOutput("OUT", shm=ShmRef("c", 16, 64))})
    InferenceServer._resolve_shm_inputs(server, req)
    assert req.inputs["IN"].as_numpy().tolist() == [[0, 1, 2, 3]]
    out = Tensor("OUT", "INT32", [1, 4], array=np.array([[9, 8, 7, 6]], dtype=np.int32))
    InferenceServer._write_shm_outputs(server, req, InferenceResponse("m", "1", outputs=[out]))
    assert np.frombuffer(bytes(fake.memory[64:80]), dtype=np.int32).tolist() == [9, 8, 7, 6]
