"""The identity backend (backend: "identity"): output n is input n, by position in the config.

Rules: no model file and no framework; outputs share the request's buffers (no copy), so tests and
benchmarks measure the server, not a model. Batching changes nothing: each request maps to itself.
A decoupled identity model (model_transaction_policy { decoupled: true }) sends the response
`repeat` times (config parameter, default 1), then the final flag alone.
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
        self.repeat = -1
        if config.model_transaction_policy.decoupled:
            text = config.parameters["repeat"].string_value if "repeat" in config.parameters else "1"
            try:
                self.repeat = int(text)
            except ValueError:
                raise invalid_arg(f"identity model '{config.name}': parameter 'repeat' must be an integer, "
                                  f"got '{text}'") from None

    def create_instance(self, instance_name: str, kind: str, device_id: int) -> ModelInstance:
        return IdentityInstance(instance_name, kind, device_id, self.config.name,
                                str(self.location.version), self.pairs, self.repeat)


class IdentityInstance(ModelInstance):
    def __init__(self, name: str, kind: str, device_id: int, model_name: str, version: str,
                 pairs: list[tuple[str, str]], repeat: int = -1) -> None:
        super().__init__(name, kind, device_id)
        self.model_name = model_name
        self.version = version
        self.pairs = pairs
        self.repeat = repeat  # -1: not decoupled

    def execute(self, requests: list[InferenceRequest]) -> list[InferenceResponse]:
        responses = [self._respond(request) for request in requests]
        if self.repeat >= 0:
            for request, response in zip(requests, responses, strict=True):
                sink = request.response_sink
                for _ in range(self.repeat):
                    sink.send(response, False)
                sink.send(None, True)
        return responses

    def _respond(self, request: InferenceRequest) -> InferenceResponse:
        outputs = []
        for in_name, out_name in self.pairs:
            t = request.inputs.get(in_name)
            if t is not None:  # an optional input that was left out has no output either
                outputs.append(Tensor(out_name, t.datatype, list(t.shape), raw=t.raw, array=t.array))
        return InferenceResponse(self.model_name, self.version, id=request.id, outputs=outputs)
