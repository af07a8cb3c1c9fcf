"""Inference requests and requested outputs, as every frontend hands them to the server.

Rules: plain slotted dataclasses built by the codecs; no I/O and no asyncio here. The request
state moves INITIALIZED -> PENDING -> EXECUTING -> RELEASED through `set_state` only.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .tensor import Tensor

# Request flags, as Triton numbers them.
FLAG_SEQUENCE_START = 1
FLAG_SEQUENCE_END = 2


class RequestState(enum.IntEnum):
    INITIALIZED = 0
    PENDING = 1
    EXECUTING = 2
    RELEASED = 3


_ALLOWED = {
    RequestState.INITIALIZED: (RequestState.PENDING, RequestState.RELEASED),
    RequestState.PENDING: (RequestState.EXECUTING, RequestState.RELEASED),
    RequestState.EXECUTING: (RequestState.RELEASED,),
    RequestState.RELEASED: (),
}


@dataclass(slots=True)
class ShmRef:
    """A tensor placed in a registered shared-memory region, resolved by the server."""

    region: str
    byte_size: int
    offset: int = 0
    # For inputs: the tensor the region holds, as the request declared it.
    datatype: str = ""
    shape: list[int] = field(default_factory=list)


@dataclass(slots=True)
class RequestedOutput:
    name: str
    binary: bool = False
    classification: int = 0
    shm: ShmRef | None = None


@dataclass(slots=True)
class InferenceRequest:
    model_name: str
    model_version: int = -1  # -1: the highest-numbered READY version
    id: str = ""
    inputs: dict[str, Tensor] = field(default_factory=dict)
    # None: every output of the model, encoded per `binary_default`.
    outputs: dict[str, RequestedOutput] | None = None
    binary_default: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)
    flags: int = 0
    correlation_id: int | str = 0
    priority: int = 0
    timeout_us: int = 0
    # Inputs that name a shm region instead of carrying data; resolved before validation.
    shm_inputs: dict[str, ShmRef] | None = None
    # Some requested output names a region: the server copies it there after execution.
    shm_outputs: bool = False
    state: RequestState = RequestState.INITIALIZED
    # Decoupled models send their responses here (core.response.ResponseSink), from any thread.
    response_sink: Any = None
    # Set when the client went away; backends may poll it (pb_utils' is_cancelled).
    cancelled: bool = False
    # triton_enable_empty_final_response: a stream writes the final flag even without data.
    empty_final: bool = False

    def set_state(self, new: RequestState) -> None:
        if new not in _ALLOWED[self.state]:
            raise RuntimeError(f"illegal request state change {self.state.name} -> {new.name}")
        self.state = new

    @property
    def log_id(self) -> str:
        return self.id or "<id_unknown>"
