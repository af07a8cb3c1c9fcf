"""Sequence-batching config at load: validation of `state` and `oldest`, and how the repository turns
the block into the batcher (strategy, initial-state files, the backend's view of state outputs)."""
from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format

from triton_asyncio.core.stats import ModelStats
from triton_asyncio.errors import ErrorCode, TritonError
from triton_asyncio.pb import model_config_pb2 as mc
from triton_asyncio.repository.model import _backend_config, _make_scheduler, _sequence_states
from triton_asyncio.repository.normalize import normalize_and_validate
from triton_asyncio.scheduling.sequence import SequenceBatcher

BASE = ('backend: "onnxruntime" platform: "onnxruntime_onnx" max_batch_size: 8 '
        'input { name: "IN" data_type: TYPE_INT32 dims: [1] } output { name: "OUT" data_type: TYPE_INT32 dims: [1] } ')
STATE = 'input_name: "S_IN" output_name: "S_OUT" data_type: TYPE_INT32 dims: [2] '


def cfg(sequence_batching: str) -> mc.ModelConfig:
    return text_format.Parse(BASE + "sequence_batching { " + sequence_batching + " }", mc.ModelConfig(name="m"))


def error(sequence_batching: str) -> str:
    with pytest.raises(TritonError) as info:
        normalize_and_validate(cfg(sequence_batching), name="m")
    assert info.value.code == ErrorCode.INVALID_ARG
    return info.value.message


def test_valid_state_and_oldest_load():
    normalize_and_validate(cfg("oldest { max_candidate_sequences: 4 preferred_batch_size: [4] } state { " + STATE
                               + 'initial_state { data_type: TYPE_INT32 dims: [2] zero_data: true name: "z" } }'),
                           name="m")


@pytest.mark.parametrize("block, message", [
    ('state { output_name: "S_OUT" data_type: TYPE_INT32 dims: [1] }',
     "sequence batching state must specify both 'input_name' and 'output_name' for m"),
    ('state { input_name: "S_IN" output_name: "S_OUT" dims: [1] }',
     "sequence batching state 'S_IN' must specify 'data_type' for m"),
    ('state { input_name: "S_IN" output_name: "S_OUT" data_type: TYPE_INT32 }',
     "sequence batching state 'S_IN' must specify 'dims' for m"),
    ("state { " + STATE + " } state { " + STATE + " }",
     "sequence batching state 'S_IN' is specified more than once for m"),
    ('state { input_name: "IN" output_name: "S_OUT" data_type: TYPE_INT32 dims: [1] }',
     "sequence batching state input 'IN' must not also be a model input or a control input for m"),
    ("state { " + STATE + 'initial_state { data_type: TYPE_FP32 dims: [2] zero_data: true name: "z" } }',
     "'data_type' of the initial state 'z' of sequence batching state 'S_IN' for m must match the state's "
     "'data_type'"),
    ("state { " + STATE + 'initial_state { data_type: TYPE_INT32 dims: [2] name: "z" } }',
     "initial state 'z' of sequence batching state 'S_IN' for m must specify either 'zero_data' or 'data_file'"),
    ("state { " + STATE + 'initial_state { data_type: TYPE_INT32 dims: [3] zero_data: true name: "z" } }',
     "'dims' of the initial state 'z' of sequence batching state 'S_IN' for m do not match the state's 'dims'"),
    ("state { " + STATE + "initial_state { data_type: TYPE_INT32 dims: [2] zero_data: true } }",
     "initial state of sequence batching state 'S_IN' must specify 'name' for m"),
    ("oldest { preferred_batch_size: [16] }", "sequence batching preferred batch size must be <= max batch size for m"),
    ("oldest { max_candidate_sequences: -1 }", "sequence batching max candidate sequences must be non-negative for m"),
])
def test_invalid_blocks(block, message):
    assert error(block) == message


class Instance:
    name = "m_0_0"

    def execute(self, requests):
        return []


def test_scheduler_strategy_states_and_visible_outputs(tmp_path):
    (tmp_path / "initial_state").mkdir()
    (tmp_path / "initial_state" / "seed").write_bytes(np.array([3, 4], np.int32).tobytes())
    config = cfg("oldest { max_candidate_sequences: 3 preferred_batch_size: [2] max_queue_delay_microseconds: 5 } "
                 "state { " + STATE + 'initial_state { data_type: TYPE_INT32 dims: [2] data_file: "seed" '
                 'name: "s" } }')
    normalize_and_validate(config, name="m")
    scheduler = _make_scheduler(config, [Instance()], ModelStats(), str(tmp_path))
    assert isinstance(scheduler, SequenceBatcher)
    assert scheduler.slots_per_instance == 3
    assert scheduler.visible_outputs == {"OUT"}
    (spec,) = scheduler.states
    assert spec.initial_array().tolist() == [3, 4]


def test_initial_state_file_missing_or_wrongly_sized_fails_the_load(tmp_path):
    sb = cfg("state { " + STATE + 'initial_state { data_type: TYPE_INT32 dims: [2] data_file: "f" name: "s" } }')
    with pytest.raises(TritonError, match="failed to read initial state file"):
        _sequence_states(sb.sequence_batching, str(tmp_path))
    (tmp_path / "initial_state").mkdir()
    (tmp_path / "initial_state" / "f").write_bytes(b"\0" * 4)
    with pytest.raises(TritonError, match="unexpected size 4 of initial state file .* expected 8 bytes"):
        _sequence_states(sb.sequence_batching, str(tmp_path))


def test_backend_sees_state_outputs_the_model_config_does_not_list():
    config = cfg("state { " + STATE + " }")
    view = _backend_config(config)
    assert [o.name for o in view.output] == ["OUT", "S_OUT"]
    assert [o.name for o in config.output] == ["OUT"]
    plain = cfg("")
    assert _backend_config(plain) is plain
