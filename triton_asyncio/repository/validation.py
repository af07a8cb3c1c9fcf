"""Triton's config validation with its messages: ValidateModelConfig and ValidateModelIOConfig.

Rules: read-only checks over a normalised inference.ModelConfig; every failure is INVALID_ARG with
Triton's text. Defaults belong to normalize.py, the ensemble data flow to ensemble_config.py.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from triton_asyncio.errors import TritonError, invalid_arg
from triton_asyncio.pb import model_config_pb2 as mc

from .ensemble_config import validate_ensemble

# Backends Triton knows, with the platforms each accepts (GetBackendType vs GetBackendTypeFromPlatform).
_KNOWN_BACKEND_PLATFORMS = {
    "tensorflow": {"tensorflow_graphdef", "tensorflow_savedmodel"},
    "tensorrt": {"tensorrt_plan"},
    "onnxruntime": {"onnxruntime_onnx"},
    "pytorch": {"pytorch_libtorch", "libtorch", "torch_aoti"},
}
_Control = mc.ModelSequenceBatching.Control
_CORRID_TYPES = (mc.TYPE_UINT64, mc.TYPE_INT64, mc.TYPE_UINT32, mc.TYPE_INT32, mc.TYPE_STRING)


def validate_config(config: Any) -> None:
    """ValidateModelConfig: identity, backend/platform, batching, sequence, ensemble, cache, metrics."""
    name = config.name
    if not name:
        raise invalid_arg("model configuration must specify 'name'")
    if not config.backend:
        if config.platform != "ensemble":
            raise invalid_arg(f"unexpected platform type '{config.platform}' for {name}")
    elif config.platform == "ensemble":
        raise invalid_arg(f"Ensemble model '{name}' must have platform type '{config.platform}' and empty "
                          f"backend type")
    allowed = _KNOWN_BACKEND_PLATFORMS.get(config.backend)
    if allowed is not None and config.platform not in allowed:
        raise invalid_arg(f"unexpected 'platform' and 'backend' pair, got:{config.platform}, {config.backend}")
    if config.max_batch_size < 0:
        raise invalid_arg(f"'max_batch_size' must be non-negative value for {name}")
    if not config.HasField("version_policy"):
        raise invalid_arg(f"must specify 'version policy' for {name}")
    if config.HasField("dynamic_batching"):
        _validate_dynamic_batching(config)
    if config.HasField("sequence_batching"):
        _validate_sequence_batching(config)
    if config.HasField("ensemble_scheduling"):
        validate_ensemble(config)
    elif config.platform == "ensemble":
        raise invalid_arg(f"ensemble scheduling must be set for ensemble {name} whose platform is ensemble")
    if config.model_transaction_policy.decoupled and config.response_cache.enable:
        raise invalid_arg(f"Response Cache does not currently support model {name} with 'decoupled' "
                          f"transaction policy. Please disable the response cache.")
    if config.HasField("model_metrics"):
        _validate_model_metrics(config.model_metrics)


def _validate_dynamic_batching(config: Any) -> None:
    db, name = config.dynamic_batching, config.name
    for size in db.preferred_batch_size:
        if size <= 0:
            raise invalid_arg(f"dynamic batching preferred size must be positive for {name}")
        if size > config.max_batch_size:
            raise invalid_arg(f"dynamic batching preferred size must be <= max batch size for {name}")
    levels = db.priority_levels
    if levels != 0:
        if db.default_priority_level == 0 or db.default_priority_level > levels:
            raise invalid_arg(f"default priority level must be in range [1, {levels}] for {name}")
        if any(key == 0 or key > levels for key in db.priority_queue_policy):
            raise invalid_arg(f"priority queue policy must have priority level in range [1, {levels}] for {name}")
    if db.preserve_ordering:
        if levels > 1:
            raise invalid_arg(f"Only one priority level is allowed when 'preserve_ordering' is true for {name}")
        for policy in (db.default_queue_policy, *db.priority_queue_policy.values()):
            if policy.default_timeout_microseconds != 0 and policy.timeout_action == mc.ModelQueuePolicy.DELAY:
                raise invalid_arg(f"Queue policy can not have DELAY as timeout action when 'preserve_ordering' "
                                  f"is true for {name}")


def _validate_sequence_batching(config: Any) -> None:
    sb, name = config.sequence_batching, config.name
    if config.response_cache.enable:
        raise invalid_arg(f"Response Cache does not currently support model {name} with sequence batching "
                          f"scheduler. Please disable the response cache.")
    for kind in (_Control.CONTROL_SEQUENCE_START, _Control.CONTROL_SEQUENCE_END, _Control.CONTROL_SEQUENCE_READY):
        sequence_control(sb, name, kind)
    tensor, dtype = sequence_control(sb, name, _Control.CONTROL_SEQUENCE_CORRID)
    if tensor and dtype not in _CORRID_TYPES:
        raise invalid_arg(f"unexpected data type for control CONTROL_SEQUENCE_CORRID for {name}. Allowed data "
                          f"types are TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32 and TYPE_STRING")
    if sb.HasField("oldest"):
        for size in sb.oldest.preferred_batch_size:
            if size <= 0:
                raise invalid_arg(f"sequence batching preferred batch size must be positive for {name}")
            if size > config.max_batch_size:
                raise invalid_arg(f"sequence batching preferred batch size must be <= max batch size for {name}")
    if sb.HasField("direct") and not 0.0 <= sb.direct.minimum_slot_utilization <= 1.0:
        raise invalid_arg(f"sequence batching minimum slot utilization must be in range (0.0, 1.0] for {name}")
    if sb.HasField("oldest") and sb.oldest.max_candidate_sequences < 0:
        raise invalid_arg(f"sequence batching max candidate sequences must be non-negative for {name}")
    _validate_sequence_states(config)


def _validate_sequence_states(config: Any) -> None:
    """Implicit state: named, typed, shaped, unique, not also a model input or control, and at most
    one well-formed initial state of the same type."""
    sb, name = config.sequence_batching, config.name
    taken = {io.name for io in config.input} | {c.name for c in sb.control_input}
    inputs: set[str] = set()
    outputs: set[str] = set()
    for state in sb.state:
        if not state.input_name or not state.output_name:
            raise invalid_arg(f"sequence batching state must specify both 'input_name' and 'output_name' for {name}")
        if state.data_type == mc.TYPE_INVALID:
            raise invalid_arg(f"sequence batching state '{state.input_name}' must specify 'data_type' for {name}")
        if not state.dims:
            raise invalid_arg(f"sequence batching state '{state.input_name}' must specify 'dims' for {name}")
        if state.input_name in inputs or state.output_name in outputs:
            raise invalid_arg(f"sequence batching state '{state.input_name}' is specified more than once for {name}")
        if state.input_name in taken:
            raise invalid_arg(f"sequence batching state input '{state.input_name}' must not also be a model input "
                              f"or a control input for {name}")
        inputs.add(state.input_name)
        outputs.add(state.output_name)
        _validate_initial_state(state, name)


def _validate_initial_state(state: Any, model: str) -> None:
    if len(state.initial_state) > 1:
        raise invalid_arg(f"sequence batching state '{state.input_name}' must have at most one 'initial_state' "
                          f"for {model}")
    for init in state.initial_state:
        where = f"initial state '{init.name}' of sequence batching state '{state.input_name}' for {model}"
        if not init.name:
            raise invalid_arg(f"initial state of sequence batching state '{state.input_name}' must specify 'name' "
                              f"for {model}")
        if init.data_type != state.data_type:
            raise invalid_arg(f"'data_type' of the {where} must match the state's 'data_type'")
        if init.WhichOneof("state_data") is None:
            raise invalid_arg(f"{where} must specify either 'zero_data' or 'data_file'")
        if any(d < 0 for d in init.dims):
            raise invalid_arg(f"{where} must specify fixed 'dims'")
        if len(init.dims) != len(state.dims) or any(s not in (-1, d) for s, d in zip(state.dims, init.dims,
                                                                                     strict=True)):
            raise invalid_arg(f"'dims' of the {where} do not match the state's 'dims'")


def sequence_control(sb: Any, model: str, kind: int) -> tuple[str, int]:
    """(tensor name, data type) of one control kind ("" when absent), checked as Triton checks it.
    The type is TYPE_INT32/FP32/BOOL from the *_false_true list, or `data_type` for CORRID."""
    kname = _Control.Kind.Name(kind)
    seen: set[str] = set()
    found, dtype = "", mc.TYPE_INVALID
    for control_input in sb.control_input:
        if not control_input.name:
            raise invalid_arg(f"sequence batching control tensor must have a name for {model}")
        if control_input.name in seen:
            raise invalid_arg(f"sequence batching control tensor '{control_input.name}' is specified for "
                              f"multiple control kinds for {model}")
        seen.add(control_input.name)
        for control in control_input.control:
            if control.kind != kind:
                continue
            if found:
                raise invalid_arg(f"sequence batching specifies multiple {kname} tensors for {model}")
            found = control_input.name
            dtype = _control_type(control, kind, kname, model)
    return found, dtype


def _control_type(control: Any, kind: int, kname: str, model: str) -> int:
    lists = (("int32_false_true", mc.TYPE_INT32), ("fp32_false_true", mc.TYPE_FP32),
             ("bool_false_true", mc.TYPE_BOOL))
    given = [(field, dtype) for field, dtype in lists if len(getattr(control, field))]
    if kind == _Control.CONTROL_SEQUENCE_CORRID:
        if given:
            raise invalid_arg(f"sequence batching must not specify either 'int32_false_true', 'fp32_false_true' "
                              f"or 'bool_false_true' for {kname} for {model}")
        return control.data_type
    if not given:
        raise invalid_arg(f"sequence batching must specify either 'int32_false_true', 'fp32_false_true' or "
                          f"'bool_false_true' for {kname} for {model}")
    if len(given) > 1:
        raise invalid_arg(f"sequence batching specifies more than one from 'int32_false_true', "
                          f"'fp32_false_true' and 'bool_false_true' for {kname} for {model}")
    field, dtype = given[0]
    if len(getattr(control, field)) != 2:
        raise invalid_arg(f"sequence batching control '{field}' must have exactly 2 entries for {kname} "
                          f"for {model}")
    return dtype


def _validate_model_metrics(metrics: Any) -> None:
    for control in metrics.metric_control:
        if not control.HasField("metric_identifier"):
            raise invalid_arg("metric control must specify 'metric_identifier'")
        if not control.metric_identifier.family:
            raise invalid_arg("metric identifier must specify non-empty 'family'")
        if not control.HasField("histogram_options"):
            raise invalid_arg("metric control must specify 'histogram_options'")
        if not control.histogram_options.buckets:
            raise invalid_arg("histogram options must specify non-empty 'buckets'")


def validate_io(config: Any) -> None:
    """ValidateModelIOConfig: every input and output, then batch inputs/outputs; messages end ' for <model>'."""
    try:
        for io in config.input:
            _validate_io_shape(io, config.max_batch_size, "model input ")
            if io.format in (mc.ModelInput.FORMAT_NHWC, mc.ModelInput.FORMAT_NCHW) and len(io.dims) != 3:
                raise invalid_arg("model input NHWC/NCHW require 3 dims")
            _validate_trt_only(io, config.platform, "input")
        for io in config.output:
            _validate_io_shape(io, config.max_batch_size, "model output ")
            _validate_trt_only(io, config.platform, "output")
        _validate_batch_io(config)
    except TritonError as exc:
        raise TritonError(exc.code, f"{exc.message} for {config.name}") from None


def _validate_trt_only(io: Any, platform: str, kind: str) -> None:
    if platform != "tensorrt_plan" and io.is_shape_tensor:
        raise invalid_arg("shape tensors are only supported for TensorRT platform")
    if io.is_non_linear_format_io:
        if platform != "tensorrt_plan":
            raise invalid_arg("Non-linear IO format is only supported for the TensorRT platform")
        if len(io.dims) != 3:
            raise invalid_arg(f"Non-linear IO format {kind} requires 3 dims")


def _element_count(dims: Iterable[int]) -> int:
    """Triton's GetElementCount: 0 for no dims, -1 if any dim is variable, else the product."""
    count = 0
    for d in dims:
        if d == -1:
            return -1
        count = d if count == 0 else count * d
    return count


