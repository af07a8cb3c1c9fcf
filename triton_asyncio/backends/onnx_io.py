"""ONNX model IO versus the model config: auto-complete and validation, as Triton's onnxruntime backend does.

Rules: pure functions over `OnnxIo` records (name, ONNX type string, dims with -1 for dynamic) and
the config message; no onnxruntime import here, so all of it is testable without a session.
Messages are the reference backend's, word for word, because users grep their logs for them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..core.datatype import config_to_wire
from ..errors import internal, invalid_arg
from .iospec import IoSpec, add_io, io_spec, shape_str

log = logging.getLogger("triton_asyncio.backends.onnxruntime")

ONNX_TO_CONFIG: dict[str, str] = {
    "tensor(bool)": "TYPE_BOOL", "tensor(uint8)": "TYPE_UINT8", "tensor(uint16)": "TYPE_UINT16",
    "tensor(uint32)": "TYPE_UINT32", "tensor(uint64)": "TYPE_UINT64", "tensor(int8)": "TYPE_INT8",
    "tensor(int16)": "TYPE_INT16", "tensor(int32)": "TYPE_INT32", "tensor(int64)": "TYPE_INT64",
    "tensor(float16)": "TYPE_FP16", "tensor(float)": "TYPE_FP32", "tensor(double)": "TYPE_FP64",
    "tensor(bfloat16)": "TYPE_BF16", "tensor(string)": "TYPE_STRING",
}


@dataclass(frozen=True, slots=True)
class OnnxIo:
    name: str
    onnx_type: str  # "tensor(float)"
    dims: tuple[int, ...]  # symbolic or unknown dims are -1

    @property
    def config_type(self) -> str:
        return ONNX_TO_CONFIG.get(self.onnx_type, "TYPE_INVALID")


def from_node_args(args: Any) -> dict[str, OnnxIo]:
    """onnxruntime NodeArgs (session.get_inputs()) -> OnnxIo by name, in model order."""
    return {a.name: OnnxIo(a.name, a.type, tuple(d if isinstance(d, int) and d >= 0 else -1 for d in a.shape))
            for a in args}


def auto_complete(config: Any, inputs: dict[str, OnnxIo], outputs: dict[str, OnnxIo],
                  default_max_batch_size: int) -> None:
    """Fill max_batch_size, dynamic_batching, inputs and outputs in place (spec 4.5)."""
    _complete_max_batch(config, inputs, outputs, default_max_batch_size)
    if not len(config.input):
        _complete_io(config, config.input, inputs)
    if not len(config.output):
        _complete_io(config, config.output, outputs)


def _complete_max_batch(config: Any, inputs: dict[str, OnnxIo], outputs: dict[str, OnnxIo],
                        default_max_batch_size: int) -> None:
    ios = [*inputs.values(), *outputs.values()]
    can_batch = all(io.dims and io.dims[0] == -1 for io in ios)
    if not can_batch:
        if config.max_batch_size != 0:
            raise invalid_arg(f"autofill failed for model '{config.name}': model does not support batching "
                              f"while non-zero max_batch_size is specified")
        return
    if config.max_batch_size == 0:
        config.max_batch_size = max(default_max_batch_size, 0)
        log.warning("autofilled max_batch_size to %d for model '%s' since batching is supporrted but no "
                    "max_batch_size is specified in model configuration. Must specify max_batch_size to "
                    "utilize autofill with a larger max batch size", config.max_batch_size, config.name)
    if config.max_batch_size > 1 and not (config.HasField("dynamic_batching")
                                          or config.HasField("sequence_batching")):
        config.dynamic_batching.SetInParent()


def _complete_io(config: Any, ios: Any, infos: dict[str, OnnxIo]) -> None:
    batching = config.max_batch_size > 0
    for info in infos.values():
        add_io(ios, info.name, info.config_type, info.dims, batching)


def validate(config: Any, inputs: dict[str, OnnxIo], outputs: dict[str, OnnxIo],
             overridable: dict[str, OnnxIo] | None = None) -> None:
    """Raise Triton's load error when the config's IO does not fit the model's."""
    name, mbs = config.name, config.max_batch_size
    expected = _expected_input_count(config)
    if len(inputs) != expected:
        raise invalid_arg(f"unable to load model '{name}', configuration expects {expected} inputs, "
                          f"model provides {len(inputs)}")
    allowed = {**inputs, **(overridable or {})}
    for spec in (io_spec(io) for io in config.input):
        if spec.optional and mbs != 0:
            raise invalid_arg(f"unable to load model '{name}', optional input '{spec.name}' is not "
                              f"supported for models that support batching")
        _check_io(name, mbs, spec, allowed, "input")
    for spec in (io_spec(io) for io in config.output):
        _check_io(name, mbs, spec, outputs, "output")


