"""The response cache: keys, byte-bounded LRU, hits, and the statistics the server keeps."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

from triton_asyncio.core.request import InferenceRequest
from triton_asyncio.core.response import InferenceResponse
from triton_asyncio.core.stats import ModelStats
from triton_asyncio.core.tensor import Tensor
from triton_asyncio.server.inference_server import InferenceServer
from triton_asyncio.server.response_cache import ResponseCache, from_settings, request_key


def _request(values=(1, 2, 3, 4), name="INPUT0", datatype="INT32", shape=(1, 4)) -> InferenceRequest:
    array = np.array(values, dtype=np.int32).reshape(shape)
    raw = memoryview(array).cast("B")
    return InferenceRequest("m", inputs={name: Tensor(name, datatype, list(shape), raw=raw)})


def _response(nbytes: int) -> InferenceResponse:
    return InferenceResponse("m", "1", outputs=[Tensor("OUTPUT0", "UINT8", [nbytes], raw=bytearray(nbytes))])


def test_equal_requests_share_a_key():
    assert request_key("m", 1, _request()) == request_key("m", 1, _request())
    # bytes-like raw and numpy array inputs hash the same bytes
    array = np.array([1, 2, 3, 4], dtype=np.int32).reshape(1, 4)
    r = InferenceRequest("m", inputs={"INPUT0": Tensor("INPUT0", "INT32", [1, 4], array=array)})
    assert request_key("m", 1, r) == request_key("m", 1, _request())


@pytest.mark.parametrize("other", [
    lambda: request_key("n", 1, _request()),
    lambda: request_key("m", 2, _request()),
    lambda: request_key("m", 1, _request(values=(1, 2, 3, 5))),
    lambda: request_key("m", 1, _request(name="INPUT1")),
    lambda: request_key("m", 1, _request(datatype="FP32")),
    lambda: request_key("m", 1, _request(shape=(4, 1))),
])
def test_any_difference_changes_the_key(other):
    assert other() != request_key("m", 1, _request())


def test_hit_returns_equal_outputs_in_fresh_tensors():
    cache = ResponseCache(1 << 20)
    original = InferenceResponse("m", "1", outputs=[
        Tensor("OUTPUT0", "INT32", [1, 2], array=np.array([[7, 8]], dtype=np.int32)),
        Tensor("OUTPUT1", "BYTES", [1], array=np.array([b"ab"], dtype=object))])
    assert cache.lookup(b"k", "m", "1") is None
    assert cache.insert(b"k", original)
    hit = cache.lookup(b"k", "m", "1", "req-7")
    assert (hit.model_name, hit.model_version, hit.id) == ("m", "1", "req-7")
    np.testing.assert_array_equal(hit.outputs[0].as_numpy(), [[7, 8]])
    assert hit.outputs[1].as_numpy().tolist() == [b"ab"]
    assert hit.outputs[0] is not original.outputs[0]
    hit.outputs[0].shape.append(1)  # a caller's edits do not reach the cache
    assert cache.lookup(b"k", "m", "1").outputs[0].shape == [1, 2]


def test_lru_eviction_by_bytes():
    cache = ResponseCache(3 * 1200)
    for key in (b"a", b"b", b"c"):
        assert cache.insert(key, _response(1000))
    assert cache.lookup(b"a", "m", "1") is not None  # a becomes most recently used
    assert cache.insert(b"d", _response(1000))
    assert b"b" not in cache and {b"a", b"c", b"d"} <= set(cache._entries)
    assert cache.used <= cache.capacity
    assert cache.insert(b"big", _response(3000))  # evicts everything else to fit
    assert len(cache) == 1
    assert not cache.insert(b"huge", _response(4000))  # never fits
    assert b"big" in cache


def test_from_settings():
    assert from_settings([]) is None
    assert from_settings([("local", "size", "1048576")]).capacity == 1048576
    with pytest.raises(ValueError):
        from_settings([("redis", "host", "x")])
    with pytest.raises(ValueError):
        from_settings([("local", "size", "lots")])


class _Model:
    def __init__(self, enable: bool = True) -> None:
        self.name, self.version, self.version_str = "m", 1, "1"
        self.config = SimpleNamespace(response_cache=SimpleNamespace(enable=enable))
        self.stats = ModelStats()
        self.runs = 0

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        self.runs += 1
        out = request.inputs["INPUT0"].as_numpy() + 1
        return InferenceResponse("m", "1", request.id, [Tensor("OUTPUT0", "INT32", list(out.shape), array=out)])


def test_server_counts_hits_and_misses():
    server = InferenceServer(SimpleNamespace(), response_cache=ResponseCache(1 << 20))
    model = _Model()

    async def run():
        return [await server.infer_prepared(model, r) for r in (_request(), _request(), _request((5, 6, 7, 8)))]

    first, second, third = asyncio.run(run())
    np.testing.assert_array_equal(second.outputs[0].as_numpy(), first.outputs[0].as_numpy())
    np.testing.assert_array_equal(third.outputs[0].as_numpy(), [[6, 7, 8, 9]])
    assert model.runs == 2
    assert (model.stats.cache_hit.count, model.stats.cache_miss.count) == (1, 2)
    assert model.stats.success.count == 1  # the hit; the fake model records no success itself


def test_models_without_cache_enabled_bypass_it():
    server = InferenceServer(SimpleNamespace(), response_cache=ResponseCache(1 << 20))
    model = _Model(enable=False)

    async def run():
        for _ in range(2):
            await server.infer_prepared(model, _request())

    asyncio.run(run())
    assert model.runs == 2 and len(server.response_cache) == 0
    assert (model.stats.cache_hit.count, model.stats.cache_miss.count) == (0, 0)
