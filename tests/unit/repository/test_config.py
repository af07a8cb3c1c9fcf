"""config.pbtxt parsing, --model-config-name lookup and Triton's /config JSON (spec 4.1, 4.6, 4.7)."""
import json

import pytest

from triton_asyncio.errors import ErrorCode, TritonError
from triton_asyncio.repository.config import (
    config_json_body,
    config_path,
    config_to_json,
    empty_config,
    parse_config,
    read_config,
)

SIMPLE = b"""
# the docs' simple model, as ORT auto-complete + normalisation leave it on a CPU host
name: "simple"
platform: "onnxruntime_onnx"
backend: "onnxruntime"
version_policy: { latest: { num_versions: 1 } }
max_batch_size: 8
input [ { name: "INPUT0", data_type: TYPE_INT32, dims: [ 16 ] },
        { name: "INPUT1", data_type: TYPE_INT32, dims: [ 16 ] } ]
output { name: "OUTPUT0" data_type: TYPE_INT32 dims: 16 }
output { name: "OUTPUT1" data_type: TYPE_INT32 dims: 16 }
optimization { input_pinned_memory { enable: true } output_pinned_memory { enable: true } }
instance_group [ { name: "simple" kind: KIND_CPU count: 2 } ]
default_model_filename: "model.onnx"
"""

SIMPLE_INPUT = {"name": "INPUT0", "data_type": "TYPE_INT32", "format": "FORMAT_NONE", "dims": [16],
                "is_shape_tensor": False, "allow_ragged_batch": False, "optional": False,
                "is_non_linear_format_io": False}
SIMPLE_OUTPUT = {"name": "OUTPUT0", "data_type": "TYPE_INT32", "dims": [16], "label_filename": "",
                 "is_shape_tensor": False, "is_non_linear_format_io": False}
SIMPLE_JSON = {
    "name": "simple", "platform": "onnxruntime_onnx", "backend": "onnxruntime", "runtime": "",
    "version_policy": {"latest": {"num_versions": 1}}, "max_batch_size": 8,
    "input": [SIMPLE_INPUT, {**SIMPLE_INPUT, "name": "INPUT1"}],
    "output": [SIMPLE_OUTPUT, {**SIMPLE_OUTPUT, "name": "OUTPUT1"}],
    "batch_input": [], "batch_output": [],
    "optimization": {"priority": "PRIORITY_DEFAULT", "input_pinned_memory": {"enable": True},
                     "output_pinned_memory": {"enable": True}, "gather_kernel_buffer_threshold": 0,
                     "eager_batching": False},
    "instance_group": [{"name": "simple", "kind": "KIND_CPU", "count": 2, "gpus": [], "secondary_devices": [],
                        "profile": [], "passive": False, "host_policy": ""}],
    "default_model_filename": "model.onnx", "cc_model_filenames": {}, "metric_tags": {}, "parameters": {},
    "model_warmup": [],
}


def test_simple_config_renders_as_spec_example() -> None:
    rendered = config_to_json(parse_config(SIMPLE))
    assert rendered == SIMPLE_JSON
    assert list(rendered) == list(SIMPLE_JSON)  # declaration order, not field-number order
    assert list(rendered["input"][0]) == list(SIMPLE_INPUT)


def test_dynamic_batching_and_parameters_render() -> None:
    config = parse_config(b'max_batch_size: 8 dynamic_batching { preferred_batch_size: 8 } '
                          b'parameters { key: "k" value: { string_value: "v" } }')
    rendered = config_to_json(config)
    assert rendered["dynamic_batching"] == {
        "preferred_batch_size": [8], "max_queue_delay_microseconds": 0, "preserve_ordering": False,
        "priority_levels": 0, "default_priority_level": 0, "priority_queue_policy": {}}
    assert rendered["parameters"] == {"k": {"string_value": "v"}}
    assert "sequence_batching" not in rendered and "model_transaction_policy" not in rendered
    assert "response_cache" not in rendered and "ensemble_scheduling" not in rendered


