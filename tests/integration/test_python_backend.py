"""The Python backend through a real server: example models over HTTP, gRPC and gRPC streaming,
then fault models (each group in its own repository and server, built here in tmp dirs)."""
from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import socket
import struct
import textwrap
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from .conftest import start_server, stop_server

DEADLINE_S = 60.0


def _wait(predicate, what: str, timeout: float = DEADLINE_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _http(server) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.http_url)


def _grpc(server) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(server.grpc_url)


def _input(module, name, array, datatype):
    tensor = module.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


# -- example models (the shared session server) ----------------------------------------------------
@pytest.mark.parametrize("client", [httpclient, grpcclient])
def test_string_model(server, client):
    conn = client.InferenceServerClient(server.http_url if client is httpclient else server.grpc_url)
    text = np.array([[b"hello", b"wOrld"]], dtype=np.object_)
    result = conn.infer("python_string", [_input(client, "INPUT0", text, "BYTES")])
    assert result.as_numpy("OUTPUT0").tolist() == [[b"HELLO", b"WORLD"]]


@pytest.mark.parametrize("client", [httpclient, grpcclient])
def test_identity_4mib_tensor(server, client):
    conn = client.InferenceServerClient(server.http_url if client is httpclient else server.grpc_url)
    data = np.random.default_rng(0).random((1, 1 << 20), dtype=np.float32)
    result = conn.infer("python_identity", [_input(client, "INPUT0", data, "FP32")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_identity_concurrent_requests_are_batched_back_correctly(server):
    conn = httpclient.InferenceServerClient(server.http_url, concurrency=8)
    arrays = [np.full((1, 5), i, np.float32) for i in range(16)]
    pending = [conn.async_infer("python_identity", [_input(httpclient, "INPUT0", a, "FP32")]) for a in arrays]
    for array, request in zip(arrays, pending, strict=True):
        np.testing.assert_array_equal(request.get_result().as_numpy("OUTPUT0"), array)


def test_bls_calls_the_onnx_model(server):
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.ones((1, 16), dtype=np.int32)
    result = _grpc(server).infer("python_bls", [_input(grpcclient, "INPUT0", a, "INT32"),
                                                _input(grpcclient, "INPUT1", b, "INT32")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_text_pipeline(server):
    text = np.array([[b"What a wonderful day"], [b"this is not good, just awful"]], dtype=np.object_)
    result = _http(server).infer("python_text", [_input(httpclient, "TEXT", text, "BYTES")])
    assert result.as_numpy("LABEL").tolist() == [[b"positive"], [b"negative"]]
    scores = result.as_numpy("SCORE")
    assert scores.dtype == np.float32 and scores[0, 0] > 0.5 > scores[1, 0]


def test_sequence_with_string_correlation_ids(server):
    conn = _grpc(server)

    def step(seq, value, start=False, end=False):
        result = conn.infer("python_sequence", [_input(grpcclient, "INPUT", np.array([[value]], np.int32), "INT32")],
                            sequence_id=seq, sequence_start=start, sequence_end=end)
        return int(result.as_numpy("OUTPUT")[0, 0])

    assert step("alpha", 1, start=True) == 1
    assert step("beta", 10, start=True) == 10
    assert step("alpha", 2) == 3
    assert step("beta", 5, end=True) == 15
    assert step("alpha", 3, end=True) == 6


def test_decoupled_repeat_over_grpc_stream(server):
    conn = _grpc(server)
    results: queue.SimpleQueue = queue.SimpleQueue()
    conn.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        values = np.array([4, 5, 6], np.int32)
        conn.async_stream_infer("python_repeat", [_input(grpcclient, "IN", values, "INT32"),
                                                  _input(grpcclient, "REPEAT", np.array([3], np.int32), "INT32")],
                                request_id="r1", enable_empty_final_response=True)
        seen = []
        while True:
            result, error = results.get(timeout=DEADLINE_S)
            assert error is None, error
            response = result.get_response()
            if response.parameters["triton_final_response"].bool_param:
                break
            np.testing.assert_array_equal(result.as_numpy("OUT"), values)
            seen.append(int(result.as_numpy("IDX")[0]))
        assert seen == [0, 1, 2]
    finally:
        conn.stop_stream()


def test_model_config_endpoint_shows_python_backend(server):
    config = _http(server).get_model_config("python_identity")
    assert config["backend"] == "python" and config["max_batch_size"] == 8


# -- fault models -------------------------------------------------------------------------------------
_CONFIG = """name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ -1 ] }} ]
output [ {{ name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
{extra}"""

_HEADER = """
import os
import sys
import time

import numpy as np
import triton_python_backend_utils as pb_utils
"""

_IDENTITY = """
class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", r.inputs()[0].as_numpy())]) for r in requests]
"""

# IN[0] selects the behaviour: 0 -> echo IN; 1 -> the fault; -1 -> reply with the stub's pid.
_MODELS = {
    "f_import": ("", "raise ImportError('no module named fancy_dependency')\n" + _IDENTITY),
    "f_init": ("", """
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("initialize failed on purpose")

    def execute(self, requests):
        return []
"""),
    "f_args": ("", """
class TritonPythonModel:
    def initialize(self, args):
        self.args = args
        pb_utils.Logger.log_info("f_args says hello from initialize")

    def execute(self, requests):
        doc = np.array([json.dumps(self.args).encode()], dtype=np.object_)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", doc)]) for r in requests]
""".replace("class", "import json\n\nclass", 1)),
    "f_execute": ("", """
class TritonPythonModel:
    def execute(self, requests):
        raise ValueError("execute failed on purpose")
"""),
    "f_count": ("", """
class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([]) for _ in range(len(requests) + 4)]
"""),
    "f_dtype": ("", """
class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", r.inputs()[0].as_numpy().astype(np.float64))])
                for r in requests]
"""),
    "f_shape": ("", """
class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.zeros((2, 2), np.float32))])
                for r in requests]
"""),
    "f_error": ("", """
class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError("not here", pb_utils.TritonError.NOT_FOUND))
                for r in requests]
"""),
    "f_hang": ('parameters { key: "execute_timeout_seconds" value { string_value: "1" } }\n', """
class TritonPythonModel:
    def execute(self, requests):
        x = requests[0].inputs()[0].as_numpy()
        if x[0] == 1:
            time.sleep(3600)
        if x[0] == -1:
            x = np.array([os.getpid()], np.float32)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x)])]
"""),
    "f_exit": ("", """
class TritonPythonModel:
    def execute(self, requests):
        x = requests[0].inputs()[0].as_numpy()
        if x[0] == 1:
            sys.exit(3)
        if x[0] == -1:
            x = np.array([os.getpid()], np.float32)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x)])]
"""),
    "f_kill": ("", """
class TritonPythonModel:
    def execute(self, requests):
        x = requests[0].inputs()[0].as_numpy()
        if x[0] == 1:
            time.sleep(3600)
        if x[0] == -1:
            x = np.array([os.getpid()], np.float32)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", x)])]
"""),
    "f_auto": ("", """
class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        auto_complete_model_config.add_input({"name": "IN", "data_type": "TYPE_FP32", "dims": [-1]})
        auto_complete_model_config.add_output({"name": "OUT", "data_type": "TYPE_FP32", "dims": [-1]})
        auto_complete_model_config.set_max_batch_size(4)
        auto_complete_model_config.set_dynamic_batching()
        return auto_complete_model_config

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", r.inputs()[0].as_numpy() + 1)]) for r in requests]
"""),
    "f_repeat": ("model_transaction_policy { decoupled: true }\n", """
class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            for i in range(int(request.inputs()[0].as_numpy()[0])):
                sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([i], np.float32))]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None
"""),
    "f_stream_exit": ("model_transaction_policy { decoupled: true }\n", """
class TritonPythonModel:
    def execute(self, requests):
        sender = requests[0].get_response_sender()
        sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([7], np.float32))]))
        os._exit(5)
"""),
    "f_slow_restart": ("", """
class TritonPythonModel:
    def initialize(self, args):
        marker = os.path.join(args["model_repository"], "started_once")
        if os.path.exists(marker):
            time.sleep(2)  # a restart: long enough for the test to see the model not ready
        open(marker, "w").close()

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([os.getpid()], np.float32))])
                for r in requests]
"""),
    "f_bls": ("", """
class TritonPythonModel:
    async def execute(self, requests):
        x = requests[0].inputs()[0].as_numpy()
        if x[0] == -2:
            missing = pb_utils.InferenceRequest(model_name="no_such_model", inputs=requests[0].inputs(),
                                                requested_output_names=["OUT"])
            return [pb_utils.InferenceResponse(error=missing.exec().error())]
        call = pb_utils.InferenceRequest(model_name="f_repeat", inputs=requests[0].inputs(),
                                         requested_output_names=["OUT"])
        seen = [float(r.output_tensors()[0].as_numpy()[0]) for r in call.exec(decoupled=True)]
        again = [float(r.output_tensors()[0].as_numpy()[0]) async for r in await call.async_exec(decoupled=True)]
        assert seen == again, (seen, again)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array(seen, np.float32))])]
"""),
    "f_leak": ('parameters { key: "stub_memory_limit_bytes" value { string_value: "209715200" } }\n', """
_LEAKED = []


class TritonPythonModel:
    def execute(self, requests):
        _LEAKED.append(np.ones(8 << 20))  # 64 MiB, touched, never freed
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([os.getpid()], np.float32))])
                for r in requests]
"""),
    "f_shadow": ("", """
import arena  # the model's own modules, named like the stub's helpers
import ipc


class TritonPythonModel:
    def execute(self, requests):
        value = np.array([arena.VALUE + ipc.VALUE], np.float32)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", value)]) for r in requests]
"""),
    "f_cancel": ("", """
_SEEN = []


class TritonPythonModel:
    def initialize(self, args):
        self.marker = os.path.join(args["model_repository"], "executing")

    def execute(self, requests):
        x = requests[0].inputs()[0].as_numpy()
        if x[0] == 1:  # runs until its client goes away (at most a minute)
            open(self.marker, "w").close()
            deadline = time.monotonic() + 60
            while not requests[0].is_cancelled() and time.monotonic() < deadline:
                time.sleep(0.01)
            _SEEN.append(requests[0].is_cancelled())
        out = np.array([1.0 if any(_SEEN) else 0.0], np.float32)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)]) for r in requests]
"""),
}
_LOAD_FAULTS = ("f_import", "f_init", "f_auto")


def _write_models(repo: str, names) -> None:
    for name in names:
        extra, body = _MODELS[name]
        os.makedirs(os.path.join(repo, name, "1"))
        with open(os.path.join(repo, name, "config.pbtxt"), "w") as f:
            f.write(_CONFIG.format(name=name, extra=extra))
        with open(os.path.join(repo, name, "1", "model.py"), "w") as f:
            f.write(textwrap.dedent(_HEADER) + body)
    if "f_shadow" in names:
        for module, value in (("arena", 40), ("ipc", 2)):
            with open(os.path.join(repo, "f_shadow", "1", f"{module}.py"), "w") as f:
                f.write(f"VALUE = {value}\n")
    if "f_auto" in names:  # everything but the backend comes from auto_complete_config
        with open(os.path.join(repo, "f_auto", "config.pbtxt"), "w") as f:
            f.write('backend: "python"\n')
    if "f_args" in names:  # its OUT is a JSON string
        path = os.path.join(repo, "f_args", "config.pbtxt")
        with open(path, "w") as f:
            f.write(_CONFIG.format(name="f_args", extra="").replace('"OUT" data_type: TYPE_FP32',
                                                                    '"OUT" data_type: TYPE_STRING'))


def _children(pid: int) -> set[int]:
    """Processes whose parent is pid (from /proc)."""
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def fault_server(tmp_path_factory):
    repo = str(tmp_path_factory.mktemp("pyfaults") / "repo")
    _write_models(repo, [n for n in _MODELS if n not in _LOAD_FAULTS])
    srv = start_server(repo, str(tmp_path_factory.mktemp("pyfaults_log") / "server.log"))
    client = _http(srv)
    _wait(lambda: client.is_server_ready(), "the fault server to be ready")
    yield srv
    stubs = _children(srv.proc.pid)
    assert stubs, "the server has no stub processes"
    assert stop_server(srv) == 0, srv.log()
    _wait(lambda: not any(_alive(p) for p in stubs), "every stub process to exit")


def _infer(server, model, value):
    x = np.array([value], np.float32)
    return _http(server).infer(model, [_input(httpclient, "IN", x, "FP32")]).as_numpy("OUT")


def _infer_error(server, model, value) -> str:
    with pytest.raises(InferenceServerException) as info:
        _infer(server, model, value)
    return str(info.value)


def test_load_failures_leave_the_model_unavailable_with_the_reason(tmp_path):
    repo = str(tmp_path / "repo")
    _write_models(repo, ["f_import", "f_init", "f_args", "f_auto"])
    srv = start_server(repo, str(tmp_path / "server.log"), "--exit-on-error=false")
    try:
        client = _http(srv)
        index = _wait(lambda: (lambda i: i if len(i) == 4 else None)(
            {m["name"]: m for m in client.get_model_repository_index() if m.get("state")}), "all four models")
        assert index["f_args"]["state"] == "READY"
        assert index["f_import"]["state"] == "UNAVAILABLE"
        assert "no module named fancy_dependency" in index["f_import"]["reason"]
        assert index["f_init"]["state"] == "UNAVAILABLE"
        assert "initialize failed on purpose" in index["f_init"]["reason"]
        assert "initialize failed on purpose" in srv.log()
        assert "f_args says hello from initialize" in srv.log()  # pb_utils.Logger reaches the server log
        assert not client.is_model_ready("f_init")
        # the good model is served, and gets Triton's initialize args
        result = client.infer("f_args", [_input(httpclient, "IN", np.zeros(1, np.float32), "FP32")])
        args = json.loads(result.as_numpy("OUT")[0])
        assert args["model_name"] == "f_args" and args["model_version"] == "1"
        assert args["model_instance_name"] == "f_args_0_0" and args["model_instance_kind"] == "CPU"
        assert args["model_instance_device_id"] == "0" and args["model_repository"].endswith("f_args")
        config = json.loads(args["model_config"])
        assert config["name"] == "f_args" and config["input"][0]["dims"] == [-1]
        # auto-complete ran in a short-lived stub and its config is served
        auto = client.get_model_config("f_auto")
        assert auto["max_batch_size"] == 4 and "dynamic_batching" in auto
        assert [i["name"] for i in auto["input"]] == ["IN"] and auto["output"][0]["data_type"] == "TYPE_FP32"
        x = np.array([[1, 2]], np.float32)
        assert client.infer("f_auto", [_input(httpclient, "IN", x, "FP32")]).as_numpy("OUT").tolist() == [[2, 3]]
    finally:
        stop_server(srv)


def test_execute_exception(fault_server):
    message = _infer_error(fault_server, "f_execute", 0)
    assert ("Failed to process the request(s) for model instance 'f_execute_0_0', message: "
            "ValueError: execute failed on purpose") in message
    assert "execute failed on purpose" in _infer_error(fault_server, "f_execute", 0)  # still serving


def test_wrong_number_of_responses(fault_server):
    message = _infer_error(fault_server, "f_count", 0)
    assert ("Number of InferenceResponse objects do not match the number of InferenceRequest objects. "
            "InferenceRequest(s) size is:1, and InferenceResponse(s) size is:5") in message


def test_wrong_output_dtype_and_shape(fault_server):
    assert "unexpected datatype TYPE_FP64 for inference output 'OUT', expecting TYPE_FP32" in \
        _infer_error(fault_server, "f_dtype", 0)
    assert "unexpected shape for output 'OUT'" in _infer_error(fault_server, "f_shape", 0)


def test_error_response_keeps_its_code(fault_server):
    with pytest.raises(InferenceServerException) as info:
        _grpc(fault_server).infer("f_error", [_input(grpcclient, "IN", np.zeros(1, np.float32), "FP32")])
    assert "not here" in str(info.value) and "NOT_FOUND" in str(info.value.status())


def _recovers(server, model, old_pid: int) -> None:
    client = _http(server)
    _wait(lambda: client.is_model_ready(model), f"{model} to be ready again")
    new_pid = int(_infer(server, model, -1)[0])
    assert new_pid != old_pid
    assert _infer(server, model, 0).tolist() == [0.0]


def test_execute_timeout_kills_and_restarts_the_stub(fault_server):
    pid = int(_infer(fault_server, "f_hang", -1)[0])
    t0 = time.monotonic()
    message = _infer_error(fault_server, "f_hang", 1)
    assert time.monotonic() - t0 < 30
    assert "execute_timeout_seconds" in message and "'f_hang'" in message
    _recovers(fault_server, "f_hang", pid)
    assert not _alive(pid)


def test_exit_in_execute(fault_server):
    pid = int(_infer(fault_server, "f_exit", -1)[0])
    message = _infer_error(fault_server, "f_exit", 1)
    assert "stub process died (exit code 3)" in message and "'f_exit'" in message
    _recovers(fault_server, "f_exit", pid)


def test_sigkill_mid_batch(fault_server):
    pid = int(_infer(fault_server, "f_kill", -1)[0])
    errors: queue.SimpleQueue = queue.SimpleQueue()
    worker = threading.Thread(target=lambda: errors.put(_infer_error(fault_server, "f_kill", 1)))
    worker.start()
    time.sleep(0.2)  # not a correctness wait: the kill may land before or during the execute
    os.kill(pid, signal.SIGKILL)
    message = errors.get(timeout=DEADLINE_S)
    worker.join()
    assert "killed by signal SIGKILL" in message and "'f_kill'" in message
    _recovers(fault_server, "f_kill", pid)


def test_no_shared_memory_files_left(fault_server):
    leftovers = [n for n in os.listdir("/dev/shm") if n.startswith("triton_python_backend_shm_region_")]
    assert leftovers == []


def test_bls_into_a_decoupled_model_sync_and_async(fault_server):
    assert _infer(fault_server, "f_bls", 3).tolist() == [0.0, 1.0, 2.0]
    assert _infer(fault_server, "f_bls", 0).tolist() == []
    assert "no_such_model" in _infer_error(fault_server, "f_bls", -2)


def test_stubs_exit_when_the_server_is_killed(tmp_path):
    repo = str(tmp_path / "repo")
    _write_models(repo, ["f_exit"])
    srv = start_server(repo, str(tmp_path / "server.log"))
    try:
        client = _http(srv)
        _wait(lambda: client.is_model_ready("f_exit"), "f_exit to load")
        stubs = _children(srv.proc.pid)
        assert stubs
    finally:
        srv.proc.kill()
        srv.proc.wait()
    _wait(lambda: not any(_alive(p) for p in stubs), "the orphaned stubs to exit")


def test_stub_death_mid_stream_ends_the_stream_with_an_error(fault_server):
    conn = _grpc(fault_server)
    results: queue.SimpleQueue = queue.SimpleQueue()
    conn.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        conn.async_stream_infer("f_stream_exit", [_input(grpcclient, "IN", np.zeros(1, np.float32), "FP32")])
        result, error = results.get(timeout=DEADLINE_S)
        assert error is None and result.as_numpy("OUT").tolist() == [7.0]
        result, error = results.get(timeout=DEADLINE_S)
        assert error is not None and "stub process died (exit code 5)" in str(error)
    finally:
        conn.stop_stream()
    _wait(lambda: _http(fault_server).is_model_ready("f_stream_exit"), "f_stream_exit to restart")


def test_model_is_not_ready_while_its_stub_restarts(fault_server):
    client = _http(fault_server)
    pid = int(_infer(fault_server, "f_slow_restart", 0)[0])
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: not client.is_model_ready("f_slow_restart"), "f_slow_restart to report not ready")
    _wait(lambda: client.is_model_ready("f_slow_restart"), "f_slow_restart to be ready again")
    assert int(_infer(fault_server, "f_slow_restart", 0)[0]) != pid


def test_decoupled_repeat_over_http_generate_stream(server):
    conn = http.client.HTTPConnection(server.http_url, timeout=DEADLINE_S)
    try:
        body = json.dumps({"IN": [4, 5], "REPEAT": [2]})
        conn.request("POST", "/v2/models/python_repeat/generate_stream", body,
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200
        text = response.read().decode()
        events = [json.loads(chunk[len("data: "):]) for chunk in text.split("\n\n") if chunk]
        assert [(e["OUT"], e["IDX"]) for e in events] == [([4, 5], 0), ([4, 5], 1)]
    finally:
        conn.close()


def test_a_leaking_stub_is_recycled_without_failing_a_request(fault_server):
    # 64 MiB leaked per execute against a 200 MiB limit: a new stub every few requests, none failing
    pids = [int(_infer(fault_server, "f_leak", 0)[0]) for _ in range(8)]
    assert len(set(pids)) >= 2, pids
    assert "over stub_memory_limit_bytes" in fault_server.log()


def test_model_modules_are_not_shadowed_by_the_stubs_own(fault_server):
    assert _infer(fault_server, "f_shadow", 0).tolist() == [42.0]


def test_a_client_that_goes_away_is_seen_by_is_cancelled(fault_server):
    body = json.dumps({"inputs": [{"name": "IN", "datatype": "FP32", "shape": [1], "data": [1.0]}]})
    host, port = fault_server.http_url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=DEADLINE_S)
    conn.request("POST", "/v2/models/f_cancel/infer", body, {"Content-Type": "application/json"})
    _wait(lambda: os.path.exists(os.path.join(fault_server.repo, "f_cancel", "executing")), "the execute to start")
    # the client goes away mid-request: an abortive close (RST), as when its connection breaks
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.sock.close()
    conn.close()
    assert _wait(lambda: _infer(fault_server, "f_cancel", 0).tolist() == [1.0], "the model to see the cancel")
