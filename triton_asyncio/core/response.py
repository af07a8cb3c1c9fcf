"""Inference responses, and the sink that frontends implement for streamed (decoupled) replies.

Rules: a response carries the tensors the backend produced, in the order it produced them;
which of them go back, and how, is the frontend's business.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import TritonError
from .tensor import Tensor


@dataclass(slots=True)
class InferenceResponse:
    model_name: str
    model_version: str
    id: str = ""
    outputs: list[Tensor] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    error: TritonError | None = None


class ResponseSink(Protocol):
    """Implemented by frontends for models that send zero or more responses per request."""

    def send(self, response: InferenceResponse | None, final: bool) -> None: ...

    def fail(self, error: TritonError) -> None: ...
