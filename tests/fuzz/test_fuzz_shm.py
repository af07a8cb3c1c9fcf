"""Fuzz the shared-memory parameters, register bodies and the registry's bounds checks."""
from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from . import seeds, targets
from .strategies import HOSTILE_INTS, budget, mutated

SMALL = st.integers(-2, targets.REGION_FILE_SIZE + 2)


@pytest.fixture(scope="module")
def shm():
    return targets.ShmFixture()


@budget(300)
@given(reg_offset=st.one_of(SMALL, HOSTILE_INTS), reg_size=st.one_of(SMALL, HOSTILE_INTS),
       offset=st.one_of(SMALL, HOSTILE_INTS), size=st.one_of(SMALL, HOSTILE_INTS))
@example(reg_offset=0, reg_size=64, offset=-8, size=8)  # negative offset (gRPC int64_param)
@example(reg_offset=0, reg_size=64, offset=-8, size=16)  # used to read bytes 56..64, then 0..8
@example(reg_offset=0, reg_size=64, offset=8, size=-4)
@example(reg_offset=0, reg_size=64, offset=2**64 - 1, size=1)
@example(reg_offset=8, reg_size=-8, offset=0, size=0)
def test_registry_view_bounds(shm, reg_offset, reg_size, offset, size):
    shm.check(reg_offset, reg_size, offset, size)


@budget(160)
@given(st.dictionaries(st.sampled_from(["shared_memory_region", "shared_memory_offset", "shared_memory_byte_size"]),
                       st.one_of(HOSTILE_INTS, st.text(max_size=3), st.none(), st.booleans(), st.floats())))
def test_shm_params(params):
    targets.check_shm_params(params)


@budget(160)
@given(mutated(seeds.SHM_REGISTER))
def test_register_bodies(body):
    targets.check_shm_json(body)
