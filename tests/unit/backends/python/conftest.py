"""The stub-side modules import each other as top-level modules (ipc, arena): make that work here."""
from __future__ import annotations

import os
import sys

PY_BACKEND = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "triton_asyncio", "backends", "python")
sys.path.insert(0, os.path.abspath(PY_BACKEND))
