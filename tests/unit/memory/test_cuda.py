"""memory.cuda probes lazily and never raises on a host without a driver or device."""
from __future__ import annotations

import subprocess
import sys

from triton_asyncio.memory import cuda


def test_device_count_is_non_negative_and_cached():
    cuda.device_count.cache_clear()
    count = cuda.device_count()
    assert count >= 0 and cuda.device_count() == count
    assert cuda.is_available() == (count > 0)


def test_every_probe_failing_means_zero(monkeypatch):
    def boom() -> int:
        raise OSError("no libcuda")

    monkeypatch.setattr(cuda, "_PROBES", (("a", boom), ("b", boom)))
    cuda.device_count.cache_clear()
    try:
        assert cuda.device_count() == 0
    finally:
        cuda.device_count.cache_clear()


def test_import_is_light():
    code = ("import sys, triton_asyncio.memory.cuda; "
            "print(any(m.split('.')[0] in ('pycuda', 'cuda', 'onnxruntime') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
