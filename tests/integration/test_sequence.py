"""Sequence models through the real server with tritonclient: controls, Triton's errors, the oldest
strategy's batching and backlog (simple_sequence_oldest), implicit state (simple_state)."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient
from tritonclient.utils import InferenceServerException


def _infer(client, value: int, **sequence):
    inp = httpclient.InferInput("INPUT", [1, 1], "INT32")
    inp.set_data_from_numpy(np.array([[value]], np.int32))
    result = client.infer("simple_sequence", [inp], **sequence)
    return int(result.as_numpy("OUTPUT")[0, 0])


@pytest.mark.parametrize("sequence_id", [1001, "seq-str"])
def test_start_control_reaches_the_model(server, sequence_id):
    client = httpclient.InferenceServerClient(server.http_url)
    # OUTPUT = INPUT * (1 + START): only the request with sequence_start doubles its input
    assert _infer(client, 5, sequence_id=sequence_id, sequence_start=True) == 10
    assert _infer(client, 6, sequence_id=sequence_id) == 6
    assert _infer(client, 7, sequence_id=sequence_id, sequence_end=True) == 7
    with pytest.raises(InferenceServerException, match="must specify the START flag on the first request"):
        _infer(client, 8, sequence_id=sequence_id)


def test_errors(server):
    client = httpclient.InferenceServerClient(server.http_url)
    with pytest.raises(InferenceServerException) as e:
        _infer(client, 1, sequence_id=4321)
    assert ("inference request for sequence 4321 to model 'simple_sequence' must specify the START flag on the "
            "first request of the sequence") in str(e.value)
    with pytest.raises(InferenceServerException,
                       match="inference request to model 'simple_sequence' must specify a non-zero or non-empty "
                             "correlation ID"):
        _infer(client, 1)


OLDEST = "simple_sequence_oldest"  # 4 candidate sequences, preferred batch 4, max queue delay 200 ms


def _counts(stats) -> tuple[int, int]:
    entry = stats["model_stats"][0]
    # protobuf JSON leaves out zero counts (a fresh server, or this test run alone)
    return int(entry.get("execution_count", 0)), int(entry.get("inference_count", 0))


def _expected(value: int, step: int) -> int:
    return value * 2 if step == 0 else value  # the START request doubles its input


def _sequence_flags(step: int, steps: int) -> dict:
    return {"sequence_start": step == 0, "sequence_end": step == steps - 1}


def test_oldest_batches_concurrent_sequences_http(server):
    ids = [2001, 2002, "old-a", "old-b"]

    async def run():
        client = aiohttpclient.InferenceServerClient(server.http_url)
        try:
            config = await client.get_model_config(OLDEST)
            assert config["sequence_batching"]["oldest"]["max_candidate_sequences"] == 4
            before = _counts(await client.get_inference_statistics(OLDEST))
            for step in range(3):
                # one request per sequence, sent together: the oldest strategy runs them as one batch
                calls = [_infer_async(client, OLDEST, 10 * k + step, sequence_id=sid, **_sequence_flags(step, 3))
                         for k, sid in enumerate(ids)]
                got = await asyncio.gather(*calls)
                assert got == [_expected(10 * k + step, step) for k in range(len(ids))]
            executions, inferences = _counts(await client.get_inference_statistics(OLDEST))
            assert inferences - before[1] == 12
            assert executions - before[0] < inferences - before[1]
        finally:
            await client.close()

    asyncio.run(run())


def test_oldest_batches_concurrent_sequences_grpc(server):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    ids = [3001, "old-g1", 3003]
    before = _counts(client.get_inference_statistics(OLDEST, as_json=True))

    def one(args):
        k, sid, step = args
        inp = grpcclient.InferInput("INPUT", [1, 1], "INT32")
        inp.set_data_from_numpy(np.array([[100 * k + step]], np.int32))
        result = client.infer(OLDEST, [inp], sequence_id=sid, **_sequence_flags(step, 2))
        return int(result.as_numpy("OUTPUT")[0, 0])

    with ThreadPoolExecutor(len(ids)) as pool:
        for step in range(2):
            got = list(pool.map(one, [(k, sid, step) for k, sid in enumerate(ids)]))
            assert got == [_expected(100 * k + step, step) for k in range(len(ids))]
    executions, inferences = _counts(client.get_inference_statistics(OLDEST, as_json=True))
    assert inferences - before[1] == 6
    assert executions - before[0] < inferences - before[1]
    client.close()


def test_oldest_backlog_waits_for_a_candidate_to_end(server):
    ids = [4001, 4002, 4003, 4004]

    async def run():
        client = aiohttpclient.InferenceServerClient(server.http_url)
        try:
            await asyncio.gather(*(_infer_async(client, OLDEST, 1, sequence_id=sid, sequence_start=True)
                                   for sid in ids))
            # every candidate slot is taken: a fifth sequence waits in the backlog
            late = asyncio.ensure_future(_infer_async(client, OLDEST, 5, sequence_id="late", sequence_start=True))
            done, _ = await asyncio.wait({late}, timeout=0.5)
            assert not done
            assert await _infer_async(client, OLDEST, 2, sequence_id=ids[0], sequence_end=True) == 2
            assert await asyncio.wait_for(late, 30) == 10
            await asyncio.gather(*(_infer_async(client, OLDEST, 3, sequence_id=sid, sequence_end=True)
                                   for sid in [*ids[1:], "late"]))
        finally:
            await client.close()

    asyncio.run(run())


async def _infer_async(client, model: str, value: int, **sequence) -> int:
    inp = aiohttpclient.InferInput("INPUT", [1, 1], "INT32")
    inp.set_data_from_numpy(np.array([[value]], np.int32))
    result = await client.infer(model, [inp], **sequence)
    return int(result.as_numpy("OUTPUT")[0, 0])


STATE = "simple_state"  # OUTPUT = INPUT + state; the state is the previous OUTPUT, zero at START


def test_implicit_state_http(server):
    client = httpclient.InferenceServerClient(server.http_url)
    config = client.get_model_config(STATE)
    assert config["sequence_batching"]["state"][0]["input_name"] == "STATE_IN"
    assert [i["name"] for i in client.get_model_metadata(STATE)["inputs"]] == ["INPUT"]

    def infer(value, **sequence):
        inp = httpclient.InferInput("INPUT", [1, 1], "INT32")
        inp.set_data_from_numpy(np.array([[value]], np.int32))
        result = client.infer(STATE, [inp], **sequence)
        assert [o["name"] for o in result.get_response()["outputs"]] == ["OUTPUT"]
        return int(result.as_numpy("OUTPUT")[0, 0])

    # two sequences interleaved, one with a string id: each keeps its own running sum
    assert infer(1, sequence_id=5001, sequence_start=True) == 1
    assert infer(10, sequence_id="state-s", sequence_start=True) == 10
    assert infer(2, sequence_id=5001) == 3
    assert infer(20, sequence_id="state-s") == 30
    assert infer(3, sequence_id=5001, sequence_end=True) == 6
    assert infer(30, sequence_id="state-s", sequence_end=True) == 60
    assert infer(4, sequence_id=5001, sequence_start=True, sequence_end=True) == 4
    inp = httpclient.InferInput("INPUT", [1, 1], "INT32")
    inp.set_data_from_numpy(np.array([[1]], np.int32))
    with pytest.raises(InferenceServerException, match="unexpected inference output 'STATE_OUT'"):
        client.infer(STATE, [inp], sequence_id=5002, sequence_start=True,
                     outputs=[httpclient.InferRequestedOutput("STATE_OUT")])
    state = httpclient.InferInput("STATE_IN", [1, 1], "INT32")
    state.set_data_from_numpy(np.array([[1]], np.int32))
    with pytest.raises(InferenceServerException, match="expected 1 inputs but got 2 inputs for model 'simple_state'"):
        client.infer(STATE, [inp, state], sequence_id=5002, sequence_start=True)


def test_implicit_state_grpc_concurrent_sequences(server):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    ids = [6001, "state-g"]

    def one(args):
        k, sid, step = args
        inp = grpcclient.InferInput("INPUT", [1, 1], "INT32")
        inp.set_data_from_numpy(np.array([[k + 1]], np.int32))
        result = client.infer(STATE, [inp], sequence_id=sid, **_sequence_flags(step, 4))
        assert [o.name for o in result.get_response().outputs] == ["OUTPUT"]
        return int(result.as_numpy("OUTPUT")[0, 0])

    with ThreadPoolExecutor(len(ids)) as pool:
        for step in range(4):
            got = list(pool.map(one, [(k, sid, step) for k, sid in enumerate(ids)]))
            assert got == [(k + 1) * (step + 1) for k in range(len(ids))]
    client.close()
