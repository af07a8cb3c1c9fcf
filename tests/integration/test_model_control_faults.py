"""Model control under faults, through a real server in explicit mode: memory across load/unload
cycles, metrics scraped during reloads, a model file corrupted on disk, an oversized override,
and an unload with requests in flight.

Every wait is a deadline loop on an observable state (a marker file, readiness, a thread's end),
never a sleep tuned to a fast machine.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from .conftest import _load_repo_builder, start_server, stop_server

DEADLINE_S = 60.0
CYCLES = 100  # load/unload cycles of `simple`; the first WARMUP ones fill caches and allocator arenas
WARMUP = 10
RSS_GROWTH_BOUND = 32 * 2**20
SLOW_S = 1.5
SLOW_PY = '''
import os
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        open({marker!r}, "a").close()  # tells the test a request is executing
        time.sleep({seconds})
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", r.inputs()[0].as_numpy() * 2)])
                for r in requests]
'''


def _wait_for(predicate, what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _write_slow_model(repo: str, marker: str) -> None:
    os.makedirs(os.path.join(repo, "slow", "1"), exist_ok=True)
    with open(os.path.join(repo, "slow", "config.pbtxt"), "w") as f:
        f.write('name: "slow"\nbackend: "python"\nmax_batch_size: 0\n'
                'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
                'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
                "instance_group [ { count: 1, kind: KIND_CPU } ]\n")
    with open(os.path.join(repo, "slow", "1", "model.py"), "w") as f:
        f.write(SLOW_PY.format(marker=marker, seconds=SLOW_S))


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    repo = str(root / "repo")
    _load_repo_builder().build_repository(repo, ["simple"])
    shutil.copytree(os.path.join(repo, "simple"), os.path.join(repo, "corruptible"))
    _rename(os.path.join(repo, "corruptible", "config.pbtxt"), "simple", "corruptible")
    marker = str(root / "slow.executing")
    _write_slow_model(repo, marker)
    srv = start_server(repo, str(root / "server.log"), "--model-control-mode=explicit")
    srv.marker = marker  # type: ignore[attr-defined]
    yield srv
    assert stop_server(srv) == 0, srv.log()


def _rename(path: str, old: str, new: str) -> None:
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace(f'name: "{old}"', f'name: "{new}"'))


@pytest.fixture(scope="module")
def http(faults):
    c = httpclient.InferenceServerClient(faults.http_url, network_timeout=120)
    yield c
    c.close()


def _infer(client, model: str = "simple") -> None:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = [httpclient.InferInput("INPUT0", [1, 16], "INT32"), httpclient.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(np.ones_like(a))
    np.testing.assert_array_equal(client.infer(model, inputs).as_numpy("OUTPUT0"), a + 1)


def _error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_unload_releases_memory(faults, http):
    rss = []
    for i in range(CYCLES):
        http.load_model("simple")
        _infer(http)
        http.unload_model("simple")
        assert not http.is_model_ready("simple")  # the cycle really unloaded (not a no-op)
        if i + 1 >= WARMUP:
            rss.append(_rss(faults.proc.pid))
    growth = rss[-1] - rss[0]
    print(f"RSS after warm-up {rss[0] / 2**20:.1f} MiB, growth {growth / 2**20:.2f} MiB")
    assert growth < RSS_GROWTH_BOUND, f"RSS grew {growth / 2**20:.1f} MiB over {CYCLES - WARMUP} cycles: {rss}"


def _scrape(faults) -> dict[str, set[str]]:
    """metric family -> the models it has samples for."""
    with urllib.request.urlopen(f"http://127.0.0.1:{faults.metrics_port}/metrics", timeout=30) as r:
        assert r.status == 200
        text = r.read().decode()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "model" in sample.labels:
                out.setdefault(family.name, set()).add(sample.labels["model"])
    return out


def test_metrics_scrape_during_reloads(faults, http):
    http.load_model("simple")
    _infer(http)
    full = {name for name, models in _scrape(faults).items() if "simple" in models}
    assert full, "simple has no per-model metrics"
    config = http.get_model_config("simple")
    stop, failures, seen = threading.Event(), [], []

    def scrape_loop() -> None:
        while not stop.is_set():
            try:
                families = {name for name, models in _scrape(faults).items() if "simple" in models}
            except Exception as e:  # any failed or unparsable scrape is the finding
                failures.append(repr(e))
                return
            seen.append(families)
            if families and families != full:
                failures.append(f"half-loaded model in metrics: {sorted(families)} != {sorted(full)}")

    thread = threading.Thread(target=scrape_loop)
    thread.start()
    reloads, deadline = 0, time.monotonic() + DEADLINE_S
    try:  # at least 20 reloads, and enough that the scraper overlapped them (however fast either is)
        while not failures and (reloads < 20 or len(seen) < 20) and time.monotonic() < deadline:
            http.load_model("simple", config=json.dumps(dict(config, max_batch_size=4 + reloads % 2 * 4)))
            assert http.get_model_config("simple")["max_batch_size"] == 4 + reloads % 2 * 4
            _infer(http)
            reloads += 1
    finally:
        stop.set()
        thread.join(DEADLINE_S)
    assert not failures, failures
    assert len(seen) >= 20, f"only {len(seen)} scrapes during {reloads} reloads"


def test_corrupted_model_file_reload_keeps_old_version(faults, http):
    http.load_model("corruptible")
    _infer(http, "corruptible")
    path = os.path.join(faults.repo, "corruptible", "1", "model.onnx")
    with open(path, "rb") as f:
        good = f.read()
    try:
        with open(path, "wb") as f:
            f.write(os.urandom(4096))
        e = _error(lambda: http.load_model("corruptible"))
        assert e.status() == "400", e
        assert e.message().startswith("load failed for model 'corruptible': version 1 is at UNAVAILABLE state:")
        assert http.is_model_ready("corruptible")
        _infer(http, "corruptible")
        # Triton's index shows the serving version (READY, no reason); the why is the load error above
        row = [r for r in http.get_model_repository_index() if r["name"] == "corruptible"]
        assert row == [{"name": "corruptible", "version": "1", "state": "READY"}]
        assert "Protobuf parsing failed" in e.message()
    finally:
        with open(path, "wb") as f:
            f.write(good)
    http.load_model("corruptible")  # repaired: the load succeeds
    _infer(http, "corruptible")


def test_huge_override_payload_is_refused(faults, http):
    http.load_model("simple")
    config = http.get_model_config("simple")
    body = json.dumps({"parameters": {"config": json.dumps(config),
                                      "file:1/model.onnx": "A" * (80 * 2**20)}}).encode()
    request = urllib.request.Request(f"http://{faults.http_url}/v2/repository/models/simple/load",
                                     data=body, method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=120)
    assert info.value.code in (400, 413)
    message = json.loads(info.value.read())["error"]
    assert "size" in message.lower(), message
    assert http.is_server_live() and http.is_model_ready("simple")
    _infer(http)


def _infer_slow(faults, value: float) -> object:
    """One JSON infer on `slow` over urllib (tritonclient's gevent client is not thread-safe)."""
    body = json.dumps({"inputs": [{"name": "INPUT0", "shape": [4], "datatype": "FP32",
                                   "data": [value + i for i in range(4)]}]}).encode()
    request = urllib.request.Request(f"http://{faults.http_url}/v2/models/slow/infer", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE_S) as r:
            return json.loads(r.read())["outputs"][0]["data"]
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())["error"]


