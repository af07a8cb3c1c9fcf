"""Fuzz the KServe JSON + binary tensor decoders: only TritonError, and no allocation sized by a shape."""
from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import strategies as st

from . import seeds, targets
from .strategies import EDGE_INTS, HOSTILE_INTS, budget, mutated

DATATYPES = st.sampled_from(["BOOL", "UINT8", "UINT64", "INT8", "INT32", "INT64", "FP16", "BF16", "FP32",
                             "FP64", "BYTES", "", "int32", "STRING", "TYPE_INT32"])
SCALARS = st.one_of(st.integers(-(2**65), 2**65), st.floats(allow_nan=True), st.booleans(), st.none(),
                    st.text(max_size=4))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4), max_leaves=12)
SHAPES = st.one_of(st.lists(HOSTILE_INTS, max_size=4), st.lists(st.integers(0, 4), max_size=3), JSON_VALUES)


@st.composite
def parameters(draw) -> dict:
    keys = draw(st.lists(st.sampled_from(["binary_data_size", "shared_memory_region", "shared_memory_offset",
                                          "shared_memory_byte_size", "binary_data", "classification",
                                          "sequence_id", "priority", "timeout", "triton_x", "custom"]),
                         max_size=3, unique=True))
    return {k: draw(st.one_of(HOSTILE_INTS, SCALARS)) for k in keys}


@st.composite
def input_items(draw):
    item: dict = {}
    if draw(st.booleans()):
        item["name"] = draw(st.one_of(st.sampled_from(["INPUT0", "INPUT1"]), SCALARS))
    item["datatype"] = draw(DATATYPES)
    item["shape"] = draw(SHAPES)
    choice = draw(st.sampled_from(["data", "binary", "shm", "params", "none"]))
    if choice == "data":
        item["data"] = draw(JSON_VALUES)
    elif choice == "binary":
        item["parameters"] = {"binary_data_size": draw(st.one_of(st.integers(0, 64), EDGE_INTS))}
    elif choice == "shm":
        item["parameters"] = {"shared_memory_region": "r", "shared_memory_byte_size": draw(HOSTILE_INTS),
                              "shared_memory_offset": draw(HOSTILE_INTS)}
    elif choice == "params":
        item["parameters"] = draw(parameters())
    return item if draw(st.integers(0, 9)) else draw(JSON_VALUES)


@st.composite
def infer_bodies(draw) -> tuple[bytes, int | None]:
    doc: dict = {"inputs": draw(st.lists(input_items(), max_size=3))}
    if draw(st.booleans()):
        doc["parameters"] = draw(st.one_of(parameters(), JSON_VALUES))
    if draw(st.booleans()):
        doc["outputs"] = draw(st.lists(st.fixed_dictionaries({"name": st.just("OUTPUT0")},
                                                             optional={"parameters": parameters()}), max_size=2))
    if draw(st.booleans()):
        doc["id"] = draw(SCALARS)
    header = json.dumps(doc).encode()
    blob = draw(st.binary(max_size=64))
    header_length = draw(st.one_of(st.just(len(header)), st.none(), st.integers(-2, len(header) + len(blob) + 2)))
    return header + blob, header_length


@budget(240)
@given(infer_bodies())
@example((b'{"inputs":[{"name":"a","datatype":"INT32","shape":[4294967296,4294967296],"data":[1]}]}', None))
@example((b'{"inputs":[{"name":"a","datatype":"BYTES","shape":[1099511627776],"data":["a"]}]}', None))
@example((b'{"inputs":[{"name":"a","datatype":"INT32","shape":[18446744073709551615],'
          b'"parameters":{"binary_data_size":18446744073709551615}}]}', 80))
def test_structured_infer_bodies(case):
    targets.check_kserve(*case)


@budget(200)
@given(mutated([b for b, _ in seeds.KSERVE]), st.one_of(st.none(), st.integers(-1, 400)))
def test_mutated_infer_bodies(body, header_length):
    targets.check_kserve(body, header_length)


@budget(120)
@given(st.binary(max_size=64), DATATYPES, st.lists(st.one_of(st.integers(-3, 8), EDGE_INTS), max_size=4),
       st.sampled_from([0, 8]))
@example(b"\x00" * 8, "INT32", [-1, -1], 0)
@example(b"\x00" * 8, "FP16", [0, -1], 8)
def test_raw_infer(body, datatype, dims, max_batch_size):
    targets.check_raw_infer(body, datatype, tuple(dims), max_batch_size)
