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


@pytest.mark.parametrize("concurrency", ["1:4:3"])
def test_perf_analyzer_http_simple(server, concurrency):
    pa = _perf_analyzer()
    if pa is None:
        pytest.skip("perf_analyzer is not installed (scripts/install_perf_analyzer.sh)")
    cmd = [pa, "-m", "simple", "-i", "http", "-u", server.http_url, "--concurrency-range", concurrency,
           "-p", "500", "--max-trials", "3", "-s", "50"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Throughput:" in proc.stdout
    assert "error" not in proc.stdout.lower().replace("errors: 0", "")
