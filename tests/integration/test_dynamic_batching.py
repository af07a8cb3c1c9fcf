"""simple_dyna through the real server: concurrent calls are batched, and every answer is right."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient

MODEL = "simple_dyna"
CALLS = 16
ROUNDS = 20  # rounds of CALLS concurrent calls: batching shows in the counts long before this


def _inputs(module, i: int):
    a = np.full((1, 16), i, dtype=np.int32) + np.arange(16, dtype=np.int32)
    b = np.full((1, 16), 3 * i + 1, dtype=np.int32)
    inputs = [module.InferInput("INPUT0", [1, 16], "INT32"), module.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return a, b, inputs


def _check(result, a, b) -> None:
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def _counts(stats) -> tuple[int, int]:
    entry = stats["model_stats"][0]
    # protobuf JSON leaves out zero counts (a fresh server, or this test run alone)
    return int(entry.get("execution_count", 0)), int(entry.get("inference_count", 0))


def test_http_concurrent_infers_are_batched(server):
    async def run():
        client = aiohttpclient.InferenceServerClient(server.http_url)
        try:
            config = await client.get_model_config(MODEL)
            assert config["dynamic_batching"]["preferred_batch_size"] == [4, 8]
            before = _counts(await client.get_inference_statistics(MODEL))
            sent = 0
            for _ in range(ROUNDS):
                batch = [_inputs(httpclient, sent + i) for i in range(CALLS)]
                results = await asyncio.gather(*(client.infer(MODEL, inputs) for _, _, inputs in batch))
                for (a, b, _), result in zip(batch, results, strict=True):
                    _check(result, a, b)
                sent += CALLS
                stats = await client.get_inference_statistics(MODEL)
                executions, inferences = _counts(stats)
                assert inferences - before[1] == sent
                if executions - before[0] < inferences - before[1]:
                    break
            else:
                pytest.fail(f"no batch formed in {ROUNDS} rounds of {CALLS} concurrent calls")
            assert any(int(b["batch_size"]) > 1 for b in stats["model_stats"][0]["batch_stats"])
        finally:
            await client.close()

    asyncio.run(run())


def test_grpc_concurrent_infers_are_batched(server):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        before = _counts(client.get_inference_statistics(MODEL, as_json=True))
        sent = 0

        def one(i: int) -> None:
            a, b, inputs = _inputs(grpcclient, i)
            _check(client.infer(MODEL, inputs), a, b)

        with ThreadPoolExecutor(CALLS) as pool:
            for _ in range(ROUNDS):
                list(pool.map(one, range(sent, sent + CALLS)))
                sent += CALLS
                executions, inferences = _counts(client.get_inference_statistics(MODEL, as_json=True))
                assert inferences - before[1] == sent
                if executions - before[0] < inferences - before[1]:
                    break
            else:
                pytest.fail(f"no batch formed in {ROUNDS} rounds of {CALLS} concurrent calls")
    finally:
        client.close()
