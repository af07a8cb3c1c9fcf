"""Binary tensor data extension: split a body at Inference-Header-Content-Length, hand out input
chunks as memoryview slices, decode headerless (raw) requests, and size binary outputs.

Rules: zero copy: every input chunk is a memoryview over the received body, consumed in the
order inputs appear; the JSON header is the only part that is copied (to parse it). Triton's
messages, verbatim. Pure: no I/O.
"""
from __future__ import annotations

import struct

from ..core.datatype import ELEMENT_SIZE
from ..core.request import InferenceRequest
from ..core.tensor import Tensor
from ..errors import invalid_arg
from .json_tensor import size_limit_message

_LEN = struct.Struct("<I")


def body_size(body) -> int:
    return body.nbytes if isinstance(body, memoryview) else len(body)


def header_size(body, header_length: int | None, max_input_size: int) -> int:
    """Length of the JSON header: IHCL when given (checked against the body), else the whole body."""
    size = body_size(body)
    if header_length is None:
        length = size
    elif header_length < 0 or header_length > size:
        raise invalid_arg(f"inference header size should be in range (0, {size}), got: {header_length}")
    else:
        length = header_length
    if length > max_input_size:
        raise invalid_arg(size_limit_message("request JSON size", length, max_input_size))
    return length


class BinaryReader:
    """Consumes the binary section after the JSON header, one input chunk at a time."""

    __slots__ = ("view", "pos", "end", "has_header_length")

    def __init__(self, body, start: int, has_header_length: bool) -> None:
        self.view = body if isinstance(body, memoryview) else memoryview(body)
        self.pos = start
        self.end = body_size(body)
        self.has_header_length = has_header_length

    def take(self, name: str, size: int, model_name: str) -> memoryview:
        if not self.has_header_length:
            raise invalid_arg("must specify valid 'Infer-Header-Content-Length' in request header and "
                              "'binary_data_size' when passing inputs in binary data format")
        start, stop = self.pos, self.pos + size
        if stop > self.end:
            raise invalid_arg(f"unexpected size for input '{name}', expecting {stop - self.end} "
                              f"additional bytes for model '{model_name}'")
        self.pos = stop
        return self.view[start:stop]

    def finish(self, model_name: str) -> None:
        if self.pos != self.end:
            raise invalid_arg(f"unexpected additional input data for model '{model_name}'")


def decode_raw_infer(body, model_name: str, model_version: int, spec,
                     max_input_size: int | None = None) -> InferenceRequest:
    """A headerless request (IHCL: 0): the whole body is the model's single input; outputs binary."""
    size = body_size(body)
    if max_input_size is not None and size > max_input_size:
        raise invalid_arg(size_limit_message("raw request size", size, max_input_size))
    if len(spec.inputs) != 1:
        raise invalid_arg(f"Raw request must only have 1 input (found 1) to be deduced but got "
                          f"{len(spec.inputs)} inputs in '{model_name}' model configuration")
    (ts,) = spec.inputs.values()
    batch = [1] if spec.max_batch_size > 0 else []
    if ts.datatype == "BYTES":
        if list(ts.dims) != [1]:
            raise invalid_arg(f"For BYTES datatype raw input '{ts.name}', the model must have input shape [1]")
        raw = _LEN.pack(size) + bytes(body)
        shape = batch + [1]
    else:
        raw = body if isinstance(body, memoryview) else memoryview(body)
        shape = batch + _deduce_dims(ts, size)
    request = InferenceRequest(model_name, model_version)
    request.inputs[ts.name] = Tensor(ts.name, ts.datatype, shape, raw=raw)
    request.binary_default = True
    return request


def _deduce_dims(ts, size: int) -> list[int]:
    dims = list(ts.dims)
    variable = [i for i, d in enumerate(dims) if d < 0]
    if len(variable) > 1:
        raise invalid_arg(f"The shape of the raw input '{ts.name}' can not be deduced because there are "
                          "more than one variable-sized dimension")
    if variable:
        fixed = (ELEMENT_SIZE.get(ts.datatype) or 1)
        for d in dims:
            fixed *= d if d >= 0 else 1
        if fixed == 0 or size % fixed:
            raise invalid_arg(f"The shape of the raw input '{ts.name}' can not be deduced because the "
                              f"byte size {size} is not a multiple of the fixed dimensions")
        dims[variable[0]] = size // fixed
    return dims


def output_chunk(tensor: Tensor):
    """The bytes of a binary output (a memoryview of the array where possible) and its size."""
    raw = tensor.as_bytes()
    return raw, body_size(raw)
