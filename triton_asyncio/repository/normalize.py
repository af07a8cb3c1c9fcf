"""Triton's load-time config pipeline as pure functions over inference.ModelConfig (spec 4.3, 4.4).

Rules: defaults and normalisation live here and run in Triton's order, calling validation.py for
the checks; backend auto-complete (each backend) and backend/platform inference from file names
(backends.registry) do not. Hot paths read the frozen specs built by `model_spec`.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from triton_asyncio.core.datatype import ELEMENT_SIZE, config_to_wire
from triton_asyncio.errors import ErrorCode, TritonError, invalid_arg
from triton_asyncio.pb import model_config_pb2 as mc

from .validation import validate_config, validate_io

SEQUENCE_IDLE_DEFAULT_US = 1_000_000
MIN_COMPUTE_CAPABILITY = 6.0
_CPU_COUNT_2_BACKENDS = frozenset({"onnxruntime", "tensorflow"})
_Group = mc.ModelInstanceGroup


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: str  # wire name: "INT32", "BYTES"
    dims: tuple[int, ...]  # without the batch dimension
    reshape: tuple[int, ...] | None = None
    optional: bool = False
    is_shape_tensor: bool = False
    allow_ragged_batch: bool = False


@dataclass(frozen=True, slots=True)
class BatchingSpec:
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_us: int
    preserve_ordering: bool
    priority_levels: int
    default_priority_level: int


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    platform: str
    backend: str
    max_batch_size: int
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    decoupled: bool = False
    dynamic_batching: BatchingSpec | None = None
    # name -> (datatype, dims as a list, bytes per batch item) when every input is required,
    # fixed-size, of a fixed-width type, with no reshape and no shape tensor: validation's fast path
    plain_inputs: dict[str, tuple[str, list[int], int]] | None = None


def normalize_and_validate(config: Any, *, name: str = "", auto_complete: bool = True,
                           gpus: Iterable[int] = (), min_compute_capability: float = MIN_COMPUTE_CAPABILITY) -> None:
    """Everything after backend auto-complete, in place: name check, defaults, validation, instance
    groups, IO validation. `gpus` are the visible GPU ids (none: KIND_AUTO becomes KIND_CPU).
    `auto_complete` is accepted for the loader's sake: IO is validated either way at this point."""
    if name:
        if not config.name:
            config.name = name
        elif config.name != name:
            raise invalid_arg(f"unexpected directory name '{name}' for model '{config.name}', "
                              f"directory name must equal model name")
    normalize_config(config)
    validate_config(config)
    normalize_instance_groups(config, gpus)
    validate_instance_groups(config, gpus, min_compute_capability)
    validate_io(config)


def normalize_config(config: Any) -> None:
    """NormalizeModelConfig: version policy, preferred batch sizes, sequence idle, pinned memory."""
    if not config.HasField("version_policy"):
        config.version_policy.latest.num_versions = 1
    if config.HasField("dynamic_batching") and not config.dynamic_batching.preferred_batch_size:
        if config.max_batch_size > 0:
            config.dynamic_batching.preferred_batch_size.append(config.max_batch_size)
    if config.HasField("sequence_batching"):
        sb = config.sequence_batching
        if sb.max_sequence_idle_microseconds == 0:
            sb.max_sequence_idle_microseconds = SEQUENCE_IDLE_DEFAULT_US
        if sb.HasField("oldest") and not sb.oldest.preferred_batch_size and config.max_batch_size > 0:
            sb.oldest.preferred_batch_size.append(config.max_batch_size)
    if not config.HasField("ensemble_scheduling"):
        if not config.optimization.HasField("input_pinned_memory"):
            config.optimization.input_pinned_memory.enable = True
        if not config.optimization.HasField("output_pinned_memory"):
            config.optimization.output_pinned_memory.enable = True


def normalize_instance_groups(config: Any, gpus: Iterable[int] = ()) -> None:
    """NormalizeInstanceGroup (no backend-preferred groups): one default group, names, kinds, counts, gpus."""
    if config.HasField("ensemble_scheduling"):
        return
    supported = sorted(set(gpus))
    if not config.instance_group:
        config.instance_group.add(name=config.name)
    for index, group in enumerate(config.instance_group):
        if not group.name:
            group.name = f"{config.name}_{index}"
        if group.kind == _Group.KIND_AUTO:
            ok = supported and all(g in supported for g in group.gpus)
            group.kind = _Group.KIND_GPU if ok else _Group.KIND_CPU
        if group.count < 1:
            cpu2 = group.kind == _Group.KIND_CPU and config.backend in _CPU_COUNT_2_BACKENDS
            group.count = 2 if cpu2 else 1
        if group.kind == _Group.KIND_GPU and not group.gpus:
            group.gpus.extend(supported)


