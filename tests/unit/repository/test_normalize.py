"""Triton's load-time pipeline: defaults, instance groups, validation messages, frozen specs (spec 4.2-4.4)."""
import pytest
from google.protobuf import text_format

from triton_asyncio.errors import ErrorCode, TritonError
from triton_asyncio.pb import model_config_pb2 as mc
from triton_asyncio.repository.normalize import (
    BatchingSpec,
    TensorSpec,
    model_spec,
    normalize_and_validate,
    normalize_config,
)

ORT = 'backend: "onnxruntime" platform: "onnxruntime_onnx" '
IO = ('input { name: "IN" data_type: TYPE_INT32 dims: [16] } '
      'output { name: "OUT" data_type: TYPE_INT32 dims: [16] } ')


def cfg(text: str, name: str = "m") -> mc.ModelConfig:
    config = text_format.Parse(text, mc.ModelConfig())
    if name and not config.name:
        config.name = name
    return config


def run(text: str, **kw) -> mc.ModelConfig:
    config = cfg(text)
    normalize_and_validate(config, name="m", **kw)
    return config


def error(text: str, **kw) -> TritonError:
    with pytest.raises(TritonError) as info:
        run(text, **kw)
    return info.value


# -- defaults -------------------------------------------------------------------------------------

def test_defaults_for_a_batching_ort_model() -> None:
    config = run(ORT + "max_batch_size: 8 dynamic_batching {} " + IO)
    assert config.version_policy.latest.num_versions == 1
    assert list(config.dynamic_batching.preferred_batch_size) == [8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 0
    assert config.optimization.input_pinned_memory.enable and config.optimization.output_pinned_memory.enable
    (group,) = config.instance_group
    assert (group.name, group.kind, group.count, list(group.gpus)) == ("m", mc.ModelInstanceGroup.KIND_CPU, 2, [])


def test_explicit_values_are_kept() -> None:
    config = run(ORT + "max_batch_size: 8 version_policy { all {} } dynamic_batching { preferred_batch_size: [2, 4] } "
                 "optimization { input_pinned_memory { enable: false } } " + IO)
    assert config.version_policy.HasField("all")
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert not config.optimization.input_pinned_memory.enable
    assert config.optimization.output_pinned_memory.enable


def test_no_preferred_size_without_batching() -> None:
    config = cfg(ORT + "dynamic_batching {}")
    normalize_config(config)
    assert list(config.dynamic_batching.preferred_batch_size) == []


def test_sequence_batching_defaults() -> None:
    config = run(ORT + "max_batch_size: 4 sequence_batching { oldest { max_candidate_sequences: 2 } } " + IO)
    assert config.sequence_batching.max_sequence_idle_microseconds == 1_000_000
    assert list(config.sequence_batching.oldest.preferred_batch_size) == [4]


@pytest.mark.parametrize(("backend", "groups", "gpus", "expected"), [
    (ORT, "", (), [("m", "KIND_CPU", 2, [])]),
    ('backend: "python" ', "", (), [("m", "KIND_CPU", 1, [])]),
    (ORT, "", (0, 1), [("m", "KIND_GPU", 1, [0, 1])]),
    (ORT, "instance_group [{ count: 3 }, { kind: KIND_CPU }]", (), [("m_0", "KIND_CPU", 3, []),
                                                                    ("m_1", "KIND_CPU", 2, [])]),
    (ORT, "instance_group { name: 'g' gpus: [1] }", (0,), [("g", "KIND_CPU", 2, [1])]),
    (ORT, "instance_group { kind: KIND_GPU gpus: [1] count: 2 }", (0, 1), [("m_0", "KIND_GPU", 2, [1])]),
    (ORT, "instance_group { kind: KIND_MODEL }", (), [("m_0", "KIND_MODEL", 1, [])]),
])
def test_instance_groups(backend, groups, gpus, expected) -> None:
    if expected[0][3] and expected[0][1] == "KIND_CPU":  # gpus on a CPU group is invalid later on
        with pytest.raises(TritonError, match="has kind KIND_CPU but specifies one or more GPUs"):
            run(backend + groups + IO, gpus=gpus)
        return
    config = run(backend + groups + IO, gpus=gpus)
    kind = mc.ModelInstanceGroup.Kind.Name
    assert [(g.name, kind(g.kind), g.count, list(g.gpus)) for g in config.instance_group] == expected


def test_name_from_directory_and_mismatch() -> None:
    config = cfg(ORT + IO, name="")
    normalize_and_validate(config, name="dir")
    assert config.name == "dir"
    err = error('name: "other" ' + ORT + IO)
    assert err.message == ("unexpected directory name 'm' for model 'other', directory name must equal model name")


# -- validation messages --------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ('platform: "onnxruntime_onnx"', "unexpected platform type 'onnxruntime_onnx' for m"),
    ('backend: "onnxruntime" platform: "tensorrt_plan"', "unexpected 'platform' and 'backend' pair, "
     "got:tensorrt_plan, onnxruntime"),
    ('backend: "python" platform: "ensemble"', "Ensemble model 'm' must have platform type 'ensemble' and empty "
     "backend type"),
    (ORT + "max_batch_size: -1", "'max_batch_size' must be non-negative value for m"),
    (ORT + "max_batch_size: 4 dynamic_batching { preferred_batch_size: [8] }",
     "dynamic batching preferred size must be <= max batch size for m"),
    (ORT + "max_batch_size: 4 dynamic_batching { preferred_batch_size: [0] }",
     "dynamic batching preferred size must be positive for m"),
    (ORT + "max_batch_size: 4 dynamic_batching { priority_levels: 2 }",
     "default priority level must be in range [1, 2] for m"),
    (ORT + "max_batch_size: 4 dynamic_batching { priority_levels: 2 default_priority_level: 1 "
     "priority_queue_policy { key: 3 value {} } }", "priority queue policy must have priority level in range [1, 2] for m"),
    (ORT + "max_batch_size: 4 dynamic_batching { preserve_ordering: true priority_levels: 2 default_priority_level: 1 }",
     "Only one priority level is allowed when 'preserve_ordering' is true for m"),
    (ORT + "max_batch_size: 4 dynamic_batching { preserve_ordering: true default_queue_policy { timeout_action: DELAY "
     "default_timeout_microseconds: 5 } }",
     "Queue policy can not have DELAY as timeout action when 'preserve_ordering' is true for m"),
    (ORT + "sequence_batching {} response_cache { enable: true }",
     "Response Cache does not currently support model m with sequence batching scheduler. Please disable the "
     "response cache."),
    (ORT + "model_transaction_policy { decoupled: true } response_cache { enable: true }",
     "Response Cache does not currently support model m with 'decoupled' transaction policy. Please disable the "
     "response cache."),
    (ORT + "sequence_batching { direct { minimum_slot_utilization: 1.5 } }",
     "sequence batching minimum slot utilization must be in range (0.0, 1.0] for m"),
    (ORT + "max_batch_size: 2 sequence_batching { oldest { preferred_batch_size: [4] } }",
     "sequence batching preferred batch size must be <= max batch size for m"),
    (ORT + "model_metrics { metric_control {} }", "metric control must specify 'metric_identifier'"),
])
def test_config_errors(text: str, message: str) -> None:
    err = error(text + " " + IO)
    assert (err.code, err.message) == (ErrorCode.INVALID_ARG, message)


