"""Every test here needs a CUDA GPU: skipped cleanly (and marked `gpu`) on a host without one."""
from __future__ import annotations

import pytest

from triton_asyncio.memory import cuda


def pytest_collection_modifyitems(config, items):
    """Mark this directory's tests `gpu`, so `-m "not gpu"` deselects them anywhere."""
    for item in items:
        if "tests/gpu/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)


@pytest.fixture(scope="session", autouse=True)
def _needs_a_gpu():
    # session scope: the skip comes before any module fixture (a server) is started
    if not cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("pycuda.driver")
