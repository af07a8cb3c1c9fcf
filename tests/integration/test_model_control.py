"""Model control through the real server and tritonclient: explicit load/unload, overrides, reload
while serving, unload_dependents, poll mode, and the errors Triton gives.

Every wait is a deadline loop on an observable state, never a sleep tuned to a fast machine.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from .conftest import _load_repo_builder, start_server, stop_server

NOT_EXPLICIT = "explicit model load / unload is not allowed if polling is enabled"
DEADLINE_S = 60.0


def _wait_for(predicate, what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def explicit(tmp_path_factory):
    repo = str(tmp_path_factory.mktemp("control") / "repo")
    _load_repo_builder().build_repository(repo, ["simple", "simple_int8", "simple_ensemble"])
    srv = start_server(repo, str(tmp_path_factory.mktemp("log") / "explicit.log"),
                       "--model-control-mode=explicit", "--load-model=simple_int8")
    yield srv
    assert stop_server(srv) == 0, srv.log()


@pytest.fixture(scope="module")
def http(explicit):
    c = httpclient.InferenceServerClient(explicit.http_url, network_timeout=120)
    yield c
    c.close()


@pytest.fixture(scope="module")
def grpc(explicit):
    c = grpcclient.InferenceServerClient(explicit.grpc_url)
    yield c
    c.close()


def _infer(client, module, model: str = "simple", dtype=np.int32) -> np.ndarray:
    a = np.arange(16, dtype=dtype).reshape(1, 16)
    inputs = [module.InferInput("INPUT0", [1, 16], "INT32" if dtype == np.int32 else "INT8"),
              module.InferInput("INPUT1", [1, 16], "INT32" if dtype == np.int32 else "INT8")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(np.ones_like(a))
    result = client.infer(model, inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + 1)
    return result.as_numpy("OUTPUT0")


def _index(http) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in http.get_model_repository_index():
        rows.setdefault(row["name"], []).append(row)
    return rows


def _error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


def _simple_config(http) -> dict:
    """simple's config as the server renders it (loads simple if needed)."""
    http.load_model("simple")
    return http.get_model_config("simple")


# -- explicit mode -----------------------------------------------------------------------------
def test_startup_loads_only_named_models(http):
    rows = _index(http)
    assert rows["simple_int8"][0]["state"] == "READY"
    assert "state" not in rows["simple_ensemble"][0]  # never loaded: the name only
    _infer(http, httpclient, "simple_int8", np.int8)


def test_http_load_infer_unload(http):
    http.load_model("simple")
    assert http.is_model_ready("simple")
    assert _index(http)["simple"] == [{"name": "simple", "version": "1", "state": "READY"}]
    _infer(http, httpclient)
    http.load_model("simple")  # unchanged: a no-op that succeeds
    http.unload_model("simple")
    assert not http.is_model_ready("simple")
    assert _index(http)["simple"] == [{"name": "simple", "version": "1", "state": "UNAVAILABLE",
                                       "reason": "unloaded"}]
    e = _error(lambda: _infer(http, httpclient))
    assert "Request for unknown model: 'simple' has no available versions" in e.message()
    http.unload_model("simple")  # already unloaded: succeeds
    http.unload_model("no_such_model")  # unknown: succeeds


def test_grpc_load_infer_unload(grpc):
    grpc.load_model("simple")
    assert grpc.is_model_ready("simple")
    _infer(grpc, grpcclient)
    index = {m.name: m for m in grpc.get_model_repository_index().models}
    assert (index["simple"].version, index["simple"].state) == ("1", "READY")
    grpc.unload_model("simple")
    e = _error(lambda: grpc.is_model_ready("simple"))  # gRPC ModelReady: NOT_FOUND, not False
    assert e.status() == "StatusCode.NOT_FOUND" and "has no available versions" in e.message()
    index = {m.name: m for m in grpc.get_model_repository_index().models}
    assert (index["simple"].state, index["simple"].reason) == ("UNAVAILABLE", "unloaded")


def test_load_unknown_model(http, grpc):
    e = _error(lambda: http.load_model("no_such_model"))
    assert e.status() == "500"
    assert "failed to load 'no_such_model', failed to poll from model repository" in e.message()
    e = _error(lambda: grpc.load_model("no_such_model"))
    assert e.status() == "StatusCode.INTERNAL"


