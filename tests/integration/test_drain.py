"""Graceful drain under load: SIGTERM while HTTP and gRPC clients send requests in a loop.

Every answer received must be the right one; every failure must be a connection error or Triton's
UNAVAILABLE, never a wrong answer; the server must exit 0 within --exit-timeout-secs.
"""
from __future__ import annotations

import collections
import signal
import subprocess
import threading
import time

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from .conftest import _load_repo_builder, start_server
from .test_perf_analyzer_smoke import _perf_analyzer

EXIT_TIMEOUT = 5
THREADS_PER_PROTOCOL = 2
LOAD_BEFORE_SIGTERM = 1.0  # seconds of load before the signal
# what a client may see while the server drains and goes away
_CONNECTION_WORDS = ("connection", "unavailable", "socket closed", "broken pipe", "reset", "refused",
                     "eof", "closed", "failed to connect", "shutting down", "server is not ready", "goaway")


def _inputs(module, rng: np.random.Generator):
    a = rng.integers(-1000, 1000, size=(1, 16), dtype=np.int32)
    b = rng.integers(-1000, 1000, size=(1, 16), dtype=np.int32)
    inputs = [module.InferInput("INPUT0", [1, 16], "INT32"), module.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs, a, b


def _failure_kind(exc: BaseException) -> str:
    """'connection' or 'unavailable' for the failures a drain may cause; 'other: ...' for the rest."""
    if isinstance(exc, InferenceServerException):
        status = str(exc.status() or "")
        text = f"{status} {exc.message()}".lower()
        if "unavailable" in text:
            return "unavailable"
        if any(word in text for word in _CONNECTION_WORDS):
            return "connection"
        return f"other: {status} {exc.message()}"
    # geventhttpclient's HTTPConnectionClosed is neither an OSError nor an InferenceServerException
    text = f"{type(exc).__name__} {exc}".lower()
    if isinstance(exc, (ConnectionError, OSError, EOFError)) or any(w in text for w in _CONNECTION_WORDS):
        return "connection"
    return f"other: {type(exc).__name__}: {exc}"


class Worker(threading.Thread):
    """One client in a loop until the server is gone; records 'ok', 'wrong' or a failure kind."""

    def __init__(self, kind: str, url: str, seed: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.kind, self.url, self.stop = kind, url, stop
        self.rng = np.random.default_rng(seed)
        self.results: collections.Counter[str] = collections.Counter()

    def run(self) -> None:
        module = httpclient if self.kind == "http" else grpcclient
        client = None
        while not self.stop.is_set():
            try:
                if client is None:
                    client = module.InferenceServerClient(self.url)
                inputs, a, b = _inputs(module, self.rng)
                result = client.infer("simple", inputs)
                right = (np.array_equal(result.as_numpy("OUTPUT0"), a + b)
                         and np.array_equal(result.as_numpy("OUTPUT1"), a - b))
                self.results["ok" if right else "wrong"] += 1
            except Exception as exc:  # every failure is recorded and judged by the test
                self.results[_failure_kind(exc)] += 1
                client = None  # a fresh connection next time, as a real client would retry
                time.sleep(0.02)


def test_sigterm_under_load_drains_cleanly(tmp_path):
    repo = _load_repo_builder().build_repository(str(tmp_path / "repo"), ["simple"])
    server = start_server(repo, str(tmp_path / "server.log"), "--exit-timeout-secs", str(EXIT_TIMEOUT))
    stop = threading.Event()
    workers = [Worker(kind, url, i * 2 + j, stop)
               for i, (kind, url) in enumerate((("http", server.http_url), ("grpc", server.grpc_url)))
               for j in range(THREADS_PER_PROTOCOL)]
    pa = _perf_analyzer()
    load = None
    try:
        if pa is not None:  # perf_analyzer's load as well: the drain must hold under it too
            load = subprocess.Popen([pa, "-m", "simple", "-u", server.grpc_url, "-i", "grpc", "--async",
                                     "--concurrency-range", "4", "-p", "60000", "--max-trials", "1"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for worker in workers:
            worker.start()
        time.sleep(LOAD_BEFORE_SIGTERM)
        before = sum(w.results["ok"] for w in workers)
        server.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = server.proc.wait(EXIT_TIMEOUT + 5)
        exited_after = time.monotonic() - sent
        time.sleep(0.3)  # let the clients see the server gone
    finally:
        stop.set()
        for worker in workers:
            worker.join(10)
        if load is not None:  # it retries a gone server until its window ends: stop it
            load.kill()
            load.wait()
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
    totals: collections.Counter[str] = collections.Counter()
    for worker in workers:
        totals.update(worker.results)
    print(f"drain: {dict(totals)}; {before} ok before SIGTERM; exit {code} after {exited_after:.2f} s")
    assert before > 0, server.log()
    assert totals["wrong"] == 0
    others = {k: n for k, n in totals.items() if k.startswith("other")}
    assert not others, others
    assert code == 0, server.log()
    assert exited_after <= EXIT_TIMEOUT + 1
