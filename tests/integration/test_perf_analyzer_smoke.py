"""A short perf_analyzer run (the real C++ client) against the real server: no errors."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.perf_analyzer


def _perf_analyzer() -> str | None:
    for candidate in (os.path.join(ROOT, ".venv", "bin", "perf_analyzer_cpp"), shutil.which("perf_analyzer_cpp")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _run(pa: str, url: str, *args: str) -> str:
    # -s 100 with a fixed window: this is a smoke test on a shared 2-core machine, not a measurement,
    # so it must not fail for want of a stable throughput
    cmd = [pa, "-m", "simple", "-u", url, "-p", "500", "--max-trials", "3", "-s", "100", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Throughput:" in proc.stdout
    assert "error" not in proc.stdout.lower().replace("errors: 0", "")
    return proc.stdout


@pytest.fixture(scope="module")
def pa() -> str:
    found = _perf_analyzer()
    if found is None:
        pytest.skip("perf_analyzer is not installed (scripts/install_perf_analyzer.sh)")
    return found


def test_perf_analyzer_http_simple(server, pa):
    _run(pa, server.http_url, "-i", "http", "--concurrency-range", "1:4:3")


@pytest.mark.parametrize("mode", [[], ["--async"], ["--streaming"]], ids=["sync", "async", "streaming"])
def test_perf_analyzer_grpc_simple(server, pa, mode):
    _run(pa, server.grpc_url, "-i", "grpc", "--concurrency-range", "1:4:3", *mode)
