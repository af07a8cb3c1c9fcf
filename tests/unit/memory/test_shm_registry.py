"""The region table: Triton's checks and messages, bounds, and mappings that outlive unregister."""
from __future__ import annotations

import numpy as np
import pytest

from triton_asyncio.errors import ErrorCode, TritonError
from triton_asyncio.memory.shm_registry import ShmRegistry


@pytest.fixture()
def registry(tmp_path):
    (tmp_path / "seg").write_bytes(bytes(range(256)))
    return ShmRegistry(enabled=True, shm_dir=str(tmp_path))


def test_disabled_registry_refuses_register_and_unregister(tmp_path):
    reg = ShmRegistry(enabled=False, shm_dir=str(tmp_path))
    for call in (lambda: reg.register_system("r", "/seg", 0, 8), lambda: reg.unregister("system")):
        with pytest.raises(TritonError) as info:
            call()
        assert info.value.code is ErrorCode.UNSUPPORTED and "--allow-client-shm=true" in info.value.message
    assert reg.status("system") == []


def test_views_are_bounded_by_the_registered_bytes(registry):
    registry.register_system("r", "/seg", 16, 32)  # bytes 16..47 of the segment
    assert bytes(registry.view("r", 0, 4)) == bytes([16, 17, 18, 19])
    assert bytes(registry.view("r", 28, 4)) == bytes([44, 45, 46, 47])
    with pytest.raises(TritonError, match="Invalid offset for shared memory region: 'r'"):
        registry.view("r", 32, 1)
    with pytest.raises(TritonError, match="Invalid offset \\+ byte size"):
        registry.view("r", 30, 4)
    with pytest.raises(TritonError, match="Unable to find shared memory region: 'x'") as info:
        registry.view("x", 0, 1)
    assert info.value.code is ErrorCode.NOT_FOUND
    registry.view("r", 0, 4)[:] = b"abcd"  # writable, and shared with the file
    assert registry.view("r", 0, 4).tobytes() == b"abcd"


def test_register_checks_in_triton_order(registry):
    with pytest.raises(TritonError, match="invalid shm key '/'"):
        registry.register_system("r", "/", 0, 8)
    with pytest.raises(TritonError, match="reserved prefix"):
        registry.register_system("r", "/triton_python_backend_shm_region_1", 0, 8)
    with pytest.raises(TritonError) as info:
        registry.register_system("r", "/missing", 0, 8)
    assert info.value.code is ErrorCode.INTERNAL and "Unable to open shared memory region: '/missing'" in info.value.message
    with pytest.raises(TritonError, match="failed to register shared memory region 'r': invalid args"):
        registry.register_system("r", "seg", 200, 100)
    registry.register_system("r", "seg", 0, 8)  # a key without the slash names the same object
    with pytest.raises(TritonError) as info:
        registry.register_system("r", "/seg", 0, 8)
    assert info.value.code is ErrorCode.ALREADY_EXISTS


def test_status_and_unregister(registry):
    registry.register_system("a", "/seg", 0, 8)
    registry.register_system("b", "/seg", 8, 8)
    assert [r.name for r in registry.status("system")] == ["a", "b"]
    assert registry.status("cuda") == []
    with pytest.raises(TritonError, match="Unable to find cuda shared memory region: 'c'"):
        registry.status("cuda", "c")
    assert registry.unregister("system", "nope") == []
    assert [r.name for r in registry.unregister("system", "a")] == ["a"]
    assert [r.name for r in registry.unregister("system")] == ["b"]
    assert registry.status("system") == []


def test_a_view_in_use_outlives_unregister(registry):
    registry.register_system("r", "/seg", 0, 64)
    array = np.frombuffer(registry.view("r", 0, 16), dtype=np.uint8)  # as a request's input holds it
    registry.unregister("system", "r")
    assert array.tolist() == list(range(16))  # still mapped, still readable
    registry.register_system("r", "/seg", 0, 64)  # and the name is free again


def test_cuda_register_without_a_gpu(registry, monkeypatch):
    from triton_asyncio.memory import cuda
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(TritonError, match="must be a valid base64 encoded cudaIpcMemHandle_t"):
        registry.register_cuda("c", b"x" * 10, 0, 8)
    with pytest.raises(TritonError, match="failed to register CUDA shared memory region: 'c', GPUs not supported"):
        registry.register_cuda("c", b"x" * 64, 0, 8)


def test_a_region_its_owner_truncated_is_refused_not_touched(registry, tmp_path):
    registry.register_system("r", "/seg", 16, 64)
    assert bytes(registry.view("r", 0, 4)) == bytes([16, 17, 18, 19])
    with open(tmp_path / "seg", "r+b") as f:
        f.truncate(40)  # touching bytes past 40 through the mapping would be SIGBUS
    assert bytes(registry.view("r", 0, 24)) == bytes(range(16, 40))  # what is left is still served
    with pytest.raises(TritonError, match="smaller than when it was registered"):
        registry.view("r", 0, 32)
    registry.unregister("system", "r")


@pytest.mark.parametrize("key", ["/../../tmp/x", "/a/b", "..", "/.", "//seg/x"])
def test_keys_cannot_name_files_outside_the_shm_directory(registry, tmp_path, key):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").write_bytes(bytes(64))
    with pytest.raises(TritonError) as info:
        registry.register_system("r", key, 0, 8)
    assert info.value.code is ErrorCode.INTERNAL and f"Unable to open shared memory region: '{key}'" in info.value.message


def test_a_symlink_in_the_shm_directory_is_not_followed(registry, tmp_path):
    (tmp_path / "outside").write_bytes(bytes(64))
    (tmp_path / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(TritonError, match="Unable to open shared memory region: '/link'"):
        registry.register_system("r", "/link", 0, 8)