def _expected_input_count(config: Any) -> int:
    count = sum(1 for io in config.input if not io.optional) + len(config.batch_input)
    if config.HasField("sequence_batching"):
        count += len(config.sequence_batching.control_input) + len(config.sequence_batching.state)
    return count


def _check_io(model: str, mbs: int, spec: IoSpec, infos: dict[str, OnnxIo], kind: str) -> None:
    info = infos.get(spec.name)
    if info is None:
        raise invalid_arg(f"unexpected inference {kind} '{spec.name}', allowed {kind}s are: "
                          + ", ".join(sorted(infos)))
    if spec.config_type not in ONNX_TO_CONFIG.values():
        raise internal(f"unsupported datatype {spec.config_type} for {kind} '{spec.name}' for model '{model}'")
    if spec.config_type != info.config_type:
        raise invalid_arg(f"unable to load model '{model}', configuration expects datatype {spec.config_type} "
                          f"for {kind} '{spec.name}', model provides TYPE_{config_to_wire(info.config_type) or 'INVALID'}")
    dims = spec.reshape if spec.reshape is not None else spec.dims
    if info.dims:
        compare_dims(model, spec.name, info.dims, dims, mbs)
    elif mbs == 0 and any(d != 1 for d in dims):
        raise invalid_arg(f"unable to load model '{model}', scalar tensor '{spec.name}', should only provide 1 "
                          f"in the model configuration when the model doesn't support batching. Model "
                          f"configuration provided: {shape_str(dims)}.")


def compare_dims(model: str, tensor: str, model_shape: tuple[int, ...], dims: Any, mbs: int) -> None:
    """Triton's CompareDimsSupported (compare_exact=false)."""
    prefix = f"model '{model}', tensor '{tensor}': "
    if mbs > 0:
        if not model_shape or model_shape[0] != -1:
            raise invalid_arg(prefix + "for the model to support batching the shape should have at least 1 "
                              "dimension and the first dimension must be -1; but shape expected by the model "
                              "is " + shape_str(model_shape))
        full = [-1, *dims]
        if not _dims_match(model_shape, full):
            raise invalid_arg(prefix + f"the model expects {len(model_shape)} dimensions (shape "
                              f"{shape_str(model_shape)}) but the model configuration specifies {len(full)} "
                              "dimensions (an initial batch dimension because max_batch_size > 0 followed by "
                              f"the explicit tensor shape, making complete shape {shape_str(full)})")
    elif not _dims_match(model_shape, list(dims)):
        raise invalid_arg(prefix + f"the model expects {len(model_shape)} dimensions (shape "
                          f"{shape_str(model_shape)}) but the model configuration specifies {len(dims)} "
                          f"dimensions (shape {shape_str(dims)})")


def _dims_match(model_shape: tuple[int, ...], dims: list[int]) -> bool:
    return len(model_shape) == len(dims) and all(
        m == d for m, d in zip(model_shape, dims, strict=True) if m != -1 and d != -1)
