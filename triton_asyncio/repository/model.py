"""One loaded model version: its config, backend, instances, scheduler and statistics.

Rules: building and tearing down happen here, synchronously (the manager runs them off the
event loop); `Model.infer` is the only path from the server into a scheduler.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import Backend, ModelInstance, ModelLocation
from ..core.caller import InferenceCaller
from ..core.datatype import config_to_wire
from ..core.request import InferenceRequest
from ..core.response import InferenceResponse
from ..core.stats import ModelStats
from ..scheduling.base import Scheduler
from ..scheduling.batch_policy import QueuePolicy
from ..scheduling.default import DefaultScheduler
from ..scheduling.dynamic import DynamicBatcher
from ..scheduling.sequence import Control, SequenceBatcher
from . import warmup

log = logging.getLogger("triton_asyncio.repository")


@dataclass(slots=True)
class Model:
    name: str
    version: int
    config: Any  # inference.ModelConfig, normalized
    spec: Any  # repository.normalize.ModelSpec
    backend: Backend
    instances: list[ModelInstance]
    scheduler: Scheduler
    stats: ModelStats
    labels: dict[str, list[str]] = field(default_factory=dict)

    @property
    def version_str(self) -> str:
        return str(self.version)

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        return await self.scheduler.submit(request)

    def try_infer_now(self, request: InferenceRequest) -> InferenceResponse | None:
        """A synchronous result when the scheduler can run it at once on the loop, else None."""
        run_now = getattr(self.scheduler, "try_run_now", None)
        return run_now(request) if run_now is not None else None

    def is_healthy(self) -> bool:
        return True

    async def unload(self) -> None:
        await self.scheduler.stop()
        for instance in self.instances:
            _quietly(instance.finalize, f"finalizing instance {instance.name}")
        _quietly(self.backend.finalize, f"finalizing model {self.name}")


def build_model(backend_cls: type[Backend], config: Any, spec: Any, location: ModelLocation,
                caller: InferenceCaller | None = None) -> Model:
    """Create the backend and every instance of one version; raises TritonError on failure."""
    backend = backend_cls(config, location)
    backend.caller = caller
    instances: list[ModelInstance] = []
    active: list[ModelInstance] = []
    try:
        for g_index, group in enumerate(config.instance_group):
            group_name = group.name or f"{config.name}_{g_index}"
            kind = _kind_name(group.kind)
            devices = list(group.gpus) if kind == "KIND_GPU" else [0]
            for device in devices or [0]:
                for i in range(group.count):
                    instance = backend.create_instance(f"{group_name}_{i}", kind, device)
                    instances.append(instance)
                    if not group.passive:
                        active.append(instance)
        # Warmup: every instance runs the config's samples before the model can be READY.
        warmup.run_warmup(config, location.version, location.model_dir, instances)
    except BaseException:
        for instance in instances:
            _quietly(instance.finalize, "cleaning up after a failed load")
        _quietly(backend.finalize, "cleaning up after a failed load")
        raise
    stats = ModelStats()
    scheduler = _make_scheduler(config, active or instances, stats)
    labels = load_labels(config, location.model_dir)
    return Model(config.name, location.version, config, spec, backend, instances, scheduler, stats, labels)


def _make_scheduler(config: Any, instances: list[ModelInstance], stats: ModelStats) -> Scheduler:
    """The sequence batcher, the dynamic batcher for a batching model that asks for it, else the default."""
    if config.HasField("sequence_batching"):
        sb = config.sequence_batching
        return SequenceBatcher(instances, stats, model_name=config.name, max_batch_size=config.max_batch_size,
                               controls=_sequence_controls(sb), idle_us=sb.max_sequence_idle_microseconds)
    if not (config.HasField("dynamic_batching") and config.max_batch_size > 0):
        return DefaultScheduler(instances, stats, batching=config.max_batch_size > 0)
    db = config.dynamic_batching
    return DynamicBatcher(instances, stats, max_batch_size=config.max_batch_size,
                          preferred_batch_sizes=tuple(db.preferred_batch_size),
                          max_queue_delay_us=db.max_queue_delay_microseconds,
                          preserve_ordering=db.preserve_ordering,
                          priority_levels=db.priority_levels,
                          default_priority_level=db.default_priority_level,
                          default_queue_policy=QueuePolicy.of(db.default_queue_policy),
                          priority_queue_policy={level: QueuePolicy.of(p)
                                                 for level, p in db.priority_queue_policy.items()})


_CONTROL_KINDS = {0: "START", 1: "READY", 2: "END", 3: "CORRID"}


def _sequence_controls(sb: Any) -> tuple[Control, ...]:
    """config `control_input` entries as the batcher's Control specs."""
    controls = []
    for control_input in sb.control_input:
        for c in control_input.control:
            kind = _CONTROL_KINDS[c.kind]
            if kind == "CORRID":
                datatype = config_to_wire(c.DESCRIPTOR.fields_by_name["data_type"].enum_type.values_by_number[c.data_type].name) or "UINT64"
                controls.append(Control(control_input.name, kind, datatype))
            elif len(c.fp32_false_true):
                controls.append(Control(control_input.name, kind, "FP32", tuple(c.fp32_false_true)))
            elif len(c.bool_false_true):
                controls.append(Control(control_input.name, kind, "BOOL", tuple(c.bool_false_true)))
            else:
                controls.append(Control(control_input.name, kind, "INT32", tuple(c.int32_false_true) or (0, 1)))
    return tuple(controls)


def _kind_name(kind: int) -> str:
    return {0: "KIND_AUTO", 1: "KIND_GPU", 2: "KIND_CPU", 3: "KIND_MODEL"}.get(kind, "KIND_CPU")


def load_labels(config: Any, model_dir: str) -> dict[str, list[str]]:
    """Label files named by outputs' `label_filename`, one label per line."""
    labels: dict[str, list[str]] = {}
    for output in config.output:
        if output.label_filename:
            path = os.path.join(model_dir, output.label_filename)
            with open(path, encoding="utf-8") as f:
                labels[output.name] = [line.rstrip("\r\n") for line in f]
    return labels


def _quietly(fn, what: str) -> None:
    try:
        fn()
    except Exception:  # teardown must go on; the failure is only logged
        log.exception("error %s", what)
