"""Gather/scatter helpers: batching along dim 0, views back, BYTES conversions, output reshape."""
from __future__ import annotations

import numpy as np
import pytest

from triton_asyncio.backends import collect
from triton_asyncio.errors import TritonError

from .backend_fixtures import request


def test_single_request_passes_through_without_copy():
    a = np.ones((2, 4), np.float32)
    assert collect.gather([request(X=a)], "X") is a


def test_gather_concatenates_and_scatter_returns_views():
    reqs = [request(X=np.full((n, 2), n, np.int32)) for n in (1, 2, 3)]
    sizes = [collect.batch_size(r) for r in reqs]
    batch = collect.gather(reqs, "X")
    assert sizes == [1, 2, 3] and batch.shape == (6, 2)
    parts = collect.scatter(batch, sizes)
    assert [p.shape[0] for p in parts] == sizes
    assert all(p.base is batch for p in parts)
    assert parts[2][0, 0] == 3


def test_gather_mismatched_shapes_and_scatter_bad_batch():
    reqs = [request(X=np.zeros((1, 2), np.int32)), request(X=np.zeros((1, 3), np.int32))]
    with pytest.raises(TritonError, match="cannot batch input 'X'"):
        collect.gather(reqs, "X")
    with pytest.raises(TritonError, match="does not match the total batch size 3"):
        collect.scatter(np.zeros((2, 2)), [1, 2])


def test_bytes_str_round_trip():
    raw = np.array([[b"a", "é".encode()], [b"", b"xyz"]], dtype=object)
    strs = collect.bytes_to_str(raw)
    assert strs.tolist() == [["a", "é"], ["", "xyz"]]
    assert collect.str_to_bytes(strs).tolist() == raw.tolist()
    with pytest.raises(TritonError, match="not valid UTF-8"):
        collect.bytes_to_str(np.array([b"\xff"], dtype=object))
    assert collect.bytes_to_str(np.empty((0, 2), dtype=object)).shape == (0, 2)


def test_reshape_output():
    assert collect.reshape_output([4], [], [1], batching=True) == [4, 1]
    assert collect.reshape_output([2, 3, 5], [-1, 5], [-1], batching=True) == [2, 3]
    assert collect.reshape_output([6, 4], [6, 4], [24], batching=False) == [24]
