"""A real server on 127.0.0.1 with free ports, started once per session, over the example repo."""
from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load_repo_builder():
    spec = importlib.util.spec_from_file_location("make_example_repo", os.path.join(ROOT, "scripts", "make_example_repo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class RunningServer:
    proc: subprocess.Popen
    http_port: int
    grpc_port: int
    metrics_port: int
    repo: str
    log_path: str

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


def start_server(repo: str, log_path: str, *extra: str, wait_ready: bool = True) -> RunningServer:
    http, grpc, metrics = free_port(), free_port(), free_port()
    cmd = [sys.executable, "-m", "triton_asyncio", "--model-repository", repo,
           "--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1", "--metrics-address", "127.0.0.1",
           "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics), *extra]
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    server = RunningServer(proc, http, grpc, metrics, repo, log_path)
    if wait_ready:
        _wait_live(server)
    return server


def _wait_live(server: RunningServer, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"http://{server.http_url}/v2/health/live", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not start:\n{server.log()}")


def stop_server(server: RunningServer, timeout: float = 30.0) -> int:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    return server.proc.returncode


@pytest.fixture(scope="session")
def example_repo(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("repo") / "model_repository")
    _load_repo_builder().build_repository(out)
    return out


@pytest.fixture(scope="session")
def server(example_repo, tmp_path_factory):
    srv = start_server(example_repo, str(tmp_path_factory.mktemp("log") / "server.log"))
    yield srv
    code = stop_server(srv)
    assert code == 0, srv.log()
