"""One real server for the adversity tests, started through serve_debug (task-count probe, short
read deadlines), over a repository holding `simple` and `big`; plus the checks every scenario ends
with: the server still answers correctly, and its task count and RSS come back to the baseline."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from ..integration.conftest import ROOT, RunningServer, _load_repo_builder, _wait_live, free_port, stop_server
from .serve_debug import PROBE

REQUEST_TIMEOUT = 1.0  # the server's HTTP read deadline in these tests (30 s by default)
HANDSHAKE_TIMEOUT = 1.0  # the server's gRPC handshake timeout in these tests (120 s by default)
SETTLE = 20.0  # seconds a scenario's aftermath may take to clear
# RSS the server may keep after a scenario: CPython and glibc keep freed arenas, so RSS is a
# coarse check; the task count is the exact one
RSS_SLACK = 24 * 2**20


def start_debug_server(repo: str, log_path: str, *extra: str) -> RunningServer:
    http, grpc, metrics = free_port(), free_port(), free_port()
    cmd = [sys.executable, "-m", "tests.adversity.serve_debug", "--model-repository", repo,
           "--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1", "--metrics-address", "127.0.0.1",
           "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics), *extra]
    env = dict(os.environ, ADVERSITY_REQUEST_TIMEOUT=str(REQUEST_TIMEOUT),
               ADVERSITY_HANDSHAKE_TIMEOUT=str(HANDSHAKE_TIMEOUT))
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    server = RunningServer(proc, http, grpc, metrics, repo, log_path)
    _wait_live(server)
    return server


def task_count(server: RunningServer, timeout: float = 10.0) -> int:
    """SIGUSR1, then the count from the probe line it prints to the log."""
    seen = len(re.findall(PROBE, server.log()))
    server.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = re.findall(rf"{PROBE} \d+ tasks=(\d+)", server.log())
        if len(lines) > seen:
            return int(lines[-1])
        time.sleep(0.05)
    raise AssertionError(f"no probe answer:\n{server.log()[-2000:]}")


def rss(pid: int) -> int:
    """Resident set size in bytes, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def check_serves(server: RunningServer) -> None:
    """One correct HTTP and one correct gRPC answer from `simple`."""
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 7, dtype=np.int32)
    for module, url in ((httpclient, server.http_url), (grpcclient, server.grpc_url)):
        client = module.InferenceServerClient(url)
        try:
            inputs = [module.InferInput("INPUT0", [1, 16], "INT32"), module.InferInput("INPUT1", [1, 16], "INT32")]
            inputs[0].set_data_from_numpy(a)
            inputs[1].set_data_from_numpy(b)
            result = client.infer("simple", inputs)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
        finally:
            client.close()


@dataclass
class Baseline:
    tasks: int
    rss: int


def baseline(server: RunningServer) -> Baseline:
    check_serves(server)
    return Baseline(task_count(server), rss(server.proc.pid))


def check_recovered(server: RunningServer, base: Baseline, label: str) -> None:
    """Poll until the server holds no more tasks than before and its RSS is back near it."""
    assert server.proc.poll() is None, server.log()[-3000:]
    check_serves(server)
    deadline = time.monotonic() + SETTLE
    tasks, resident = task_count(server), rss(server.proc.pid)
    while (tasks > base.tasks or resident > base.rss + RSS_SLACK) and time.monotonic() < deadline:
        time.sleep(0.2)
        tasks, resident = task_count(server), rss(server.proc.pid)
    print(f"{label}: tasks {base.tasks} -> {tasks}, RSS {base.rss / 2**20:.1f} -> {resident / 2**20:.1f} MiB")
    assert tasks <= base.tasks, f"{label}: {tasks} tasks left, {base.tasks} before"
    assert resident <= base.rss + RSS_SLACK, f"{label}: RSS {resident} vs {base.rss} before"


@pytest.fixture(scope="package")
def debug_server(tmp_path_factory):
    repo = _load_repo_builder().build_repository(str(tmp_path_factory.mktemp("adv") / "repo"), ["simple", "big"])
    srv = start_debug_server(repo, str(tmp_path_factory.mktemp("advlog") / "server.log"))
    try:
        yield srv
    finally:
        code = stop_server(srv)
    assert code == 0, srv.log()[-3000:]