def _control(body: str) -> str:
    return ORT + "sequence_batching { " + body + " } " + IO


@pytest.mark.parametrize(("body", "message"), [
    ("control_input { control { kind: CONTROL_SEQUENCE_START int32_false_true: [0, 1] } }",
     "sequence batching control tensor must have a name for m"),
    ("control_input { name: 'S' control { kind: CONTROL_SEQUENCE_START } }",
     "sequence batching must specify either 'int32_false_true', 'fp32_false_true' or 'bool_false_true' for "
     "CONTROL_SEQUENCE_START for m"),
    ("control_input { name: 'S' control { kind: CONTROL_SEQUENCE_START int32_false_true: [0] } }",
     "sequence batching control 'int32_false_true' must have exactly 2 entries for CONTROL_SEQUENCE_START for m"),
    ("control_input { name: 'S' control { kind: CONTROL_SEQUENCE_END int32_false_true: [0, 1] "
     "fp32_false_true: [0, 1] } }",
     "sequence batching specifies more than one from 'int32_false_true', 'fp32_false_true' and 'bool_false_true' "
     "for CONTROL_SEQUENCE_END for m"),
    ("control_input { name: 'A' control { kind: CONTROL_SEQUENCE_READY bool_false_true: [false, true] } } "
     "control_input { name: 'B' control { kind: CONTROL_SEQUENCE_READY bool_false_true: [false, true] } }",
     "sequence batching specifies multiple CONTROL_SEQUENCE_READY tensors for m"),
    ("control_input { name: 'C' control { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_FP32 } }",
     "unexpected data type for control CONTROL_SEQUENCE_CORRID for m. Allowed data types are TYPE_UINT64, "
     "TYPE_INT64, TYPE_UINT32, TYPE_INT32 and TYPE_STRING"),
    ("control_input { name: 'C' control { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 "
     "int32_false_true: [0, 1] } }",
     "sequence batching must not specify either 'int32_false_true', 'fp32_false_true' or 'bool_false_true' for "
     "CONTROL_SEQUENCE_CORRID for m"),
])
def test_sequence_control_errors(body: str, message: str) -> None:
    assert error(_control(body)).message == message