def _segments(dims: Iterable[int]) -> list[int]:
    """Element counts of the runs between variable-size (-1) dims."""
    out, current = [], 1
    for d in dims:
        if d == -1:
            out.append(current)
            current = 1
        else:
            current *= d
    return [*out, current]


def _validate_io_shape(io: Any, max_batch_size: int, prefix: str) -> None:
    if not io.name:
        raise invalid_arg(f"{prefix}must specify 'name'")
    p = f"{prefix}'{io.name}' "
    if io.data_type == mc.TYPE_INVALID:
        raise invalid_arg(f"{p}must specify 'data_type'")
    if not io.dims:
        raise invalid_arg(f"{p}must specify 'dims'")
    has_reshape = io.HasField("reshape")
    if has_reshape and not io.reshape.shape and max_batch_size == 0:
        raise invalid_arg(f"{p}cannot have empty reshape for non-batching model as scalar tensors are not supported")
    if any(d < 1 and d != -1 for d in io.dims):
        raise invalid_arg(f"{p}dimension must be integer >= 1, or -1 to indicate a variable-size dimension")
    if not has_reshape:
        return
    if any(d < 1 and d != -1 for d in io.reshape.shape):
        raise invalid_arg(f"{p}reshape dimensions must be integer >= 1, or -1 to indicate a variable-size dimension")
    dims_size, reshape_size = _element_count(io.dims), _element_count(io.reshape.shape)
    if dims_size != reshape_size and (reshape_size != 0 or dims_size != 1):
        raise invalid_arg(f"{p}has different size for dims and reshape")
    if dims_size == -1:
        ours, theirs = _segments(io.dims), _segments(io.reshape.shape)
        if len(ours) != len(theirs):
            raise invalid_arg(f"{p}has different number of variable-size dimensions for dims and reshape")
        if ours != theirs:
            raise invalid_arg(f"{p}has different size for dims and reshape")