def test_config_override(http, grpc):
    config = _simple_config(http)
    config["max_batch_size"] = 4
    http.load_model("simple", config=json.dumps(config))
    assert http.get_model_config("simple")["max_batch_size"] == 4
    _infer(http, httpclient)
    config["max_batch_size"] = 2
    grpc.load_model("simple", config=json.dumps(config))
    assert http.get_model_config("simple")["max_batch_size"] == 2
    http.load_model("simple")  # back to config.pbtxt: the last load was overridden, so this reloads
    assert http.get_model_config("simple")["max_batch_size"] != 2


def test_bad_config_override(http, grpc):
    http.load_model("simple")
    e = _error(lambda: http.load_model("simple", config='{"max_batch_size": "lots"}'))
    assert e.status() == "400" and e.message().startswith("Invalid config override:")
    e = _error(lambda: grpc.load_model("simple", config='{"no_such_field": 1}'))
    assert e.status() == "StatusCode.INVALID_ARGUMENT" and "Invalid config override:" in e.message()
    _infer(http, httpclient)  # the loaded model is untouched


def test_failed_reload_keeps_old_version_serving(http):
    config = _simple_config(http)
    broken = dict(config, input=[dict(config["input"][0], name="WRONG"), config["input"][1]])
    e = _error(lambda: http.load_model("simple", config=json.dumps(broken)))
    assert e.status() == "400"
    assert e.message().startswith("load failed for model 'simple': version 1 is at UNAVAILABLE state:")
    assert http.is_model_ready("simple")
    _infer(http, httpclient)
    assert _index(http)["simple"][0]["state"] == "READY"


def test_file_override_makes_a_new_model(http, explicit):
    config = _simple_config(http)
    config["name"] = "from_files"
    with open(os.path.join(explicit.repo, "simple", "1", "model.onnx"), "rb") as f:
        onnx = f.read()
    http.load_model("from_files", config=json.dumps(config), files={"file:1/model.onnx": onnx})
    assert http.is_model_ready("from_files")
    _infer(http, httpclient, "from_files")
    http.unload_model("from_files")
    assert not http.is_model_ready("from_files")


@pytest.mark.parametrize("path", ["../escape.onnx", "1/../../escape.onnx", "/tmp/abs.onnx"])
def test_file_override_path_must_stay_inside(http, grpc, path):
    config = json.dumps(_simple_config(http))
    e = _error(lambda: http.load_model("simple", config=config, files={f"file:{path}": b"x"}))
    assert e.status() == "400" and "the file path must be relative" in e.message()
    e = _error(lambda: grpc.load_model("simple", config=config, files={f"file:{path}": b"x"}))
    assert e.status() == "StatusCode.INVALID_ARGUMENT"


def test_files_need_a_config(http):
    e = _error(lambda: http.load_model("simple", files={"file:1/model.onnx": b"x"}))
    assert e.status() == "400" and "'config' parameter is required" in e.message()


def test_unload_parameter_must_be_bool(explicit):
    import urllib.error
    import urllib.request
    req = urllib.request.Request(f"http://{explicit.http_url}/v2/repository/models/simple/unload",
                                 data=b'{"parameters":{"unload_dependents":"yes"}}', method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=30)
    assert info.value.code == 400
    assert b"Unable to parse 'unload_dependents'" in info.value.read()


def test_ensemble_loads_composing_and_unload_dependents(http):
    http.unload_model("simple")
    http.load_model("simple_ensemble")
    assert http.is_model_ready("simple_ensemble") and http.is_model_ready("simple")
    http.unload_model("simple_ensemble", unload_dependents=True)
    assert not http.is_model_ready("simple_ensemble") and not http.is_model_ready("simple")
    # the other way: unloading a composing model with its dependents takes the ensemble down
    http.load_model("simple_ensemble")
    http.unload_model("simple", unload_dependents=True)
    assert not http.is_model_ready("simple_ensemble") and not http.is_model_ready("simple")
    # without unload_dependents only the named model goes
    http.load_model("simple_ensemble")
    http.unload_model("simple_ensemble")
    assert not http.is_model_ready("simple_ensemble") and http.is_model_ready("simple")