def test_int64_fields_become_numbers() -> None:
    config = parse_config(b"""
        version_policy { specific { versions: [1, 3] } }
        input { name: "I" data_type: TYPE_FP32 dims: [-1, 4] reshape { shape: [4, -1] } }
        dynamic_batching { max_queue_delay_microseconds: 100 priority_levels: 2 default_priority_level: 1
          default_queue_policy { default_timeout_microseconds: 7 }
          priority_queue_policy { key: 2 value { default_timeout_microseconds: 9 timeout_action: DELAY } } }
        model_warmup { name: "w" batch_size: 1 inputs { key: "I" value { data_type: TYPE_FP32 dims: [4] zero_data: true } } }
        instance_group { secondary_devices { device_id: 5 } }
    """)
    rendered = config_to_json(config)
    assert rendered["version_policy"] == {"specific": {"versions": [1, 3]}}
    assert rendered["input"][0]["dims"] == [-1, 4]
    assert rendered["input"][0]["reshape"] == {"shape": [4, -1]}
    db = rendered["dynamic_batching"]
    assert (db["max_queue_delay_microseconds"], db["priority_levels"], db["default_priority_level"]) == (100, 2, 1)
    assert db["default_queue_policy"]["default_timeout_microseconds"] == 7
    assert db["priority_queue_policy"]["2"]["default_timeout_microseconds"] == 9  # the key stays a string
    assert db["priority_queue_policy"]["2"]["timeout_action"] == "DELAY"
    assert rendered["model_warmup"][0]["inputs"]["I"] == {"data_type": "TYPE_FP32", "dims": [4], "zero_data": True}
    assert rendered["instance_group"][0]["secondary_devices"][0]["device_id"] == "5"  # not in Triton's list


def test_sequence_and_ensemble_int64_fields() -> None:
    seq = config_to_json(parse_config(b"""
        sequence_batching { max_sequence_idle_microseconds: 5000000 oldest { max_queue_delay_microseconds: 3 }
          state { input_name: "a" output_name: "b" data_type: TYPE_INT32 dims: [2] } }"""))
    sb = seq["sequence_batching"]
    assert sb["max_sequence_idle_microseconds"] == 5000000
    assert sb["oldest"]["max_queue_delay_microseconds"] == 3
    assert sb["state"][0]["dims"] == [2]
    ens = config_to_json(parse_config(b'ensemble_scheduling { step { model_name: "m" model_version: -1 } }'))
    assert ens["ensemble_scheduling"]["step"][0]["model_version"] == -1


def test_empty_config_is_an_empty_body() -> None:
    assert config_to_json(empty_config()) == {}
    assert config_json_body(empty_config()) == b""
    body = config_json_body(parse_config(SIMPLE))
    assert json.loads(body) == SIMPLE_JSON and b" " not in body.replace(b'" "', b"")


@pytest.mark.parametrize("text", [
    b"dynamic_batching {} sequence_batching {}",  # two members of one oneof
    b"no_such_field: 1",
    b'name: "a" name: "b"',
    b"max_batch_size: eight",
    b"input { data_type: TYPE_NOPE }",
])
def test_parse_errors_are_triton_internal(text: bytes) -> None:
    with pytest.raises(TritonError) as info:
        parse_config(text, "/models/m/config.pbtxt")
    assert info.value.code == ErrorCode.INTERNAL
    assert info.value.message == "failed to read text proto from /models/m/config.pbtxt"


def test_text_format_forms() -> None:
    config = parse_config(b"""name: 'm' "x"; max_batch_size: 4,
        input < name: "a" data_type: 8 dims: [] >
        parameters: [ { key: "k", value: { string_value: "1" } }, { key: "k", value: { string_value: "2" } } ]""")
    assert config.name == "mx" and config.max_batch_size == 4
    assert config.input[0].data_type == 8 and list(config.input[0].dims) == []
    assert config.parameters["k"].string_value == "2"  # duplicate map keys: last wins


def test_config_name_lookup(tmp_path) -> None:
    assert config_path(tmp_path) is None and read_config(tmp_path) is None
    (tmp_path / "config.pbtxt").write_text('name: "default"')
    assert read_config(tmp_path, "custom").name == "default"  # configs/custom.pbtxt absent: fall back
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "custom.pbtxt").write_text('name: "custom"')
    assert config_path(tmp_path, "custom") == tmp_path / "configs" / "custom.pbtxt"
    assert read_config(tmp_path, "custom").name == "custom"
    assert read_config(tmp_path, "").name == "default"
    assert read_config(tmp_path, None).name == "default"


def test_read_config_reports_the_path(tmp_path) -> None:
    (tmp_path / "config.pbtxt").write_bytes(b"max_batch_size: -")
    with pytest.raises(TritonError, match=f"failed to read text proto from {tmp_path / 'config.pbtxt'}"):
        read_config(tmp_path)
