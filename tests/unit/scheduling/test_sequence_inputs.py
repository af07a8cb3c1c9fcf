"""Control and implicit-state tensors the sequence batcher adds, and state outputs it takes back."""
from __future__ import annotations

import numpy as np

from triton_asyncio.core.request import FLAG_SEQUENCE_START, InferenceRequest
from triton_asyncio.core.response import InferenceResponse
from triton_asyncio.core.tensor import Tensor
from triton_asyncio.scheduling.sequence_inputs import (
    Control,
    StateSpec,
    add_controls,
    add_states,
    take_states,
)


def test_initial_state_zero_file_and_variable_dims():
    assert StateSpec("I", "O", "INT32", (2,)).initial_array().tolist() == [0, 0]
    assert StateSpec("I", "O", "FP32", (-1, 3)).initial_array().shape == (1, 3)
    data = np.array([7, 8], np.int64).tobytes()
    assert StateSpec("I", "O", "INT64", (-1,), data, (2,)).initial_array().tolist() == [7, 8]


def test_corrid_32_bit_types_keep_the_low_bits():
    r = InferenceRequest("m", correlation_id=(1 << 32) + 5)
    add_controls(r, (Control("C", "CORRID", "UINT32"), Control("S", "CORRID", "BYTES")), batching=True)
    assert r.inputs["C"].as_numpy().tolist() == [[5]]
    assert r.inputs["S"].as_numpy().tolist() == [[str((1 << 32) + 5).encode()]]


def test_state_input_is_initial_on_start_else_stored():
    spec = StateSpec("S_IN", "S_OUT", "INT32", (1,))
    stored = {"S_IN": Tensor("S_IN", "INT32", [1, 1], array=np.array([[9]], np.int32))}
    first = InferenceRequest("m", flags=FLAG_SEQUENCE_START)
    add_states(first, (spec,), stored, batching=True)
    assert first.inputs["S_IN"].shape == [1, 1] and first.inputs["S_IN"].as_numpy().tolist() == [[0]]
    later = InferenceRequest("m")
    add_states(later, (spec,), stored, batching=True)
    assert later.inputs["S_IN"].as_numpy().tolist() == [[9]]
    unbatched = InferenceRequest("m")
    add_states(unbatched, (spec,), None, batching=False)
    assert unbatched.inputs["S_IN"].shape == [1]


def test_state_outputs_are_taken_and_hidden_unless_in_config_output():
    spec = StateSpec("S_IN", "S_OUT", "INT32", (1,))
    batch = np.array([[1], [2]], np.int32)

    def response():
        return InferenceResponse("m", "1", outputs=[Tensor("OUT", "INT32", [1, 1], array=batch[:1]),
                                                     Tensor("S_OUT", "INT32", [1, 1], array=batch[:1])])
    hidden = response()
    states = take_states(hidden, (spec,), visible={"OUT"})
    assert [t.name for t in hidden.outputs] == ["OUT"]
    assert states["S_IN"].name == "S_IN" and states["S_IN"].as_numpy().tolist() == [[1]]
    batch[0, 0] = 5  # the kept state is a copy, not a view of the backend's batch buffer
    assert states["S_IN"].as_numpy().tolist() == [[1]]
    shown = response()
    take_states(shown, (spec,), visible={"OUT", "S_OUT"})
    assert [t.name for t in shown.outputs] == ["OUT", "S_OUT"]
