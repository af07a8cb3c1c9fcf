"""Per-version readiness states, as Triton's ModelReadyState, with checked transitions.

Rules: every state change of a model version goes through `VersionState.set`; the repository
index and readiness read nothing else. READY -> LOADING is a reload: the old model keeps serving
until the new one is READY (or, if the new one fails, the version goes back to READY on the old).
What serves requests is the manager's table of loaded models, not these states.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class ModelReadyState(enum.Enum):
    UNKNOWN = "UNKNOWN"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    LOADING = "LOADING"
    UNLOADING = "UNLOADING"


_S = ModelReadyState
_ALLOWED = {
    _S.UNKNOWN: {_S.LOADING, _S.UNAVAILABLE},
    _S.LOADING: {_S.READY, _S.UNAVAILABLE},
    _S.READY: {_S.UNLOADING, _S.LOADING},
    _S.UNLOADING: {_S.UNAVAILABLE},
    _S.UNAVAILABLE: {_S.LOADING, _S.UNAVAILABLE},
}

# Triton renders failure reasons as "<CodeString>: <message>".
CODE_STRINGS = ("Unknown", "Internal", "Not found", "Invalid argument", "Unavailable",
                "Unsupported", "Already exists", "Cancelled")


@dataclass(slots=True)
class VersionState:
    state: ModelReadyState = ModelReadyState.UNKNOWN
    reason: str = ""

    def set(self, new: ModelReadyState, reason: str = "") -> None:
        if new not in _ALLOWED[self.state]:
            raise RuntimeError(f"illegal model state change {self.state.name} -> {new.name}")
        self.state = new
        self.reason = reason
