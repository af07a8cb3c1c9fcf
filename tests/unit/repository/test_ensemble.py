"""EnsembleScheduler over fake composing models: data-flow order, concurrency, errors, output filtering."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from triton_asyncio.core.request import InferenceRequest, RequestedOutput
from triton_asyncio.core.response import InferenceResponse
from triton_asyncio.core.stats import ModelStats
from triton_asyncio.core.tensor import Tensor
from triton_asyncio.errors import ErrorCode, TritonError
from triton_asyncio.repository.ensemble import EnsembleScheduler, Step


def _tensor(name: str, value: int) -> Tensor:
    return Tensor(name, "INT32", [1], np.array([value], np.int32).tobytes())


def _value(tensor: Tensor) -> int:
    return int(tensor.as_numpy()[0])


class FakeModel:
    """OUT = fn(IN...) after `delay` seconds; records start/end order in a shared log."""

    def __init__(self, name, fn, log, delay=0.0, error=None):
        self.name, self.version, self.spec = name, 1, None
        self.fn, self.log, self.delay, self.error = fn, log, delay, error

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        self.log.append(("start", self.name))
        await asyncio.sleep(self.delay)
        self.log.append(("end", self.name))
        if self.error is not None:
            return InferenceResponse(self.name, "1", request.id, error=self.error)
        values = {k: _value(t) for k, t in request.inputs.items()}
        return InferenceResponse(self.name, "1", request.id, [_tensor("OUT", self.fn(values))])


def _scheduler(models, steps, outputs, validate=None):
    by_name = {m.name: m for m in models}
    return EnsembleScheduler("ens", "1", steps, outputs, lambda n, v: by_name[n], ModelStats(), validate)


def _request(**inputs):
    return InferenceRequest("ens", inputs={k: _tensor(k, v) for k, v in inputs.items()})


# A -> (b: X+1), (c: X*10) independently; d = b + c; outputs B, D.
def _diamond(log, delay=0.05, c_error=None):
    models = [FakeModel("inc", lambda v: v["IN"] + 1, log, delay),
              FakeModel("mul", lambda v: v["IN"] * 10, log, delay, c_error),
              FakeModel("add", lambda v: v["L"] + v["R"], log)]
    steps = [Step("add", -1, {"L": "b", "R": "c"}, {"OUT": "D"}),  # listed first: must still wait
             Step("inc", -1, {"IN": "X"}, {"OUT": "b"}),
             Step("mul", -1, {"IN": "X"}, {"OUT": "c"})]
    return models, steps


def test_dag_order_and_outputs():
    log = []
    models, steps = _diamond(log)
    scheduler = _scheduler(models, steps, ["b", "D"])
    response = asyncio.run(scheduler.submit(_request(X=3)))
    assert response.error is None
    assert {t.name: _value(t) for t in response.outputs} == {"b": 4, "D": 34}
    assert log.index(("start", "add")) > max(log.index(("end", "inc")), log.index(("end", "mul")))
    assert scheduler.stats.success.count == 1 and scheduler.stats.execution_count == 1
    assert scheduler.inflight_count() == 0


def test_independent_steps_run_concurrently():
    log = []
    models, steps = _diamond(log, delay=0.05)
    asyncio.run(_scheduler(models, steps, ["D"]).submit(_request(X=1)))
    # both branches start before either ends
    assert log[:2] in ([("start", "inc"), ("start", "mul")], [("start", "mul"), ("start", "inc")])


def test_failing_step_fails_request_with_its_error():
    log = []
    models, steps = _diamond(log, c_error=TritonError(ErrorCode.INTERNAL, "mul exploded"))
    scheduler = _scheduler(models, steps, ["D"])
    response = asyncio.run(scheduler.submit(_request(X=1)))
    assert response.error is not None and response.error.message == "mul exploded"
    assert ("start", "add") not in log
    assert scheduler.stats.fail.count == 1 and scheduler.stats.success.count == 0


def test_unavailable_composing_model_fails_request():
    def resolve(name, version):
        raise TritonError(ErrorCode.UNAVAILABLE, f"'{name}' is not at ready state")
    scheduler = EnsembleScheduler("ens", "1", [Step("inc", -1, {"IN": "X"}, {"OUT": "Y"})], ["Y"],
                                  resolve, ModelStats())
    response = asyncio.run(scheduler.submit(_request(X=1)))
    assert response.error.code is ErrorCode.UNAVAILABLE


def test_requested_outputs_filter_response():
    log = []
    models, steps = _diamond(log, delay=0)
    request = _request(X=2)
    request.outputs = {"D": RequestedOutput("D")}
    response = asyncio.run(_scheduler(models, steps, ["b", "D"]).submit(request))
    assert [(t.name, _value(t)) for t in response.outputs] == [("D", 23)]
    assert ("end", "inc") in log  # unrequested outputs are still computed


def test_step_requests_are_validated_and_inherit_request_fields():
    seen = []
    log = []
    model = FakeModel("inc", lambda v: v["IN"] + 1, log)
    request = _request(X=5)
    request.id, request.priority = "r1", 2

    def validate(step_request, spec):
        seen.append((step_request.id, step_request.priority, sorted(step_request.inputs)))
    scheduler = _scheduler([model], [Step("inc", -1, {"IN": "X"}, {"OUT": "Y"})], ["Y"], validate)
    response = asyncio.run(scheduler.submit(request))
    assert _value(response.outputs[0]) == 6 and response.id == "r1"
    assert seen == [("r1", 2, ["IN"])]


@pytest.mark.parametrize("bad", [TritonError(ErrorCode.INVALID_ARG, "bad shape")])
def test_validation_error_fails_request(bad):
    def validate(step_request, spec):
        raise bad
    model = FakeModel("inc", lambda v: v["IN"] + 1, [])
    scheduler = _scheduler([model], [Step("inc", -1, {"IN": "X"}, {"OUT": "Y"})], ["Y"], validate)
    assert asyncio.run(scheduler.submit(_request(X=1))).error is bad