def test_reload_while_serving_loses_no_request(http, explicit):
    config = _simple_config(http)
    stop = threading.Event()
    failures: list[str] = []
    done = [0]

    def send() -> None:
        client = httpclient.InferenceServerClient(explicit.http_url, network_timeout=120)
        try:
            while not stop.is_set():
                try:
                    _infer(client, httpclient)
                    done[0] += 1
                except Exception as e:  # noqa: BLE001 - every failure is the test's finding
                    failures.append(repr(e))
        finally:
            client.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        _wait_for(lambda: done[0] > 0, "the first request")
        for size in (4, 8, 4):  # each config override forces a full reload
            http.load_model("simple", config=json.dumps(dict(config, max_batch_size=size)))
            before = done[0]
            _wait_for(lambda b=before: done[0] > b, "a request on the reloaded model")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert "successfully unloaded 'simple' version 1" in explicit.log()


def test_concurrent_control_calls_are_serialized(http, explicit):
    config = _simple_config(http)
    errors: list[str] = []

    def worker(i: int) -> None:
        client = httpclient.InferenceServerClient(explicit.http_url, network_timeout=120)
        try:
            if i % 2:
                client.unload_model("simple")
            else:
                client.load_model("simple", config=json.dumps(dict(config, max_batch_size=4 + i)))
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    http.load_model("simple")
    assert http.is_model_ready("simple")
    rows = _index(http)["simple"]
    assert [r["state"] for r in rows] == ["READY"]


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_load_unload_cycles_do_not_grow_memory(http, explicit):
    for _ in range(5):  # warm up allocator pools and caches
        http.load_model("simple_int8")
        http.unload_model("simple_int8")
    before = _rss_kb(explicit.proc.pid)
    for _ in range(30):
        http.load_model("simple_int8")
        _infer(http, httpclient, "simple_int8", np.int8)
        http.unload_model("simple_int8")
    grown_mb = (_rss_kb(explicit.proc.pid) - before) / 1024
    assert grown_mb < 64, f"RSS grew by {grown_mb:.1f} MiB over 30 load/unload cycles"


# -- poll and none modes -----------------------------------------------------------------------
def test_poll_mode_follows_the_repository(tmp_path):
    repo = str(tmp_path / "repo")
    staging = str(tmp_path / "staging")
    builder = _load_repo_builder()
    builder.build_repository(repo, ["simple"])
    builder.build_repository(staging, ["simple_int8"])
    srv = start_server(repo, str(tmp_path / "poll.log"), "--model-control-mode=poll",
                       "--repository-poll-secs=1")
    http = httpclient.InferenceServerClient(srv.http_url)
    try:
        _wait_for(lambda: http.is_server_ready(), "server ready")
        assert http.is_model_ready("simple")
        e = _error(lambda: http.load_model("simple"))
        assert e.status() == "503" and NOT_EXPLICIT in e.message()
        e = _error(lambda: http.unload_model("simple"))
        assert e.status() == "503" and NOT_EXPLICIT in e.message()

        os.rename(os.path.join(staging, "simple_int8"), os.path.join(repo, "simple_int8"))  # atomic
        _wait_for(lambda: http.is_model_ready("simple_int8"), "the added model to load")
        _infer(http, httpclient, "simple_int8", np.int8)

        shutil.rmtree(os.path.join(repo, "simple"))
        _wait_for(lambda: "simple" not in _index(http), "the removed model to unload")
        assert not http.is_model_ready("simple")
        assert "successfully unloaded 'simple' version 1" in srv.log()
    finally:
        http.close()
        assert stop_server(srv) == 0, srv.log()


def test_none_mode_refuses_control(tmp_path):
    repo = _load_repo_builder().build_repository(str(tmp_path / "repo"), ["simple"])
    srv = start_server(repo, str(tmp_path / "none.log"))
    grpc = grpcclient.InferenceServerClient(srv.grpc_url)
    try:
        e = _error(lambda: grpc.load_model("simple"))
        assert e.status() == "StatusCode.UNAVAILABLE" and NOT_EXPLICIT in e.message()
        e = _error(lambda: grpc.unload_model("simple"))
        assert e.status() == "StatusCode.UNAVAILABLE" and NOT_EXPLICIT in e.message()
        assert grpc.is_model_ready("simple")
    finally:
        grpc.close()
        assert stop_server(srv) == 0, srv.log()
