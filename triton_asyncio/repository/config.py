"""config.pbtxt (protobuf text format) -> inference.ModelConfig, and ModelConfig -> Triton's /config JSON.

Rules: reading and rendering only; defaults, normalisation and validation live in normalize.py.
The JSON follows spec 4.7: proto field names in declaration order, every no-presence field printed,
unset sub-messages omitted, enums by name, and Triton's list of 64-bit fields turned into numbers.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from triton_asyncio.errors import ErrorCode, TritonError
from triton_asyncio.pb import model_config_pb2

ModelConfig = model_config_pb2.ModelConfig

CONFIG_FILENAME = "config.pbtxt"
CONFIGS_DIRNAME = "configs"

# The 64-bit fields Triton rewrites from JSON strings to numbers (spec 4.7); "*" = every list item
# or map value. Any other 64-bit field keeps protobuf's string rendering, as in Triton.
_INT64_AS_NUMBER: tuple[tuple[str, ...], ...] = (
    ("input", "*", "dims"),
    ("input", "*", "reshape", "shape"),
    ("output", "*", "dims"),
    ("output", "*", "reshape", "shape"),
    ("version_policy", "specific", "versions"),
    ("dynamic_batching", "max_queue_delay_microseconds"),
    ("dynamic_batching", "priority_levels"),
    ("dynamic_batching", "default_priority_level"),
    ("dynamic_batching", "default_queue_policy", "default_timeout_microseconds"),
    ("dynamic_batching", "priority_queue_policy", "*", "default_timeout_microseconds"),
    ("sequence_batching", "max_sequence_idle_microseconds"),
    ("sequence_batching", "direct", "max_queue_delay_microseconds"),
    ("sequence_batching", "oldest", "max_queue_delay_microseconds"),
    ("sequence_batching", "state", "*", "dims"),
    ("ensemble_scheduling", "step", "*", "model_version"),
    ("model_warmup", "*", "inputs", "*", "dims"),
)


def empty_config() -> ModelConfig:
    """A blank ModelConfig, for a model directory without a config file (auto-complete fills it)."""
    return ModelConfig()


def config_path(model_dir: str | Path, config_name: str | None = None) -> Path | None:
    """The config file for a model directory: `configs/<name>.pbtxt` when `--model-config-name`
    names one that exists, else `config.pbtxt`; None when neither exists (auto-complete case)."""
    model_dir = Path(model_dir)
    if config_name:
        custom = model_dir / CONFIGS_DIRNAME / f"{config_name}.pbtxt"
        if custom.is_file():
            return custom
    default = model_dir / CONFIG_FILENAME
    return default if default.is_file() else None


def parse_config(text: str | bytes, path: str | Path = CONFIG_FILENAME) -> ModelConfig:
    """Parse text-format bytes as Triton does; any failure is INTERNAL `failed to read text proto from <path>`."""
    try:
        return text_format.Parse(text, ModelConfig())
    except (text_format.ParseError, ValueError) as exc:  # ValueError: bad UTF-8, or an out-of-range enum number
        raise TritonError(ErrorCode.INTERNAL, f"failed to read text proto from {path}") from exc


def read_config(model_dir: str | Path, config_name: str | None = None) -> ModelConfig | None:
    """Read the model's config file; None when the directory has none (the caller decides if that is allowed)."""
    path = config_path(model_dir, config_name)
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TritonError(ErrorCode.INTERNAL, f"failed to read text proto from {path}") from exc
    return parse_config(data, path)


def config_to_text(config: ModelConfig) -> str:
    """Text format, for logs (Triton prints the final config at load with verbose logging)."""
    return text_format.MessageToString(config)


def config_json_body(config: ModelConfig) -> bytes:
    """The /config response body: compact JSON, or b"" for an all-default config (Triton's quirk)."""
    if config.ByteSize() == 0:
        return b""
    return json.dumps(config_to_json(config), separators=(",", ":")).encode()


def config_to_json(config: ModelConfig) -> dict[str, Any]:
    """The dict Triton serves at GET /v2/models/<m>/config (and hands the Python backend).
    An all-default config gives {} here; `config_json_body` turns that into an empty body."""
    if config.ByteSize() == 0:
        return {}
    raw = json_format.MessageToDict(
        config, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    ordered = _in_declaration_order(raw, config.DESCRIPTOR)
    for path in _INT64_AS_NUMBER:
        _int64_to_number(ordered, path)
    return ordered


def _in_declaration_order(obj: dict[str, Any], desc: Descriptor) -> dict[str, Any]:
    """Rebuild a message dict with keys in .proto declaration order (MessageToDict uses set-fields-first)."""
    out: dict[str, Any] = {}
    for field in desc.fields:
        if field.name in obj:
            out[field.name] = _order_value(obj[field.name], field)
    return out


def _order_value(value: Any, field: FieldDescriptor) -> Any:
    if field.message_type is None:
        return value
    if field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        return {k: _order_value(v, value_field) for k, v in value.items()}
    if field.label == FieldDescriptor.LABEL_REPEATED:
        return [_in_declaration_order(item, field.message_type) for item in value]
    return _in_declaration_order(value, field.message_type)


def _int64_to_number(node: Any, path: tuple[str, ...]) -> None:
    """Walk `path` through dicts (and "*" through lists / map values); make the leaf a JSON number."""
    if path[0] == "*":
        items = node.values() if isinstance(node, dict) else node
        for item in items:
            _int64_to_number(item, path[1:])
        return
    if not isinstance(node, dict) or path[0] not in node:
        return
    if len(path) > 1:
        _int64_to_number(node[path[0]], path[1:])
        return
    leaf = node[path[0]]
    node[path[0]] = [int(v) for v in leaf] if isinstance(leaf, list) else int(leaf)
