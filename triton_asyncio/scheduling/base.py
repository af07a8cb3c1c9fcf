"""The scheduler contract, and how a scheduler reaches a model's instances.

Rules: a scheduler owns a request from `submit` until the returned future resolves; it never
imports repository or backends (instances arrive through the `Executor` protocol).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

from ..core.request import InferenceRequest
from ..core.response import InferenceResponse
from ..core.stats import ModelStats


class Executor(Protocol):
    """One model instance as the scheduler sees it (a backend ModelInstance)."""

    name: str

    def execute(self, requests: list[InferenceRequest]) -> list[InferenceResponse]: ...


class Scheduler(ABC):
    def __init__(self, instances: list[Executor], stats: ModelStats) -> None:
        self.instances = instances
        self.stats = stats

    @abstractmethod
    async def submit(self, request: InferenceRequest) -> InferenceResponse:
        """Run one request; ownership of `request` passes to the scheduler until this returns."""

    @abstractmethod
    def inflight_count(self) -> int:
        """Requests queued or executing."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop the workers after in-flight requests finished (called by unload)."""
