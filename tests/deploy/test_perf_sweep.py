"""scripts/perf_sweep.py end to end: a tiny concurrency sweep of the real perf_analyzer against a real
server, then the CSV rows and the PNG it writes."""
from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.perf_analyzer
SCRIPT = os.path.join(ROOT, "scripts", "perf_sweep.py")


def _perf_sweep_module():
    spec = importlib.util.spec_from_file_location("perf_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_writes_csv_and_png(simple_server, tmp_path):
    pytest.importorskip("matplotlib")
    pa = _perf_sweep_module().find_perf_analyzer()
    if pa is None:
        pytest.skip("perf_analyzer is not installed (scripts/install_perf_analyzer.sh)")
    out = str(tmp_path / "sweep")
    # -s 100 and short windows: a smoke run on a shared machine, not a measurement
    cmd = [sys.executable, SCRIPT, "--model", "simple", "--url", simple_server.http_url, "--protocol", "http",
           "--concurrency-range", "1:2:1", "-p", "300", "-s", "100", "--max-trials", "3", "--out", out,
           "--perf-analyzer", pa]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out + ".csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # perf_analyzer orders its CSV rows by throughput, not by concurrency
    assert sorted(int(r["Concurrency"]) for r in rows) == [1, 2]
    for r in rows:
        assert float(r["Inferences/Second"]) > 0
        p50, p90, p99 = (float(r[f"{p} latency"]) for p in ("p50", "p90", "p99"))
        assert 0 < p50 <= p90 <= p99
    with open(out + ".png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_missing_perf_analyzer_is_reported(tmp_path):
    proc = subprocess.run([sys.executable, SCRIPT, "--model", "simple", "--out", str(tmp_path / "x"),
                           "--perf-analyzer", str(tmp_path / "nope")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no runnable perf_analyzer" in proc.stderr, proc.stderr
    assert not os.path.exists(tmp_path / "x.png")