def validate_instance_groups(config: Any, gpus: Iterable[int] = (),
                             min_compute_capability: float = MIN_COMPUTE_CAPABILITY) -> None:
    """ValidateInstanceGroup, as a GPU-enabled Triton build runs it."""
    if config.HasField("ensemble_scheduling"):
        return
    if not config.instance_group:
        raise invalid_arg(f"must specify one or more 'instance group's for {config.name}")
    supported = sorted(set(gpus))
    for group in config.instance_group:
        where = f"instance group {group.name} of model {config.name}"
        if group.kind == _Group.KIND_MODEL and group.gpus:
            raise invalid_arg(f"{where} has kind KIND_MODEL but specifies one or more GPUs")
        if group.kind == _Group.KIND_CPU and group.gpus:
            raise invalid_arg(f"{where} has kind KIND_CPU but specifies one or more GPUs")
        if group.kind == _Group.KIND_AUTO:
            raise TritonError(ErrorCode.INTERNAL, f"{where} has unexpected kind KIND_AUTO")
        if group.kind == _Group.KIND_GPU:
            if not group.gpus:
                raise invalid_arg(f"{where} has kind KIND_GPU but " +
                                  ("specifies no GPUs" if supported else "no GPUs are available"))
            for gid in group.gpus:
                if gid not in supported:
                    raise invalid_arg(f"{where} specifies invalid or unsupported gpu id {gid}. GPUs with at least "
                                      f"the minimum required CUDA compute compatibility of "
                                      f"{min_compute_capability:.6f} are: {', '.join(map(str, supported))}")
        _validate_profiles(config, group, where)


def _validate_profiles(config: Any, group: Any, where: str) -> None:
    if not group.profile:
        return
    if config.platform != "tensorrt_plan":
        raise invalid_arg(f"{where} and platform {config.platform}specifies profile field which is only "
                          f"supported for TensorRT models")
    for profile in group.profile:
        if not profile:
            raise invalid_arg("profile name must not be empty")
        digits = profile.strip()
        if not (digits.lstrip("+-")[:1].isdigit()):
            raise invalid_arg(f"unable to parse '{profile}': stoi")
        if digits.startswith("-"):
            raise invalid_arg(f"{where} and platform {config.platform} specifies invalid profile {profile}. The "
                              f"field should contain the string representation of a non-negative integer.")


def tensor_spec(io: Any) -> TensorSpec:
    """The hot-path view of one ModelInput or ModelOutput."""
    return TensorSpec(
        name=io.name,
        datatype=config_to_wire(mc.DataType.Name(io.data_type)),
        dims=tuple(io.dims),
        reshape=tuple(io.reshape.shape) if io.HasField("reshape") else None,
        optional=getattr(io, "optional", False),
        is_shape_tensor=io.is_shape_tensor,
        allow_ragged_batch=getattr(io, "allow_ragged_batch", False),
    )


def model_spec(config: Any) -> ModelSpec:
    """Freeze what the request path needs from a normalised, validated config."""
    batching = None
    if config.HasField("dynamic_batching"):
        db = config.dynamic_batching
        batching = BatchingSpec(tuple(db.preferred_batch_size), db.max_queue_delay_microseconds,
                                db.preserve_ordering, db.priority_levels, db.default_priority_level)
    inputs = {io.name: tensor_spec(io) for io in config.input}
    return ModelSpec(
        name=config.name,
        platform=config.platform,
        backend=config.backend,
        max_batch_size=config.max_batch_size,
        inputs=inputs,
        outputs={io.name: tensor_spec(io) for io in config.output},
        decoupled=config.model_transaction_policy.decoupled,
        dynamic_batching=batching,
        plain_inputs=_plain_inputs(inputs),
    )


def _plain_inputs(inputs: dict[str, TensorSpec]) -> dict[str, tuple[str, list[int], int]] | None:
    plain = {}
    for name, t in inputs.items():
        size = ELEMENT_SIZE.get(t.datatype, 0)
        if (not size or t.optional or t.is_shape_tensor or t.reshape is not None or t.allow_ragged_batch
                or any(d < 0 for d in t.dims)):
            return None
        for d in t.dims:
            size *= d
        plain[name] = (t.datatype, list(t.dims), size)
    return plain
