"""The identity backend (backend: "identity"): output n is input n, by position in the config.

Rules: no model file and no framework; outputs share the request's buffers (no copy), so tests and
benchmarks measure the server, not a model. Batching changes nothing: each request maps to itself.
"""
from __future__ import annotations

from typing import Any

from ..core.request import InferenceRequest
from ..core.response import InferenceResponse
from ..core.tensor import Tensor
from ..errors import invalid_arg
from .base import Backend, ModelInstance, ModelLocation
from .iospec import inputs_of, outputs_of


class IdentityBackend(Backend):
    name = "identity"
    default_model_filename = ""

    def __init__(self, config: Any, location: ModelLocation) -> None:
        super().__init__(config, location)
        inputs, outputs = inputs_of(config), outputs_of(config)
        if len(outputs) > len(inputs):
            raise invalid_arg(f"identity model '{config.name}' has {len(outputs)} outputs but only "
                              f"{len(inputs)} inputs")
        self.pairs = [(i.name, o.name) for i, o in zip(inputs, outputs, strict=False)]

    def create_instance(self, instance_name: str, kind: str, device_id: int) -> ModelInstance:
        return IdentityInstance(instance_name, kind, device_id, self.config.name,
                                str(self.location.version), self.pairs)


class IdentityInstance(ModelInstance):
    def __init__(self, name: str, kind: str, device_id: int, model_name: str, version: str,
                 pairs: list[tuple[str, str]]) -> None:
        super().__init__(name, kind, device_id)
        self.model_name = model_name
        self.version = version
        self.pairs = pairs

    def execute(self, requests: list[InferenceRequest]) -> list[InferenceResponse]:
        return [self._respond(request) for request in requests]

    def _respond(self, request: InferenceRequest) -> InferenceResponse:
        outputs = []
        for in_name, out_name in self.pairs:
            t = request.inputs.get(in_name)
            if t is not None:  # an optional input that was left out has no output either
                outputs.append(Tensor(out_name, t.datatype, list(t.shape), raw=t.raw, array=t.array))
        return InferenceResponse(self.model_name, self.version, id=request.id, outputs=outputs)
