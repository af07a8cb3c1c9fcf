"""One loaded model version: its config, backend, instances, scheduler and statistics.

Rules: building and tearing down happen here, synchronously (the manager runs them off the
event loop); `Model.infer` is the only path from the server into a scheduler.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import Backend, ModelInstance, ModelLocation
from ..core.caller import InferenceCaller
from ..core.datatype import ELEMENT_SIZE, config_to_wire
from ..core.request import InferenceRequest
from ..core.response import InferenceResponse
from ..core.stats import ModelStats
from ..errors import invalid_arg
from ..scheduling.base import Scheduler
from ..scheduling.batch_policy import QueuePolicy
from ..scheduling.default import DefaultScheduler
from ..scheduling.dynamic import DynamicBatcher
from ..scheduling.sequence import Control, Oldest, SequenceBatcher, StateSpec
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
        return all(instance.is_healthy() for instance in self.instances)

    async def unload(self) -> None:
        await self.scheduler.stop()
        # finalize may wait on other processes (Python stubs): off the loop, which keeps serving
        await asyncio.get_running_loop().run_in_executor(None, self._finalize)

    def _finalize(self) -> None:
        for instance in self.instances:
            _quietly(instance.finalize, f"finalizing instance {instance.name}")
        _quietly(self.backend.finalize, f"finalizing model {self.name}")


def build_model(backend_cls: type[Backend], config: Any, spec: Any, location: ModelLocation,
                caller: InferenceCaller | None = None) -> Model:
    """Create the backend and every instance of one version; raises TritonError on failure."""
    backend = backend_cls(_backend_config(config), location)
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
    scheduler = _make_scheduler(config, active or instances, stats, location.model_dir)
    labels = load_labels(config, location.model_dir)
    return Model(config.name, location.version, config, spec, backend, instances, scheduler, stats, labels)


def _make_scheduler(config: Any, instances: list[ModelInstance], stats: ModelStats, model_dir: str = "") -> Scheduler:
    """The sequence batcher, the dynamic batcher for a batching model that asks for it, else the default."""
    if config.HasField("sequence_batching"):
        sb = config.sequence_batching
        oldest = None
        if sb.WhichOneof("strategy_choice") == "oldest":
            oldest = Oldest(sb.oldest.max_candidate_sequences, tuple(sb.oldest.preferred_batch_size),
                            sb.oldest.max_queue_delay_microseconds)
        direct_wait = (sb.direct.max_queue_delay_microseconds, sb.direct.minimum_slot_utilization)
        return SequenceBatcher(instances, stats, model_name=config.name, max_batch_size=config.max_batch_size,
                               controls=_sequence_controls(sb), states=_sequence_states(sb, model_dir),
                               visible_outputs=frozenset(o.name for o in config.output),
                               idle_us=sb.max_sequence_idle_microseconds, oldest=oldest,
                               direct_wait=direct_wait)
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
                datatype = config_to_wire(_enum_name(c, "data_type")) or "UINT64"
                controls.append(Control(control_input.name, kind, datatype))
            elif len(c.fp32_false_true):
                controls.append(Control(control_input.name, kind, "FP32", tuple(c.fp32_false_true)))
            elif len(c.bool_false_true):
                controls.append(Control(control_input.name, kind, "BOOL", tuple(c.bool_false_true)))
            else:
                controls.append(Control(control_input.name, kind, "INT32", tuple(c.int32_false_true) or (0, 1)))
    return tuple(controls)


def _sequence_states(sb: Any, model_dir: str) -> tuple[StateSpec, ...]:
    """config `state` entries as the batcher's StateSpecs; a `data_file` is read here, at load, from
    `<model_dir>/initial_state/` (a missing or wrongly sized file fails the load)."""
    specs = []
    for state in sb.state:
        datatype = config_to_wire(_enum_name(state, "data_type"))
        initial, initial_dims = None, None
        for init in state.initial_state:  # validation allows at most one
            initial_dims = tuple(init.dims)
            if init.WhichOneof("state_data") == "data_file":
                initial = _initial_state_file(model_dir, init.data_file, datatype, initial_dims, state.input_name)
        specs.append(StateSpec(state.input_name, state.output_name, datatype, tuple(state.dims), initial, initial_dims))
    return tuple(specs)


def _initial_state_file(model_dir: str, name: str, datatype: str, dims: tuple[int, ...], tensor: str) -> bytes:
    path = os.path.join(model_dir, "initial_state", name)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise invalid_arg(f"failed to read initial state file '{path}' for state '{tensor}': {e.strerror}") from None
    size = ELEMENT_SIZE.get(datatype)
    if size:  # BYTES files hold length-prefixed elements, checked when the state is built
        expected = size * math.prod(dims)
        if len(data) != expected:
            raise invalid_arg(f"unexpected size {len(data)} of initial state file '{path}' for state '{tensor}', "
                              f"expected {expected} bytes")
    return data


def _backend_config(config: Any) -> Any:
    """The config the backend sees: implicit-state outputs that are not in `output` are added to it,
    so that the backend produces them for the sequence batcher (Triton's backends read the `state`
    block themselves; ours read only `output`). The model's own config stays untouched."""
    if not config.HasField("sequence_batching") or not config.sequence_batching.state:
        return config
    names = {o.name for o in config.output}
    missing = [s for s in config.sequence_batching.state if s.output_name not in names]
    if not missing:
        return config
    view = type(config)()
    view.CopyFrom(config)
    for state in missing:
        view.output.add(name=state.output_name, data_type=state.data_type, dims=list(state.dims))
    return view


def _enum_name(message: Any, field_name: str) -> str:
    """An enum field's value name (`TYPE_INT32`), read through the message's own descriptor."""
    enum = message.DESCRIPTOR.fields_by_name[field_name].enum_type
    return enum.values_by_number[getattr(message, field_name)].name


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