def _pending(faults, model: str) -> int:
    """nv_inference_pending_request_count of `model` (requests waiting to execute)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{faults.metrics_port}/metrics", timeout=DEADLINE_S) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("nv_inference_pending_request_count{") and f'model="{model}"' in line:
                return int(float(line.rsplit(" ", 1)[1]))
    return 0


def test_unload_with_requests_in_flight(faults, http):
    http.load_model("slow")
    if os.path.exists(faults.marker):
        os.remove(faults.marker)
    results: list[object] = [None, None]

    def call(i: int) -> None:
        results[i] = _infer_slow(faults, float(i))

    callers = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for t in callers:
        t.start()
    _wait_for(lambda: os.path.exists(faults.marker), "a slow request to execute")
    # and the other one queued behind it: both must be in the server before the unload starts
    _wait_for(lambda: _pending(faults, "slow") == 1, "a second slow request to queue")
    unload_error: list[BaseException] = []

    def unload() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(
                f"http://{faults.http_url}/v2/repository/models/slow/unload", data=b"{}", method="POST"),
                timeout=DEADLINE_S).close()
        except Exception as e:
            unload_error.append(e)

    unloader = threading.Thread(target=unload)
    unloader.start()
    _wait_for(lambda: not http.is_model_ready("slow"), "slow to stop taking requests")
    code, message = _infer_slow(faults, 0.0)  # type: ignore[misc]
    assert (code, message) == (404, "Request for unknown model: 'slow' has no available versions")
    for t in (*callers, unloader):
        t.join(DEADLINE_S)
        assert not t.is_alive()
    assert not unload_error, unload_error
    for i, r in enumerate(results):
        assert r == [(i + k) * 2.0 for k in range(4)], r
    row = [r for r in http.get_model_repository_index() if r["name"] == "slow"]
    assert row == [{"name": "slow", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}]
