"""Triton's generate extension (`/generate`, `/generate_stream`) and SSE framing, sans-I/O.

Rules: a request body is a flat JSON object: a key that names a model input becomes that input,
`parameters` is a nested object read the same way, `id` is the request id and every other key is
a request parameter. A value becomes a tensor of the input's datatype, its shape fitted to the
input's dims (Triton's rule, below). A response is one flat JSON object; SSE events are
`data: <json>\\n\\n`.
"""
from __future__ import annotations

from typing import Any

from ..core.request import InferenceRequest
from ..core.response import InferenceResponse
from ..errors import invalid_arg
from .json_tensor import json_data, tensor_from_json
from .kserve_json import encode_json, parse_json

SSE_CONTENT_TYPE = b"text/event-stream; charset=utf-8"
ONE_RESPONSE = ("generate expects model to produce exactly 1 response, use generate stream for model that "
                "generates various number of responses")


def decode_generate(body, model_name: str, model_version: int, spec: Any,
                    max_input_size: int) -> InferenceRequest:
    """An InferenceRequest from a generate body, against the model's ModelSpec."""
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise invalid_arg("generate request body must be a JSON object")
    request = InferenceRequest(model_name, model_version)
    _read_members(request, doc, spec, max_input_size)
    nested = doc.get("parameters")
    if isinstance(nested, dict):
        _read_members(request, nested, spec, max_input_size)
    request.outputs = None  # every output, as JSON
    return request


def _read_members(request: InferenceRequest, obj: dict, spec: Any, max_input_size: int) -> None:
    for key, value in obj.items():
        if key == "parameters" and isinstance(value, dict):
            continue
        tensor_spec = spec.inputs.get(key)
        if tensor_spec is not None:
            data = value if isinstance(value, list) else [value]
            shape = _fit_shape(key, len(data), spec.max_batch_size > 0, tensor_spec.dims)
            request.inputs[key] = tensor_from_json(key, tensor_spec.datatype, shape, data, max_input_size)
        elif key == "id":
            if not isinstance(value, str):
                raise invalid_arg("'id' must be a string")
            request.id = value
        elif isinstance(value, (str, bool, int, float)):
            request.parameters[key] = value
        else:
            raise invalid_arg(f"parameter '{key}' must be a string, number or boolean")


def _fit_shape(name: str, count: int, batching: bool, dims: tuple[int, ...]) -> list[int]:
    """Fixed dims must divide the element count; the innermost -1 takes the rest, others are 1."""
    fixed = 1
    for d in dims:
        if d >= 0:
            fixed *= d
    variable = [i for i, d in enumerate(dims) if d < 0]
    shape = list(dims)
    if variable:
        for i in variable:
            shape[i] = 1
        if fixed == 0 or count % fixed:
            raise invalid_arg(f"The schema can not convert input '{name}' to tensor with proper shape")
        shape[variable[-1]] = count // fixed
    elif fixed != count:
        raise invalid_arg(f"The schema can not convert input '{name}' to tensor with proper shape")
    return [1, *shape] if batching else shape


def encode_generate_response(response: InferenceResponse) -> bytes:
    """model_name, model_version, id, the response parameters and each output as `name: value`."""
    doc: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id:
        doc["id"] = response.id
    doc.update(response.parameters)
    for tensor in response.outputs:
        data = json_data(tensor)
        doc[tensor.name] = data[0] if len(data) == 1 else data
    return encode_json(doc)


def sse_event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def sse_error(message: str) -> bytes:
    return sse_event(encode_json({"error": message}))
