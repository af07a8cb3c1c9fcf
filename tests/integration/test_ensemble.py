"""simple_ensemble (two chained `simple` steps) through the real server and tritonclient."""
from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

MODEL = "simple_ensemble"


@pytest.fixture(scope="module")
def http(server):
    c = httpclient.InferenceServerClient(server.http_url)
    yield c
    c.close()


@pytest.fixture(scope="module")
def grpc(server):
    c = grpcclient.InferenceServerClient(server.grpc_url)
    yield c
    c.close()


def _inputs(module, batch=1):
    a = np.arange(16 * batch, dtype=np.int32).reshape(batch, 16)
    b = np.full((batch, 16), 3, dtype=np.int32)
    inputs = [module.InferInput("INPUT0", list(a.shape), "INT32"), module.InferInput("INPUT1", list(b.shape), "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return a, b, inputs


@pytest.mark.parametrize("batch", [1, 4])
def test_http_infer_doubles_inputs(http, batch):
    a, b, inputs = _inputs(httpclient, batch)
    result = http.infer(MODEL, inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), 2 * a)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), 2 * b)


def test_grpc_infer_requested_output_only(grpc):
    a, _, inputs = _inputs(grpcclient)
    result = grpc.infer(MODEL, inputs, outputs=[grpcclient.InferRequestedOutput("OUTPUT0")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), 2 * a)
    assert result.as_numpy("OUTPUT1") is None


def test_metadata_and_config(http, grpc):
    assert http.is_model_ready(MODEL)
    meta = http.get_model_metadata(MODEL)
    assert meta["platform"] == "ensemble"
    assert [i["name"] for i in meta["inputs"]] == ["INPUT0", "INPUT1"]
    config = http.get_model_config(MODEL)
    assert config["platform"] == "ensemble"
    assert [s["model_name"] for s in config["ensemble_scheduling"]["step"]] == ["simple", "simple"]
    assert grpc.get_model_config(MODEL).config.ensemble_scheduling.step[1].output_map["OUTPUT0"] == "OUTPUT0"


def test_statistics_count_ensemble_and_composing_model(http):
    def stats(name):
        return http.get_inference_statistics(name)["model_stats"][0]["inference_stats"]
    before_e, before_s = stats(MODEL)["success"]["count"], stats("simple")["success"]["count"]
    _, _, inputs = _inputs(httpclient)
    http.infer(MODEL, inputs)
    assert stats(MODEL)["success"]["count"] == before_e + 1
    assert stats("simple")["success"]["count"] == before_s + 2


def test_bad_input_fails_with_ensemble_error(http):
    bad = httpclient.InferInput("INPUT0", [1, 15], "INT32")
    bad.set_data_from_numpy(np.zeros((1, 15), np.int32))
    _, _, inputs = _inputs(httpclient)
    with pytest.raises(Exception, match="unexpected shape"):
        http.infer(MODEL, [bad, inputs[1]])