def test_valid_sequence_controls() -> None:
    run(_control("control_input { name: 'S' control { kind: CONTROL_SEQUENCE_START fp32_false_true: [0, 1] } } "
                 "control_input { name: 'C' control { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_STRING } }"))


@pytest.mark.parametrize(("io", "message"), [
    ('input { data_type: TYPE_FP32 dims: [1] }', "model input must specify 'name' for m"),
    ('input { name: "X" dims: [1] }', "model input 'X' must specify 'data_type' for m"),
    ('input { name: "X" data_type: TYPE_FP32 }', "model input 'X' must specify 'dims' for m"),
    ('input { name: "X" data_type: TYPE_FP32 dims: [0] }',
     "model input 'X' dimension must be integer >= 1, or -1 to indicate a variable-size dimension for m"),
    ('output { name: "Y" data_type: TYPE_FP32 dims: [-2] }',
     "model output 'Y' dimension must be integer >= 1, or -1 to indicate a variable-size dimension for m"),
    ('input { name: "X" data_type: TYPE_FP32 dims: [1] reshape { shape: [] } }',
     "model input 'X' cannot have empty reshape for non-batching model as scalar tensors are not supported for m"),
    ('input { name: "X" data_type: TYPE_FP32 dims: [2, 4] reshape { shape: [3, 3] } }',
     "model input 'X' has different size for dims and reshape for m"),
    ('input { name: "X" data_type: TYPE_FP32 dims: [2, -1] reshape { shape: [-1, 2, -1] } }',
     "model input 'X' has different number of variable-size dimensions for dims and reshape for m"),
    ('input { name: "X" data_type: TYPE_FP32 dims: [2, 4, -1, 6] reshape { shape: [4, -1, 1, 12] } }',
     "model input 'X' has different size for dims and reshape for m"),
    ('input { name: "X" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [1, 2] }',
     "model input NHWC/NCHW require 3 dims for m"),
    ('input { name: "X" data_type: TYPE_INT32 dims: [1] is_shape_tensor: true }',
     "shape tensors are only supported for TensorRT platform for m"),
    ('input { name: "X" data_type: TYPE_INT32 dims: [1] } batch_input { kind: BATCH_ELEMENT_COUNT '
     'target_name: "B" data_type: TYPE_INT32 }', "batch input kind 'BATCH_ELEMENT_COUNT' expects 1 source input, "
     "got 0 for m"),
    ('input { name: "X" data_type: TYPE_INT32 dims: [1] } batch_input { kind: BATCH_ELEMENT_COUNT '
     'target_name: "B" data_type: TYPE_INT32 source_input: "Z" }', "unknown source input name 'Z' for m"),
])
def test_io_errors(io: str, message: str) -> None:
    assert error(ORT + io).message == message


def test_valid_reshapes() -> None:
    run(ORT + 'max_batch_size: 2 input { name: "S" data_type: TYPE_FP32 dims: [1] reshape { shape: [] } } '
        'input { name: "V" data_type: TYPE_FP32 dims: [2, 4, -1, 6] reshape { shape: [8, -1, 1, 6] } }')


