"""Hypothesis strategies shared by the fuzz tests: byte mutations of seeds, and hostile values.

Rules: structure-aware first (mutate a valid input, or build a near-valid one field by field), so
the parsers are exercised past their first check; raw garbage is only one strategy among several.
"""
from __future__ import annotations

import os

from hypothesis import settings
from hypothesis import strategies as st

# scripts/fuzz.py (hypothesis fallback) multiplies every test's budget; CI runs them as written
SCALE = int(os.environ.get("FUZZ_EXAMPLES_SCALE", "1"))


def budget(max_examples: int) -> settings:
    """The settings of one fuzz test: bounded, no deadline, reproducible unless scaled up."""
    return settings(max_examples=max_examples * SCALE, deadline=None, derandomize=SCALE == 1)

# integers that break naive bounds checks: around 0, 2**31, 2**32, 2**63 and 2**64
EDGE_INTS = st.sampled_from([0, 1, -1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, -(2**63),
                             2**64 - 1, 2**64, -(2**64), 10**30])
HOSTILE_INTS = st.one_of(EDGE_INTS, st.integers(-3, 80), st.integers(-(2**65), 2**65))


@st.composite
def mutated(draw, seeds: list[bytes], max_ops: int = 4) -> bytes:
    """A seed with a few byte-level edits: flip, delete, insert, duplicate, truncate."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "dup", "truncate", "digit"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "dup":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 32))]
        elif op == "truncate":
            del data[pos:]
        elif op == "digit":  # numbers are where sizes live: make one huge or negative
            data[pos:pos] = draw(st.sampled_from([b"9999999999", b"-", b"18446744073709551615", b"0"]))
    return bytes(data)


def cuts(max_size: int = 8) -> st.SearchStrategy[list[int]]:
    """Positions at which to cut a stream into chunks."""
    return st.lists(st.integers(0, 4096), max_size=max_size)
