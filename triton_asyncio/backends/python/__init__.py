"""Triton's Python backend: model.py files run unchanged in stub processes (see backend.py)."""
