"""Python-backend example models (model.py sources written into the example repository).

Importable by make_example_repo.py: BUILDERS maps a model name to a function(outdir).
"""
from __future__ import annotations

BUILDERS: dict = {}
