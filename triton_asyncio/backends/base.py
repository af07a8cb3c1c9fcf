"""The contract between the server and a backend (Triton's TRITONBACKEND_* API, as Python classes).

Rules: a Backend is created once per loaded model version; it makes one ModelInstance per
instance_group entry. `ModelInstance.execute` runs on that instance's own worker thread, never on
the event loop, and only one execute runs at a time per instance.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from ..core.caller import InferenceCaller
from ..core.request import InferenceRequest
from ..core.response import InferenceResponse


@dataclass(frozen=True, slots=True)
class ModelLocation:
    """Where a model version lives on disk."""

    name: str
    version: int
    model_dir: str  # <repository>/<model>
    version_dir: str  # <repository>/<model>/<version>


class ModelInstance(ABC):
    """One instance of a model (Triton's TRITONBACKEND_ModelInstance)."""

    #: False when execute waits on something else (another process): never run it on the loop
    inline_ok: bool = True

    def __init__(self, name: str, kind: str, device_id: int) -> None:
        self.name = name  # e.g. "simple_0_0", as Triton names instances
        self.kind = kind  # "KIND_CPU" | "KIND_GPU" | "KIND_MODEL"
        self.device_id = device_id

    @abstractmethod
    def execute(self, requests: list[InferenceRequest]) -> list[InferenceResponse]:
        """Run a batch; one response per request, in order.

        Inputs were validated against the config (names, dtypes, shapes, reshape applied) before
        they got here. A response carries every output the model produced; the frontend picks what
        the client asked for. A per-request failure is a response with `error` set; raising fails
        the whole batch.
        """

    def is_healthy(self) -> bool:
        """False while the instance cannot serve (a Python stub restarting); the model is not ready."""
        return True

    def finalize(self) -> None:  # noqa: B027 - optional hook
        """Release the instance's resources."""


class Backend(ABC):
    """One loaded model version (Triton's TRITONBACKEND_Model)."""

    #: the `backend` name in config.pbtxt ("onnxruntime", "python", ...)
    name: str = ""
    #: model file looked for in the version directory when `default_model_filename` is unset
    default_model_filename: str = ""
    #: runs requests on other models from a backend thread (BLS); set before create_instance
    caller: InferenceCaller | None = None

    def __init__(self, config: Any, location: ModelLocation) -> None:
        self.config = config  # inference.ModelConfig (pb), already normalized and validated
        self.location = location

    @classmethod  # noqa: B027 - optional hook
    def auto_complete_config(cls, config: Any, location: ModelLocation) -> None:
        """Fill what config.pbtxt left out (inputs, outputs, max_batch_size...) in place."""

    @abstractmethod
    def create_instance(self, instance_name: str, kind: str, device_id: int) -> ModelInstance:
        """Build one instance; raise TritonError if the model cannot run there."""

    def finalize(self) -> None:  # noqa: B027 - optional hook
        """Release model-wide resources after every instance is finalized."""