@pytest.mark.parametrize(("groups", "gpus", "message"), [
    ("instance_group { kind: KIND_GPU }", (), "instance group m_0 of model m has kind KIND_GPU but no GPUs are available"),
    ("instance_group { kind: KIND_GPU gpus: [3] }", (0, 1), "instance group m_0 of model m specifies invalid or "
     "unsupported gpu id 3. GPUs with at least the minimum required CUDA compute compatibility of 6.000000 are: 0, 1"),
    ("instance_group { kind: KIND_MODEL gpus: [0] }", (0,),
     "instance group m_0 of model m has kind KIND_MODEL but specifies one or more GPUs"),
    ("instance_group { kind: KIND_CPU profile: '0' }", (),
     "instance group m_0 of model m and platform onnxruntime_onnxspecifies profile field which is only supported "
     "for TensorRT models"),
])
def test_instance_group_errors(groups: str, gpus, message: str) -> None:
    assert error(ORT + groups + IO, gpus=gpus).message == message


# -- ensembles ------------------------------------------------------------------------------------

ENS_IO = ('platform: "ensemble" input { name: "IN" data_type: TYPE_FP32 dims: [4] } '
          'output { name: "OUT" data_type: TYPE_FP32 dims: [4] } ')


def _steps(*steps: tuple[str, dict, dict]) -> str:
    out = ""
    for model, ins, outs in steps:
        maps = "".join(f'input_map {{ key: "{k}" value: "{v}" }} ' for k, v in ins.items())
        maps += "".join(f'output_map {{ key: "{k}" value: "{v}" }} ' for k, v in outs.items())
        out += f'step {{ model_name: "{model}" model_version: -1 {maps}}} '
    return ENS_IO + "ensemble_scheduling { " + out + "}"


def test_valid_ensemble_gets_no_groups_or_optimization() -> None:
    config = run(_steps(("a", {"x": "IN"}, {"y": "mid"}), ("b", {"x": "mid"}, {"y": "OUT"})))
    assert not config.instance_group and not config.HasField("optimization")
    assert config.version_policy.latest.num_versions == 1


@pytest.mark.parametrize(("text", "message"), [
    (ENS_IO, "ensemble scheduling must be set for ensemble m whose platform is ensemble"),
    (ENS_IO + "ensemble_scheduling {}", "must specify 'step' for ensemble 'm'"),
    (_steps(("a", {"x": "IN"}, {"y": "OUT"})) + " instance_group {}",
     "instance group should not be specified for ensemble 'm'"),
    (_steps(("a", {}, {"y": "OUT"})), "must specify 'input_map' in step 0 of ensemble 'm'"),
    (_steps(("a", {"x": "IN"}, {"y": "OUT"}), ("b", {"x": "IN"}, {"y": "OUT"})),
     "ensemble tensor 'OUT' can appear in an output map only once for ensemble 'm' step 1"),
    (_steps(("a", {"x": "other"}, {"y": "OUT"})), "ensemble input 'IN' for ensemble m' is not used"),
    (_steps(("a", {"x": "IN", "z": "loose"}, {"y": "OUT"})),
     "output 'OUT' for ensemble 'm' is not written: at least one of its depending tensors, 'loose', is not connected"),
    (_steps(("a", {"x": "IN"}, {"y": "OUT", "w": "extra"})), "ensemble tensor 'extra' is unused in ensemble 'm'"),
    (_steps(("a", {"x": "IN"}, {"y": "mid"})), "ensemble output 'OUT' for ensemble m' is not used"),
])
def test_ensemble_errors(text: str, message: str) -> None:
    assert error(text).message == message


# -- frozen specs ---------------------------------------------------------------------------------

def test_model_spec() -> None:
    config = run(ORT + "max_batch_size: 8 dynamic_batching { max_queue_delay_microseconds: 100 } "
                 "model_transaction_policy { decoupled: true } "
                 'input { name: "A" data_type: TYPE_STRING dims: [1] reshape { shape: [] } optional: true } '
                 'input { name: "B" data_type: TYPE_FP16 dims: [-1, 3] } '
                 'output { name: "C" data_type: TYPE_BF16 dims: [2] }')
    spec = model_spec(config)
    assert spec.name == "m" and spec.max_batch_size == 8 and spec.decoupled
    assert spec.inputs["A"] == TensorSpec("A", "BYTES", (1,), (), optional=True)
    assert spec.inputs["B"] == TensorSpec("B", "FP16", (-1, 3))
    assert spec.outputs["C"] == TensorSpec("C", "BF16", (2,))
    assert spec.dynamic_batching == BatchingSpec((8,), 100, False, 0, 0)
    with pytest.raises(AttributeError):
        spec.name = "x"  # frozen
