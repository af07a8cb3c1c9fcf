"""The response cache against the real server: a repeated request is a hit, counted in statistics."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import tritonclient.http as httpclient

from .conftest import start_server, stop_server


@pytest.fixture(scope="module")
def cached_server(example_repo, tmp_path_factory):
    root = tmp_path_factory.mktemp("cache_repo")
    shutil.copytree(os.path.join(example_repo, "simple"), root / "simple")
    with open(root / "simple" / "config.pbtxt", "a", encoding="utf-8") as f:
        f.write("\nresponse_cache { enable: true }\n")
    srv = start_server(str(root), str(tmp_path_factory.mktemp("log") / "cache.log"),
                       "--cache-config", "local,size=1048576")
    yield srv
    assert stop_server(srv) == 0, srv.log()


def _infer(client, a: np.ndarray, b: np.ndarray, outputs=None):
    inputs = [httpclient.InferInput("INPUT0", list(a.shape), "INT32"),
              httpclient.InferInput("INPUT1", list(b.shape), "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return client.infer("simple", inputs, outputs=outputs)


def test_repeated_request_hits_the_cache(cached_server):
    client = httpclient.InferenceServerClient(cached_server.http_url)
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.ones_like(a)
    for _ in range(2):
        result = _infer(client, a, b)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    other = _infer(client, a, b * 2)
    np.testing.assert_array_equal(other.as_numpy("OUTPUT0"), a + 2 * b)

    stats = client.get_inference_statistics("simple")["model_stats"][0]
    inference = stats["inference_stats"]
    assert inference["cache_hit"]["count"] == 1
    assert inference["cache_miss"]["count"] == 2
    assert inference["success"]["count"] == 3
    assert stats["execution_count"] == 2

    # A hit still honours the requested outputs.
    only = _infer(client, a, b, outputs=[httpclient.InferRequestedOutput("OUTPUT1")])
    np.testing.assert_array_equal(only.as_numpy("OUTPUT1"), a - b)
    assert only.as_numpy("OUTPUT0") is None
    inference = client.get_inference_statistics("simple")["model_stats"][0]["inference_stats"]
    assert inference["cache_hit"]["count"] == 2
