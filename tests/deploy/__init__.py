"""Checks of the deployment material under scripts/deploy/ and of scripts/perf_sweep.py."""
