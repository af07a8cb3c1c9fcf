"""The ensemble scheduler (Triton's EnsembleScheduler): run a DAG of composing models per request.

Rules: a step fires as soon as every ensemble tensor its `input_map` names exists; independent
steps run concurrently as tasks. Composing models are resolved by name on every request, so an
unloaded composing model fails the request. The first step error fails the whole request with
that step's error. Statistics go to the ensemble's ModelStats; each composing model records its own.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..backends.base import Backend, ModelInstance, ModelLocation
from ..core.request import InferenceRequest, RequestState
from ..core.response import InferenceResponse
from ..core.stats import ModelStats
from ..core.tensor import Tensor
from ..errors import ErrorCode, TritonError
from ..scheduling.base import Scheduler
from .model import Model

Resolver = Callable[[str, int], Any]  # (model name, version; -1 latest) -> Model
Validator = Callable[[InferenceRequest, Any], None]  # (request, ModelSpec) -> raises TritonError


@dataclass(frozen=True, slots=True)
class Step:
    model_name: str
    model_version: int
    input_map: dict[str, str]  # composing model input -> ensemble tensor
    output_map: dict[str, str]  # composing model output -> ensemble tensor


def steps_of(config: Any) -> list[Step]:
    return [Step(s.model_name, int(s.model_version), dict(s.input_map), dict(s.output_map))
            for s in config.ensemble_scheduling.step]


class EnsembleBackend(Backend):
    """Ensembles have no backend and no instances; this only satisfies Model's fields."""

    name = "ensemble"

    def create_instance(self, instance_name: str, kind: str, device_id: int) -> ModelInstance:
        raise TritonError(ErrorCode.INTERNAL, "ensembles have no model instances")


class EnsembleScheduler(Scheduler):
    def __init__(self, name: str, version: str, steps: list[Step], output_names: list[str],
                 resolve: Resolver, stats: ModelStats, validate: Validator | None = None,
                 batching: bool = False) -> None:
        super().__init__([], stats)
        self.batching = batching
        self.name, self.version = name, version
        self.steps = steps
        self.output_names = output_names
        self.resolve = resolve
        self.validate = validate
        self._inflight = 0

    def inflight_count(self) -> int:
        return self._inflight

    async def stop(self) -> None:
        return None

    async def submit(self, request: InferenceRequest) -> InferenceResponse:
        started = time.perf_counter_ns()
        self._inflight += 1
        request.set_state(RequestState.PENDING)
        request.set_state(RequestState.EXECUTING)
        try:
            tensors = await self._run(request)
        except TritonError as e:
            self.stats.fail.add(time.perf_counter_ns() - started)
            return InferenceResponse(self.name, self.version, request.id, error=e)
        finally:
            self._inflight -= 1
            request.set_state(RequestState.RELEASED)
        elapsed = time.perf_counter_ns() - started
        stats = self.stats
        stats.success.add(elapsed)
        stats.queue.add(0)
        stats.compute_infer.add(elapsed)
        stats.inference_count += _batch_size(request) if self.batching else 1
        stats.execution_count += 1
        stats.last_inference_ms = time.time_ns() // 1_000_000
        wanted = self.output_names if request.outputs is None else \
            [n for n in self.output_names if n in request.outputs]
        outputs = [_renamed(tensors[n], n) for n in wanted]
        return InferenceResponse(self.name, self.version, request.id, outputs)

    async def _run(self, request: InferenceRequest) -> dict[str, Tensor]:
        """Data flow: start every step whose inputs exist; as each finishes, start the next ones."""
        tensors: dict[str, Tensor] = dict(request.inputs)
        pending = list(self.steps)
        running: dict[asyncio.Task, Step] = {}
        try:
            while pending or running:
                for step in [s for s in pending if all(t in tensors for t in s.input_map.values())]:
                    pending.remove(step)
                    running[asyncio.ensure_future(self._run_step(step, request, tensors))] = step
                if not running:
                    raise TritonError(ErrorCode.INTERNAL, f"ensemble '{self.name}' has steps whose inputs "
                                                          f"are never produced")
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    step = running.pop(task)
                    produced = task.result()  # a step error propagates and fails the request
                    for out_name, tname in step.output_map.items():
                        if out_name not in produced:
                            raise TritonError(ErrorCode.INTERNAL, f"in ensemble '{self.name}', step "
                                              f"'{step.model_name}' did not produce output '{out_name}'")
                        tensors[tname] = produced[out_name]
        finally:
            for task in running:
                task.cancel()
        return tensors

    async def _run_step(self, step: Step, parent: InferenceRequest,
                        tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        model = self.resolve(step.model_name, step.model_version)
        inputs = {name: _renamed(tensors[tname], name) for name, tname in step.input_map.items()}
        request = InferenceRequest(model.name, model.version, id=parent.id, inputs=inputs,
                                   parameters=dict(parent.parameters), flags=parent.flags,
                                   correlation_id=parent.correlation_id, priority=parent.priority,
                                   timeout_us=parent.timeout_us)
        if self.validate is not None:
            self.validate(request, model.spec)
        response = await model.infer(request)
        if response.error is not None:
            raise response.error
        return {t.name: t for t in response.outputs}


def _renamed(tensor: Tensor, name: str) -> Tensor:
    if tensor.name == name:
        return tensor
    return Tensor(name, tensor.datatype, list(tensor.shape), tensor.raw, tensor.array, dict(tensor.parameters))


def _batch_size(request: InferenceRequest) -> int:
    first = next(iter(request.inputs.values()), None)
    return first.shape[0] if first is not None and first.shape else 1


def build_ensemble(config: Any, spec: Any, location: ModelLocation, resolve: Resolver,
                   validate: Validator | None = None) -> Model:
    """An ensemble Model: no backend instances, an EnsembleScheduler over the composing models."""
    stats = ModelStats()
    scheduler = EnsembleScheduler(config.name, str(location.version), steps_of(config),
                                  [o.name for o in config.output], resolve, stats, validate,
                                  batching=config.max_batch_size > 0)
    return Model(config.name, location.version, config, spec, EnsembleBackend(config, location), [],
                 scheduler, stats)
