"""CUDA devices as the server sees them; with memory/device.py (contexts, copies, pools, IPC),
the only module that imports CUDA bindings.

Rules: nothing heavy is imported at module import time. Every probe is lazy, tried in order
(pycuda, cuda-python, the driver library through ctypes), cached, and any failure means "no
GPU": a CPU-only host must never see an exception from here.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable

log = logging.getLogger("triton_asyncio.memory.cuda")


def _count_pycuda() -> int:
    import pycuda.driver as drv  # type: ignore[import-not-found]

    drv.init()
    return int(drv.Device.count())


def _count_cuda_python() -> int:
    from cuda.bindings import driver  # type: ignore[import-not-found]

    (err,) = driver.cuInit(0)
    if int(err) != 0:
        raise RuntimeError(f"cuInit failed: {err}")
    err, count = driver.cuDeviceGetCount()
    if int(err) != 0:
        raise RuntimeError(f"cuDeviceGetCount failed: {err}")
    return int(count)


def _count_ctypes() -> int:
    name = ctypes.util.find_library("cuda") or "libcuda.so.1"
    lib = ctypes.CDLL(name)
    if lib.cuInit(0) != 0:
        raise RuntimeError("cuInit failed")
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        raise RuntimeError("cuDeviceGetCount failed")
    return count.value


_PROBES: tuple[tuple[str, Callable[[], int]], ...] = (
    ("pycuda", _count_pycuda),
    ("cuda-python", _count_cuda_python),
    ("libcuda", _count_ctypes),
)


@functools.lru_cache(maxsize=1)
def device_count() -> int:
    """Number of visible CUDA devices; 0 when there is no driver, no device, or no binding."""
    for name, probe in _PROBES:
        try:
            count = probe()
        except ImportError:
            continue
        except Exception as exc:  # a binding exists but the driver or device does not
            log.debug("CUDA probe %s failed: %s", name, exc)
            continue
        log.debug("CUDA probe %s: %d device(s)", name, count)
        return max(count, 0)
    return 0


def is_available() -> bool:
    """True when at least one CUDA device can be used."""
    return device_count() > 0
