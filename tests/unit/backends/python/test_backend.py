"""The backend without a server: a real stub process, a fake response sink, a fake BLS caller."""
from __future__ import annotations

import os
import queue
import sys
import textwrap

import numpy as np
import pytest
from google.protobuf import text_format

from triton_asyncio.backends.base import ModelLocation
from triton_asyncio.backends.python.backend import PythonBackend
from triton_asyncio.core.request import InferenceRequest
from triton_asyncio.core.response import InferenceResponse
from triton_asyncio.core.tensor import Tensor
from triton_asyncio.errors import ErrorCode, TritonError
from triton_asyncio.pb import model_config_pb2

DECOUPLED = """
import threading
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            n = int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0])
            threading.Thread(target=self.reply, args=(request.get_response_sender(), n)).start()
        return None

    def reply(self, sender, n):
        for i in range(n):
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.array([i], np.float32))]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
"""

BLS = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            result = pb_utils.InferenceRequest(model_name="other", inputs=request.inputs(),
                                               requested_output_names=["OUT"]).exec()
            if result.has_error():
                out.append(pb_utils.InferenceResponse(error=result.error()))
            else:
                out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", result.output_tensors()[0].as_numpy())]))
        return out
"""


class Sink:
    def __init__(self) -> None:
        self.items: queue.SimpleQueue = queue.SimpleQueue()

    def send(self, response, final) -> None:
        self.items.put((response, final))

    def fail(self, error) -> None:
        self.items.put(error)


class Caller:
    """BLS target: doubles IN into OUT, or fails when IN[0] < 0."""

    def infer(self, request: InferenceRequest) -> InferenceResponse:
        x = request.inputs["IN"].as_numpy()
        if x[0] < 0:
            raise TritonError(ErrorCode.NOT_FOUND, "other: negative input")
        return InferenceResponse("other", "1", outputs=[Tensor("OUT", "FP32", list(x.shape), array=x * 2)])


def _backend(tmp_path, source: str, extra: str = "") -> PythonBackend:
    os.makedirs(tmp_path / "m" / "1")
    (tmp_path / "m" / "1" / "model.py").write_text(textwrap.dedent(source))
    config = text_format.Parse(
        'name: "m" backend: "python" max_batch_size: 0 '
        'input [ { name: "IN" data_type: TYPE_FP32 dims: [ -1 ] } ] '
        'output [ { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] } ] ' + extra, model_config_pb2.ModelConfig())
    return PythonBackend(config, ModelLocation("m", 1, str(tmp_path / "m"), str(tmp_path / "m" / "1")))


def _request(value: float) -> InferenceRequest:
    x = np.array([value], np.float32)
    return InferenceRequest("m", id=f"r{value}", inputs={"IN": Tensor("IN", "FP32", [1], array=x)})


def test_decoupled_responses_arrive_through_the_sink_after_execute(tmp_path):
    backend = _backend(tmp_path, DECOUPLED, "model_transaction_policy { decoupled: true }")
    instance = backend.create_instance("m_0_0", "KIND_CPU", 0)
    try:
        requests = [_request(3), _request(0)]
        sinks = [Sink(), Sink()]
        for request, sink in zip(requests, sinks, strict=True):
            request.response_sink = sink
        placeholders = instance.execute(requests)
        assert [p.error for p in placeholders] == [None, None]
        got = []
        while True:
            response, final = sinks[0].items.get(timeout=30)
            if response is not None:
                got.append(float(response.outputs[0].as_numpy()[0]))
            if final:
                break
        assert got == [0.0, 1.0, 2.0]
        assert sinks[1].items.get(timeout=30) == (None, True)
    finally:
        instance.finalize()


def test_bls_runs_on_the_caller_and_errors_come_back_as_responses(tmp_path):
    backend = _backend(tmp_path, BLS)
    backend.caller = Caller()
    instance = backend.create_instance("m_0_0", "KIND_CPU", 0)
    try:
        ok, bad = instance.execute([_request(4), _request(-1)])
        assert ok.error is None and ok.outputs[0].as_numpy().tolist() == [8.0]
        assert bad.error is not None and bad.error.code == ErrorCode.NOT_FOUND
        assert bad.error.message == "other: negative input"
    finally:
        instance.finalize()


def test_finalize_reaps_the_stub(tmp_path):
    instance = _backend(tmp_path, BLS).create_instance("m_0_0", "KIND_CPU", 0)
    proc = instance.stub.proc
    instance.finalize()
    assert proc.poll() is not None
    assert not instance.is_healthy() or proc.returncode is not None


def test_missing_model_file(tmp_path):
    os.makedirs(tmp_path / "m" / "1")
    config = text_format.Parse('name: "m" backend: "python"', model_config_pb2.ModelConfig())
    with pytest.raises(TritonError, match="unable to find"):
        PythonBackend(config, ModelLocation("m", 1, str(tmp_path / "m"), str(tmp_path / "m" / "1")))


def test_tar_gz_execution_env_is_refused_clearly(tmp_path):
    os.makedirs(tmp_path / "m" / "1")
    (tmp_path / "m" / "1" / "model.py").write_text(BLS)
    config = text_format.Parse('name: "m" backend: "python" parameters { key: "EXECUTION_ENV_PATH" '
                               'value { string_value: "$$TRITON_MODEL_DIRECTORY/env.tar.gz" } }',
                               model_config_pb2.ModelConfig())
    with pytest.raises(TritonError, match="tar.gz"):
        PythonBackend(config, ModelLocation("m", 1, str(tmp_path / "m"), str(tmp_path / "m" / "1")))


def test_execution_env_path_directory_runs_its_interpreter(tmp_path):
    env = tmp_path / "env"
    os.makedirs(env / "bin")
    os.symlink(sys.executable, env / "bin" / "python")
    backend = _backend(tmp_path, BLS, f'parameters {{ key: "EXECUTION_ENV_PATH" value {{ string_value: "{env}" }} }}')
    assert backend.interpreter == str(env / "bin" / "python")
    instance = backend.create_instance("m_0_0", "KIND_CPU", 0)
    try:
        assert instance.stub.proc.args[0] == str(env / "bin" / "python")
    finally:
        instance.finalize()
