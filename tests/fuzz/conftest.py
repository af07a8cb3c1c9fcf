"""Hypothesis profiles for the fuzz tests: "ci" (default, bounded, reproducible) and "long".

Rules: CI must stay fast and deterministic, so "ci" derandomizes and disables the deadline (the
machine is shared); pick another with HYPOTHESIS_PROFILE=long, or use scripts/fuzz.py for hours.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=20000, deadline=None, derandomize=False,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
