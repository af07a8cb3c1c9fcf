"""Core request validation against a model's TensorSpecs (Triton's InferenceRequest::Normalize).

Rules: Triton's order and messages, first failure wins: requested outputs, input count,
unknown inputs and the batch dimension, then per input dtype, shape vs config dims, byte size
(BYTES: walked element by element); finally config `reshape` is applied. Messages carry the
`[request id: <id>] ` prefix except "unexpected inference input". All INVALID_ARG. Hot path:
one pass over the inputs, no numpy work for raw tensors.
"""
from __future__ import annotations

import struct

from ..core.datatype import ELEMENT_SIZE
from ..core.request import InferenceRequest
from ..core.tensor import Tensor
from ..errors import invalid_arg

_LEN = struct.Struct("<I")
_NOTE = ("NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension to be "
         "prepended to each input shape. If you want to specify the full shape including the batch dim "
         "in your input dims config, try setting max_batch_size to zero. See the model configuration "
         "docs for more info on max_batch_size.")


def shape_str(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _prefix(request: InferenceRequest) -> str:
    return f"[request id: {request.log_id}] "


def validate_request(request: InferenceRequest, spec) -> None:
    """Check `request` against `spec` (ModelSpec); reshapes inputs in place. Raises TritonError."""
    plain = spec.plain_inputs
    if plain is not None and _plain_request_ok(request, spec, plain):
        return
    if request.outputs:
        _check_outputs(request, spec)
    _check_input_count(request, spec)
    for name in request.inputs:
        if name not in spec.inputs:
            raise invalid_arg(f"unexpected inference input '{name}' for model '{spec.name}'")
    batched = spec.max_batch_size > 0
    batch = _check_batch(request, spec) if batched else 0
    for name, tensor in request.inputs.items():
        ts = spec.inputs[name]
        _check_input(request, spec, tensor, ts, batched)
        if ts.reshape is not None:
            _reshape(tensor, ts, batched, batch)


def _plain_request_ok(request: InferenceRequest, spec, plain: dict) -> bool:
    """One pass for the common case (every input given, raw, matching): True means valid. False
    means "not sure": the full checks below run and raise the error Triton would."""
    inputs = request.inputs
    if len(inputs) != len(plain):
        return False
    if request.outputs:
        outputs = spec.outputs
        for name in request.outputs:
            if name not in outputs:
                return False
    max_batch = spec.max_batch_size
    batch = -1
    for name, tensor in inputs.items():
        expected = plain.get(name)
        if expected is None or tensor.array is not None:
            return False
        datatype, dims, item_size = expected
        if tensor.datatype != datatype:
            return False
        shape = tensor.shape
        if max_batch > 0:
            if not shape or shape[1:] != dims:
                return False
            if batch < 0:
                batch = shape[0]
                if batch > max_batch:
                    return False
            elif shape[0] != batch:
                return False
            item_size *= batch
        elif shape != dims:
            return False
        raw = tensor.raw
        if (raw.nbytes if type(raw) is memoryview else len(raw)) != item_size:
            return False
    return True


def _check_outputs(request: InferenceRequest, spec) -> None:
    for name in request.outputs:
        if name not in spec.outputs:
            raise invalid_arg(f"{_prefix(request)}unexpected inference output '{name}' for model '{spec.name}'")


def _names(names: list[str], empty: str) -> str:
    return "[" + ",".join(f"'{n}'" for n in names) + "]" if names else empty


def _check_input_count(request: InferenceRequest, spec) -> None:
    given = len(request.inputs)
    required = [n for n, t in spec.inputs.items() if not t.optional]
    total = len(spec.inputs)
    missing = [n for n in required if n not in request.inputs]
    if given > total or given < len(required) or (missing and not _has_unknown(request, spec)):
        expected = (f"expected {total} inputs" if len(required) == total
                    else f"expected number of inputs between {len(required)} and {total}")
        # Triton prints an empty missing list as "]" (it pops the '[' it meant to close).
        raise invalid_arg(
            f"{_prefix(request)}{expected} but got {given} inputs for model '{spec.name}'. "
            f"Got input(s) {_names(list(request.inputs), '[]')}, but missing required input(s) "
            f"{_names(missing, ']')}. Please provide all required input(s).")


def _has_unknown(request: InferenceRequest, spec) -> bool:
    return any(n not in spec.inputs for n in request.inputs)


def _check_batch(request: InferenceRequest, spec) -> int:
    """The request's batch size (first dim shared by every non-shape-tensor input)."""
    batch = -1
    for name, tensor in request.inputs.items():
        if spec.inputs[name].is_shape_tensor:
            continue
        if not tensor.shape:
            raise invalid_arg(f"{_prefix(request)}input '{name}' has no shape but model requires "
                              f"batch dimension for '{spec.name}'")
        if batch < 0:
            batch = tensor.shape[0]
        elif tensor.shape[0] != batch:
            raise invalid_arg(f"{_prefix(request)}input '{name}' batch size does not match other "
                              f"inputs for '{spec.name}'")
    if batch > spec.max_batch_size:
        raise invalid_arg(f"{_prefix(request)}inference request batch-size must be <= "
                          f"{spec.max_batch_size} for '{spec.name}'")
    return max(batch, 0)


def _check_input(request: InferenceRequest, spec, tensor: Tensor, ts, batched: bool) -> None:
    name = tensor.name
    if tensor.datatype != ts.datatype:
        got = tensor.datatype if tensor.datatype in ELEMENT_SIZE else "<invalid>"
        raise invalid_arg(f"{_prefix(request)}inference input '{name}' data-type is '{got}', but model "
                          f"'{spec.name}' expects '{ts.datatype}'")
    _check_shape(request, spec, tensor, ts, batched)
    if ts.datatype == "BYTES":
        _check_bytes(request, spec, tensor)
    elif tensor.array is None:
        expected = ELEMENT_SIZE[ts.datatype]
        for d in tensor.shape:
            expected *= d
        raw = tensor.raw
        got = raw.nbytes if isinstance(raw, memoryview) else len(raw)
        if got != expected:
            raise invalid_arg(f"{_prefix(request)}input byte size mismatch for input '{name}' for model "
                              f"'{spec.name}'. Expected {expected}, got {got}")


def _check_shape(request: InferenceRequest, spec, tensor: Tensor, ts, batched: bool) -> None:
    shape = tensor.shape
    if any(d < 0 for d in shape):
        raise invalid_arg(f"{_prefix(request)}All input dimensions should be specified for input "
                          f"'{tensor.name}' for model '{spec.name}', got {shape_str(shape)}")
    strip = batched and not ts.is_shape_tensor
    dims = ts.dims
    own = shape[1:] if strip else shape
    if len(own) == len(dims) and all(c == -1 or c == d for c, d in zip(dims, own, strict=True)):
        return
    expected = ([-1] if strip else []) + list(dims)
    raise invalid_arg(f"{_prefix(request)}unexpected shape for input '{tensor.name}' for model "
                      f"'{spec.name}'. Expected {shape_str(expected)}, got {shape_str(shape)}. "
                      + (_NOTE if batched else ""))


def _check_bytes(request: InferenceRequest, spec, tensor: Tensor) -> None:
    expected = 1
    for d in tensor.shape:
        expected *= d
    if tensor.array is not None:
        got = tensor.array.size
    else:
        got = _count_strings(request, spec, tensor, expected)
    if got != expected:
        raise invalid_arg(f"{_prefix(request)}expected {expected} string elements for inference input "
                          f"'{tensor.name}' for model '{spec.name}', got {got}")


def _count_strings(request: InferenceRequest, spec, tensor: Tensor, expected: int) -> int:
    raw = tensor.raw
    buf = raw if isinstance(raw, (bytes, bytearray)) else memoryview(raw).cast("B")
    pos, end, count = 0, len(buf), 0
    where = f"for inference input '{tensor.name}' for model '{spec.name}'"
    while pos < end:
        if count >= expected:
            raise invalid_arg(f"{_prefix(request)}unexpected number of string elements {count + 1} "
                              f"{where}, expecting {expected}")
        if end - pos < 4:
            raise invalid_arg(f"{_prefix(request)}incomplete string length indicator {where}, expecting 4 "
                              f"bytes but only {end - pos} bytes available. Please make sure the string "
                              "length indicator is in one buffer.")
        (n,) = _LEN.unpack_from(buf, pos)
        pos += 4
        if end - pos < n:
            raise invalid_arg(f"{_prefix(request)}incomplete string data {where}, expecting string of "
                              f"length {n} but only {end - pos} bytes available.")
        pos += n
        count += 1
    return count


def _reshape(tensor: Tensor, ts, batched: bool, batch: int) -> None:
    """Config `reshape`: variable dims of the request carry over positionally."""
    strip = batched and not ts.is_shape_tensor
    own = tensor.shape[1:] if strip else tensor.shape
    variable = iter([d for c, d in zip(ts.dims, own, strict=False) if c == -1])
    new = [next(variable, 1) if r == -1 else r for r in ts.reshape]
    shape = ([batch] if strip else []) + new
    tensor.shape = shape
    if tensor.array is not None:
        tensor.array = tensor.array.reshape(shape)
