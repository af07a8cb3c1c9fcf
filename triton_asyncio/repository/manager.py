"""The model repository manager: which models exist, which versions are loaded, and lookup.

Rules: this module owns the name -> versions table and every load/unload; lookups on the hot
path (`resolve`) touch only dicts. Loading is synchronous work that callers run off the loop.
Only the local filesystem is supported here; cloud repositories plug in at `_scan`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from ..backends.base import ModelLocation
from ..core.caller import InferenceCaller
from ..errors import ErrorCode, TritonError, not_found, unavailable
from .ensemble import Validator, build_ensemble
from .lifecycle import CODE_STRINGS, ModelReadyState, VersionState
from .loader import LoadSettings, prepare_model
from .model import Model, build_model

log = logging.getLogger("triton_asyncio.repository")
_READY = ModelReadyState.READY


@dataclass(slots=True)
class ModelEntry:
    name: str
    path: str | None  # None when the name appears in two or more repositories
    states: dict[int, VersionState] = field(default_factory=dict)
    loaded: dict[int, Model] = field(default_factory=dict)
    latest: Model | None = None  # the highest-numbered READY version
    reason: str = ""  # a model-level reason (e.g. duplicate name) shown without a version

    def refresh_latest(self) -> None:
        ready = [v for v, m in self.loaded.items() if self.states[v].state is _READY]
        self.latest = self.loaded[max(ready)] if ready else None


class RepositoryManager:
    def __init__(self, repositories: list[str], settings: LoadSettings) -> None:
        self.repositories = repositories
        self.settings = settings
        self.models: dict[str, ModelEntry] = {}
        # Checks each ensemble step's internal request against its model (set by the server).
        self.request_validator: Validator | None = None
        # Backends' way back into the server (BLS); bound to the loop by the server.
        self.caller = InferenceCaller()
        self._loading: set[str] = set()

    # -- discovery ---------------------------------------------------------------------------
    def scan(self) -> None:
        found: dict[str, list[str]] = {}
        for repo in self.repositories:
            if not os.path.isdir(repo):
                raise TritonError(ErrorCode.INTERNAL, f"failed to stat file {repo}")
            for name in sorted(os.listdir(repo)):
                path = os.path.join(repo, name)
                if os.path.isdir(path) and not name.startswith("."):
                    found.setdefault(name, []).append(path)
        for name, paths in found.items():
            entry = self.models.get(name)
            if entry is None:
                entry = self.models[name] = ModelEntry(name, paths[0])
            if len(paths) > 1:
                entry.path = None
                entry.reason = "model appears in two or more repositories"

    # -- loading -----------------------------------------------------------------------------
    def load(self, name: str) -> list[str]:
        """Load every version the policy selects; returns error lines (empty on success)."""
        entry = self.models.get(name)
        if entry is None:
            raise TritonError(ErrorCode.INTERNAL, f"failed to load '{name}', failed to poll from model repository")
        if entry.path is None:
            return [f"{name}: {entry.reason}"]
        try:
            prepared = prepare_model(entry.path, name, self.settings)
        except TritonError as e:
            versions = _disk_versions(entry.path) or [1]
            for v in versions:
                self._fail(entry, v, e)
            return [f"version {v} is at UNAVAILABLE state: {_reason(e)}" for v in versions]
        errors = []
        is_ensemble = prepared.config.platform == "ensemble"
        if is_ensemble:
            self._load_composing(prepared.config)
        for version in prepared.versions:
            state = entry.states.setdefault(version, VersionState())
            state.set(ModelReadyState.LOADING)
            location = ModelLocation(name, version, entry.path, os.path.join(entry.path, str(version)))
            try:
                if is_ensemble:
                    model = build_ensemble(prepared.config, prepared.spec, location, self.resolve,
                                           self._validate_step)
                else:
                    model = build_model(prepared.backend_cls, prepared.config, prepared.spec, location,
                                        caller=self.caller)
            except Exception as e:  # a broken model file must not take the server down
                error = e if isinstance(e, TritonError) else TritonError(
                    ErrorCode.INTERNAL, f"{type(e).__name__}: {e}")
                self._fail(entry, version, error)
                errors.append(f"version {version} is at UNAVAILABLE state: {_reason(error)}")
                continue
            entry.loaded[version] = model
            state.set(_READY)
            log.info("successfully loaded '%s' version %d", name, version)
        entry.refresh_latest()
        return errors

    def _validate_step(self, request, spec) -> None:
        if self.request_validator is not None:
            self.request_validator(request, spec)

    def _load_composing(self, config) -> None:
        """Load an ensemble's composing models first (those not tried yet); failures show on them."""
        self._loading.add(config.name)
        try:
            for step in config.ensemble_scheduling.step:
                dep = self.models.get(step.model_name)
                if dep is not None and not dep.states and step.model_name not in self._loading:
                    self.load(step.model_name)
        finally:
            self._loading.discard(config.name)

    def _fail(self, entry: ModelEntry, version: int, error: TritonError) -> None:
        state = entry.states.setdefault(version, VersionState())
        if state.state is ModelReadyState.UNKNOWN:
            state.set(ModelReadyState.LOADING)
        state.set(ModelReadyState.UNAVAILABLE, _reason(error))
        log.error("failed to load '%s' version %d: %s", entry.name, version, _reason(error))

    def load_all(self) -> dict[str, list[str]]:
        errors = {}
        for name in sorted(self.models):
            if not self.models[name].states:  # an ensemble may have loaded it already
                if errs := self.load(name):
                    errors[name] = errs
        return errors

    async def unload_all(self) -> None:
        for entry in self.models.values():
            for version, model in list(entry.loaded.items()):
                entry.states[version].set(ModelReadyState.UNLOADING)
                entry.refresh_latest()
                await model.unload()
                entry.states[version].set(ModelReadyState.UNAVAILABLE, "unloaded")
                del entry.loaded[version]

    # -- lookup (hot path) -------------------------------------------------------------------
    def resolve(self, name: str, version: int = -1) -> Model:
        entry = self.models.get(name)
        if entry is not None and version < 0 and entry.latest is not None:
            return entry.latest
        if entry is None or not entry.states:
            raise not_found(f"Request for unknown model: '{name}' is not found")
        if version < 0:
            raise not_found(f"Request for unknown model: '{name}' has no available versions")
        state = entry.states.get(version)
        if state is None:
            raise not_found(f"Request for unknown model: '{name}' version {version} is not found")
        if state.state is not _READY:
            raise unavailable(f"Request for unknown model: '{name}' version {version} is not at ready state")
        return entry.loaded[version]

    def ready_versions(self, name: str) -> list[Model]:
        entry = self.models.get(name)
        if entry is None:
            return []
        return [entry.loaded[v] for v in sorted(entry.loaded) if entry.states[v].state is _READY]

    def all_ready(self) -> bool:
        return all(s.state is _READY or s.reason == "unloaded"
                   for e in self.models.values() for s in e.states.values())

    def index(self, ready_only: bool = False) -> list[tuple[str, str | None, str | None, str]]:
        """(name, version, state, reason) rows, models sorted by name, as the index reports."""
        rows: list[tuple[str, str | None, str | None, str]] = []
        for name in sorted(self.models):
            entry = self.models[name]
            if entry.path is None and not ready_only:
                rows.append((name, None, "UNAVAILABLE", entry.reason))
                continue
            if not entry.states and not ready_only:
                rows.append((name, None, None, ""))
            for v in sorted(entry.states):
                s = entry.states[v]
                if not ready_only or s.state is _READY:
                    rows.append((name, str(v), s.state.value, s.reason))
        return rows


def _reason(error: TritonError) -> str:
    return f"{CODE_STRINGS[int(error.code)]}: {error.message}"


def _disk_versions(path: str) -> list[int]:
    try:
        return sorted(int(d) for d in os.listdir(path) if d.isdigit() and os.path.isdir(os.path.join(path, d)))
    except OSError:
        return []
