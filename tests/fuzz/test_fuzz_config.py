"""Fuzz config.pbtxt parsing, normalization, validation and JSON rendering: TritonError only."""
from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from . import seeds, targets
from .strategies import budget, mutated

TOKENS = [b"{", b"}", b"[", b"]", b":", b",", b"-1", b"0", b"99999999999999999999", b"TYPE_FP16", b"KIND_GPU",
          b"dims", b"max_batch_size", b"input", b"output", b"reshape", b'"x"', b"name", b"instance_group",
          b"count: -5", b"gpus: [ 7 ]", b"<", b">", b"#", b"\\", b"'", b"\xff", b"\x00"]


@st.composite
def token_mutated(draw) -> bytes:
    """A seed config with pbtxt tokens spliced in, so mutations stay lexically plausible."""
    text = bytearray(draw(st.sampled_from(seeds.CONFIGS)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        text[pos:pos] = b" " + draw(st.sampled_from(TOKENS)) + b" "
    return bytes(text)


@budget(120)
@given(st.one_of(mutated(seeds.CONFIGS), token_mutated()))
@example(b"input " * 50 + b"{" * 200)  # deep nesting
# found by atheris: an enum given a number out of int32 range made text_format raise ValueError
@example(b'output [ { name: "OUT" data_type: 555555555555555555555555555555 dims: [ 1 ] } ]')
@example(b'output [ { name: "OUT" data_type: 99 dims: [ 1 ] } ]')
@example(b'max_batch_size: 8 input [ { name: "a" data_type: TYPE_INT32 dims: [ 9223372036854775807, 2 ] } ]')
def test_mutated_configs(text):
    targets.check_config(text)
