import json

from triton_asyncio.codec.kserve_json import (
    encode_model_metadata,
    encode_model_stats,
    encode_repository_index,
    encode_server_metadata,
)
from triton_asyncio.core.stats import ModelStats


def test_server_metadata():
    assert encode_server_metadata("triton", "2.73.0", ["classification", "sequence"]) == (
        b'{"name":"triton","version":"2.73.0","extensions":["classification","sequence"]}')


def test_model_metadata():
    body = encode_model_metadata("simple", ["1"], "onnxruntime_onnx",
                                 [("INPUT0", "INT32", [-1, 16])], [("OUTPUT0", "INT32", (-1, 16))])
    assert body == (b'{"name":"simple","versions":["1"],"platform":"onnxruntime_onnx",'
                    b'"inputs":[{"name":"INPUT0","datatype":"INT32","shape":[-1,16]}],'
                    b'"outputs":[{"name":"OUTPUT0","datatype":"INT32","shape":[-1,16]}]}')


def test_model_stats_shape_matches_triton():
    stats = ModelStats(last_inference_ms=1700000000000, inference_count=64, execution_count=2)
    stats.success.add(123, 64)
    stats.queue.add(1, 64)
    stats.batch(32).compute_infer.add(5)
    stats.batch(1).compute_input.add(2)
    doc = json.loads(encode_model_stats([("simple", "1", stats)]))
    (entry,) = doc["model_stats"]
    assert list(entry) == ["name", "version", "last_inference", "inference_count", "execution_count",
                           "inference_stats", "response_stats", "batch_stats", "memory_usage"]
    assert list(entry["inference_stats"]) == ["success", "fail", "queue", "compute_input", "compute_infer",
                                              "compute_output", "cache_hit", "cache_miss"]
    assert entry["inference_stats"]["success"] == {"count": 64, "ns": 123}
    assert [b["batch_size"] for b in entry["batch_stats"]] == [1, 32]
    assert entry["batch_stats"][1]["compute_infer"] == {"count": 1, "ns": 5}
    assert encode_model_stats([]) == b'{"model_stats":[]}'


def test_repository_index():
    rows = [("broken", "1", "UNAVAILABLE", "Internal: boom"), ("never", None, None, ""),
            ("simple", "1", "READY", ""), ("twice", None, "UNAVAILABLE", "model appears in two or more repositories")]
    assert json.loads(encode_repository_index(rows)) == [
        {"name": "broken", "version": "1", "state": "UNAVAILABLE", "reason": "Internal: boom"},
        {"name": "never"},
        {"name": "simple", "version": "1", "state": "READY"},
        {"name": "twice", "state": "UNAVAILABLE", "reason": "model appears in two or more repositories"}]