def _validate_batch_io(config: Any) -> None:
    inputs = {io.name for io in config.input}
    outputs = {io.name for io in config.output}
    for bio in config.batch_input:
        kind = mc.BatchInput.Kind.Name(bio.kind)
        if len(bio.source_input) != 1:
            raise invalid_arg(f"batch input kind '{kind}' expects 1 source input, got {len(bio.source_input)}")
        if bio.data_type not in (mc.TYPE_INT32, mc.TYPE_FP32):
            raise invalid_arg("batch input data type must be TYPE_INT32 or TYPE_FP32")
        _check_sources(bio.source_input, inputs)
    for bio in config.batch_output:
        kind = mc.BatchOutput.Kind.Name(bio.kind)
        if len(bio.source_input) != 1:
            raise invalid_arg(f"batch output kind '{kind}' expects 1 source input, got {len(bio.source_input)}")
        _check_sources(bio.source_input, inputs)
        targets: set[str] = set()
        for target in bio.target_name:
            if target not in outputs:
                raise invalid_arg(f"unknown target output name '{target}'")
            if target in targets:
                raise invalid_arg(f"target output name '{target}' can only be specified once")
            targets.add(target)


def _check_sources(sources: Iterable[str], inputs: set[str]) -> None:
    for source in sources:
        if source not in inputs:
            raise invalid_arg(f"unknown source input name '{source}'")
