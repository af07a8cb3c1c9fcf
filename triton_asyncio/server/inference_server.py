"""The one data plane: every frontend (HTTP, gRPC) calls this and holds no logic it lacks.

Rules: owns the server state, the repository manager and (later) the shared-memory registries;
speaks core objects and TritonError only — never HTTP or gRPC statuses.
"""
from __future__ import annotations

import enum
import logging
import time
from typing import Any

from .. import TRITON_VERSION
from ..core.request import InferenceRequest
from ..core.response import InferenceResponse
from ..errors import ErrorCode, TritonError, invalid_arg, unavailable
from ..repository.manager import RepositoryManager
from ..repository.model import Model
from .response_cache import ResponseCache, request_key
from .validate import validate_request

log = logging.getLogger("triton_asyncio.server")

EXTENSIONS = (
    "classification", "sequence", "model_repository", "model_repository(unload_dependents)",
    "schedule_policy", "model_configuration", "system_shared_memory", "cuda_shared_memory",
    "binary_tensor_data", "parameters", "statistics", "trace", "logging",
)


class ServerState(enum.Enum):
    INITIALIZING = "INITIALIZING"
    READY = "READY"
    FAILED_TO_INITIALIZE = "FAILED_TO_INITIALIZE"
    EXITING = "EXITING"


class InferenceServer:
    def __init__(self, manager: RepositoryManager, *, server_id: str = "triton",
                 strict_readiness: bool = True, response_cache: ResponseCache | None = None) -> None:
        self.manager = manager
        manager.request_validator = validate_request
        self.server_id = server_id
        self.version = TRITON_VERSION
        self.extensions = EXTENSIONS
        self.strict_readiness = strict_readiness
        self.state = ServerState.INITIALIZING
        self.response_cache = response_cache

    # -- health ------------------------------------------------------------------------------
    def live(self) -> bool:
        if self.state is ServerState.EXITING:
            raise unavailable("Server exiting")
        return self.state is ServerState.READY

    def ready(self) -> bool:
        if not self.live():
            return False
        return not self.strict_readiness or self.manager.all_ready()

    def _check_ready(self) -> None:
        if self.state is not ServerState.READY and self.state is not ServerState.EXITING:
            raise unavailable("Server not ready")

    # -- models ------------------------------------------------------------------------------
    def model(self, name: str, version: int = -1) -> Model:
        """The READY model version a request addresses; Triton's 'unknown model' errors otherwise."""
        return self.manager.resolve(name, version)

    def model_ready(self, name: str, version: int = -1) -> bool:
        self._check_ready()
        return self.manager.resolve(name, version).is_healthy()

    def model_versions(self, name: str, version: int) -> list[str]:
        """Versions reported by model metadata: the one asked for, or every READY one."""
        if version >= 0:
            return [str(version)]
        return [m.version_str for m in self.manager.ready_versions(name)]

    def statistics(self, name: str = "", version: int = -1) -> list[Model]:
        if not name:
            return [m for n in sorted(self.manager.models) for m in self.manager.ready_versions(n)]
        models = self.manager.ready_versions(name)
        if not models:
            raise invalid_arg(f"requested model '{name}' is not available")
        if version >= 0:
            models = [m for m in models if m.version == version]
            if not models:
                raise invalid_arg(f"requested model version is not available for model '{name}'")
        return models

    def repository_index(self, ready_only: bool = False) -> list[tuple[str, Any, Any, str]]:
        return self.manager.index(ready_only)

    # -- inference (hot path) ----------------------------------------------------------------
    def prepare(self, model: Model, request: InferenceRequest) -> InferenceResponse | None:
        """Validate; then, when the model can run it at once on the loop, do so and return the
        response. None means the caller must `await infer_prepared(...)`."""
        if request.shm_inputs:
            raise TritonError(ErrorCode.UNSUPPORTED, "shared memory inputs are not supported yet")
        validate_request(request, model.spec)
        if self.response_cache is not None and model.config.response_cache.enable:
            return None  # infer_prepared looks the response up
        return model.try_infer_now(request)

    async def infer_prepared(self, model: Model, request: InferenceRequest) -> InferenceResponse:
        if self.response_cache is not None and model.config.response_cache.enable:
            return await self._infer_cached(model, request, self.response_cache)
        return await model.infer(request)

    # -- response cache ----------------------------------------------------------------------
    async def _infer_cached(self, model: Model, request: InferenceRequest,
                            cache: ResponseCache) -> InferenceResponse:
        """Hit: the cached outputs, no scheduling. Miss: run, then store a successful response."""
        started = time.perf_counter_ns()
        key = request_key(model.name, model.version, request)
        response = cache.lookup(key, model.name, model.version_str, request.id)
        looked_up = time.perf_counter_ns()
        stats = model.stats
        if response is not None:
            stats.cache_hit.add(looked_up - started)
            stats.success.add(looked_up - started)
            stats.queue.add(0)
            stats.last_inference_ms = time.time_ns() // 1_000_000
            return response
        response = await model.infer(request)
        inserted = time.perf_counter_ns()
        if response.error is None:
            cache.insert(key, response)
        stats.cache_miss.add(looked_up - started + time.perf_counter_ns() - inserted)
        return response

    async def infer(self, model: Model, request: InferenceRequest) -> InferenceResponse:
        """Validate against the model's spec, then run it; ownership passes to the scheduler."""
        response = self.prepare(model, request)
        return response if response is not None else await self.infer_prepared(model, request)

    # -- life cycle --------------------------------------------------------------------------
    async def stop(self) -> None:
        self.state = ServerState.EXITING
        await self.manager.unload_all()
