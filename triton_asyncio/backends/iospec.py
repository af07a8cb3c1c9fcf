"""Plain views of a model config's inputs and outputs, read once at load for the backends' hot paths.

Rules: attribute access on the `inference.ModelConfig` message only, enums resolved through the
message's own descriptor, so no backend has to import the generated pb modules.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.datatype import config_to_wire


@dataclass(frozen=True, slots=True)
class IoSpec:
    name: str
    config_type: str  # "TYPE_INT32"
    datatype: str  # wire name, "INT32" ("" when the config type is unknown)
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None  # None when the config has no reshape
    optional: bool = False


def enum_name(message: Any, field: str) -> str:
    """The enum value's name of `message.<field>` ("TYPE_FP32", "KIND_GPU")."""
    enum_type = message.DESCRIPTOR.fields_by_name[field].enum_type
    value = enum_type.values_by_number.get(getattr(message, field))
    return value.name if value is not None else ""


def set_enum(message: Any, field: str, name: str) -> None:
    """Set `message.<field>` from an enum value's name."""
    enum_type = message.DESCRIPTOR.fields_by_name[field].enum_type
    setattr(message, field, enum_type.values_by_name[name].number)


def io_spec(io: Any) -> IoSpec:
    config_type = enum_name(io, "data_type")
    reshape = tuple(io.reshape.shape) if io.HasField("reshape") else None
    return IoSpec(io.name, config_type, config_to_wire(config_type), tuple(io.dims), reshape,
                  bool(getattr(io, "optional", False)))


def inputs_of(config: Any) -> list[IoSpec]:
    return [io_spec(io) for io in config.input]


def outputs_of(config: Any) -> list[IoSpec]:
    return [io_spec(io) for io in config.output]


def add_io(ios: Any, name: str, config_type: str, model_dims: Any, batching: bool) -> Any:
    """Auto-complete one input or output from the model's own shape (its batch dim dropped when the
    model batches); a scalar per batch item becomes dims [1] with an empty reshape, as Triton does."""
    io = ios.add()
    io.name = name
    set_enum(io, "data_type", config_type)
    dims = list(model_dims[1:] if batching else model_dims)
    if not dims:
        dims = [1]
        if batching:
            io.reshape.SetInParent()
    io.dims.extend(dims)
    return io


def shape_str(shape: Any) -> str:
    """Triton's ShapeToString: `[-1,16]`."""
    return "[" + ",".join(str(d) for d in shape) + "]"
