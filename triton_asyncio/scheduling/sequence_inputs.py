"""What the sequence batcher adds to a request before execute: control tensors and implicit state.

Rules: pure numpy, no asyncio and no file I/O (an initial state's `data_file` is read by the
repository at load and arrives here as bytes). Control values follow spec 6.4's table. Implicit
state: on START (or with no stored state) a request gets the initial state, afterwards the state
tensor its sequence's previous response produced; state outputs are taken out of the response
unless the config also lists them under `output` (Triton returns a state output only then).
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np

from ..core.datatype import NUMPY_DTYPE
from ..core.request import FLAG_SEQUENCE_END, FLAG_SEQUENCE_START, InferenceRequest
from ..core.response import InferenceResponse
from ..core.tensor import Tensor, deserialize_bytes

START, READY, END, CORRID = "START", "READY", "END", "CORRID"


@dataclass(frozen=True, slots=True)
class Control:
    """One control tensor: `kind` is START/READY/END/CORRID; values are (false, true) for flags."""

    name: str
    kind: str
    datatype: str  # wire datatype: INT32, FP32, BOOL, UINT64, BYTES, ...
    false_true: tuple = (0, 1)


@dataclass(frozen=True, slots=True)
class StateSpec:
    """One `sequence_batching.state` entry. `initial` is the initial state's raw bytes (zero_data:
    None with `zero` set; no initial_state: None and zeros with variable dims as 1, as Triton's
    uninitialised buffer has no defined content); `initial_dims` its dims (default: `dims`)."""

    input_name: str
    output_name: str
    datatype: str
    dims: tuple[int, ...]
    initial: bytes | None = None
    initial_dims: tuple[int, ...] | None = None

    def initial_array(self) -> np.ndarray:
        """The state row a sequence starts from (without the batch dimension)."""
        dims = tuple(1 if d < 0 else d for d in (self.initial_dims or self.dims))
        if self.initial is None:
            if self.datatype == "BYTES":
                return np.full(dims, b"", dtype=object)
            return np.zeros(dims, NUMPY_DTYPE[self.datatype])
        if self.datatype == "BYTES":
            return deserialize_bytes(self.initial).reshape(dims)
        return np.frombuffer(self.initial, NUMPY_DTYPE[self.datatype]).reshape(dims)


def add_controls(request: InferenceRequest, controls: tuple[Control, ...], batching: bool) -> None:
    """Each control as a `[1]` tensor (`[1, 1]` when the model batches), per spec 6.4's table."""
    shape = [1, 1] if batching else [1]
    for c in controls:
        if c.kind == CORRID:
            value = request.correlation_id
            if c.datatype == "BYTES":
                array = np.array([str(value).encode()], dtype=object)
            else:
                # 32-bit CORRID types get the low 32 bits, as Triton's
                array = np.array([value if isinstance(value, int) else 0], np.uint64).astype(_dtype(c.datatype))
        else:
            flag = {START: request.flags & FLAG_SEQUENCE_START, END: request.flags & FLAG_SEQUENCE_END,
                    READY: 1}[c.kind]
            array = np.array([c.false_true[1 if flag else 0]], dtype=_dtype(c.datatype))
        request.inputs[c.name] = Tensor(c.name, c.datatype, list(shape), array=array.reshape(shape))


def add_states(request: InferenceRequest, specs: tuple[StateSpec, ...], stored: Mapping[str, Tensor] | None,
               batching: bool) -> None:
    """The state inputs: `stored` (input name -> tensor) unless this request starts its sequence."""
    if request.flags & FLAG_SEQUENCE_START:
        stored = None
    for spec in specs:
        tensor = stored.get(spec.input_name) if stored else None
        if tensor is None:
            array = spec.initial_array()
            if batching:
                array = array.reshape((1, *array.shape))
            tensor = Tensor(spec.input_name, spec.datatype, list(array.shape), array=array)
        request.inputs[spec.input_name] = tensor


def take_states(response: InferenceResponse, specs: tuple[StateSpec, ...],
                visible: Collection[str]) -> dict[str, Tensor]:
    """The next state of the response's sequence (input name -> tensor); state outputs the client
    may not see (not in config `output`) are removed from the response."""
    if not specs:
        return {}
    by_output = {spec.output_name: spec for spec in specs}
    states: dict[str, Tensor] = {}
    kept: list[Tensor] = []
    for tensor in response.outputs:
        spec = by_output.get(tensor.name)
        if spec is not None:
            # a copy: the response's array may be a view of a batch buffer the backend reuses
            array = np.array(tensor.as_numpy(), copy=True)
            states[spec.input_name] = Tensor(spec.input_name, spec.datatype, list(array.shape), array=array)
            if tensor.name not in visible:
                continue
        kept.append(tensor)
    response.outputs = kept
    return states


def _dtype(datatype: str) -> np.dtype:
    return NUMPY_DTYPE.get(datatype, np.dtype(np.int32))
