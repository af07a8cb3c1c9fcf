"""The model repository manager: which models exist, which versions are loaded, and lookup.

Rules: this module owns the name -> versions table and every load/unload; lookups on the hot
path (`resolve`) touch only dicts. `entry.loaded` is what serves; `entry.states` is what the
index reports (a reloading version is LOADING in the index while its old model still serves).
Startup loads (`load`, `load_all`) are synchronous, as tritonserver's. Runtime model control
(`load_async`, `unload_async`, `poll`) runs file I/O and model building in the loop's executor,
holds one asyncio.Lock per model name (concurrent calls on a model run one after another), and
swaps a new model in on the loop in one step, so that no request sees a half-loaded model. A
replaced or unloaded model stops taking requests at once and is retired after its in-flight
requests finish; the manager keeps no reference to it. Poll mode compares each model
directory's fingerprint (control.py) with the last attempt: a change loads once (a failure keeps
what serves and is not retried until the next change); a directory gone from disk is unloaded
and forgotten. `unload_dependents` unloads, besides the model, the ensembles that use it and an
ensemble's composing models that no other loaded ensemble uses. A cloud repository (cloud.py)
is a local mirror: `discover` lists its bucket, and each load and each poll first syncs the
model's mirror directory from the bucket (a no-op when its objects are unchanged), so that
everything after (fingerprints, prepare, build) is the local-directory path unchanged.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..backends.base import ModelLocation
from ..core.caller import InferenceCaller
from ..errors import ErrorCode, TritonError, not_found, unavailable
from . import cloud, control
from .control import Fingerprint, LoadOverride
from .ensemble import Validator, build_ensemble
from .lifecycle import CODE_STRINGS, ModelReadyState, VersionState
from .loader import LoadSettings, PreparedModel, prepare_model
from .model import Model, build_model

log = logging.getLogger("triton_asyncio.repository")
_READY = ModelReadyState.READY
_LOADING = ModelReadyState.LOADING
_T = TypeVar("_T")


@dataclass(slots=True)
class ModelEntry:
    name: str
    # The model's repository directory; None when the name appears in two or more repositories,
    # "" when it is in none (a model loaded from `file:` overrides only).
    path: str | None
    states: dict[int, VersionState] = field(default_factory=dict)
    loaded: dict[int, Model] = field(default_factory=dict)  # the versions that serve requests
    latest: Model | None = None  # the highest-numbered serving version
    reason: str = ""  # a model-level reason (e.g. duplicate name) shown without a version
    fingerprint: Fingerprint | None = None  # the model directory as of the last successful load
    attempted: Fingerprint | None = None  # ... as of the last load attempt (poll retries on change only)
    overridden: bool = False  # the last load replaced config or files: the next load reloads
    override_dir: str | None = None  # temporary directory of `file:` overrides, removed on retire

    def refresh_latest(self) -> None:
        self.latest = self.loaded[max(self.loaded)] if self.loaded else None


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
        self._locks: dict[str, asyncio.Lock] = {}
        # Cloud repositories by URL (parsing and client setup only: no request yet).
        self._cloud = {r: cloud.CloudRepository(r) for r in repositories if cloud.is_cloud(r)}

    # -- discovery ---------------------------------------------------------------------------
    def scan(self) -> None:
        """Add every model directory found (names already known keep their entries)."""
        self._apply_scan(self.discover())

    def discover(self) -> dict[str, list[str]]:
        """name -> the directories holding it, across every repository (file I/O; a bucket listing
        for a cloud repository, whose models map to their mirror directories)."""
        found: dict[str, list[str]] = {}
        for repo in self.repositories:
            if repo in self._cloud:
                mirror = self._cloud[repo]
                for name in mirror.list_models():
                    found.setdefault(name, []).append(mirror.local_path(name))
                continue
            if not os.path.isdir(repo):
                raise TritonError(ErrorCode.INTERNAL, f"failed to stat file {repo}")
            for name in sorted(os.listdir(repo)):
                path = os.path.join(repo, name)
                if os.path.isdir(path) and not name.startswith("."):
                    found.setdefault(name, []).append(path)
        return found

    def _apply_scan(self, found: dict[str, list[str]]) -> None:
        for name, paths in found.items():
            entry = self.models.get(name)
            if entry is None:
                entry = self.models[name] = ModelEntry(name, paths[0])
            elif not entry.path and len(paths) == 1:
                entry.path = paths[0]  # a files-only model (or a resolved duplicate) now on disk
            if len(paths) > 1:
                entry.path = None
                entry.reason = "model appears in two or more repositories"
            else:
                entry.reason = ""

    # -- loading -----------------------------------------------------------------------------
    def load(self, name: str) -> list[str]:
        """Load every version the policy selects; returns error lines (empty on success)."""
        entry = self.models.get(name)
        if entry is None:
            raise TritonError(ErrorCode.INTERNAL, f"failed to load '{name}', failed to poll from model repository")
        if entry.path is None:
            return [f"{name}: {entry.reason}"]
        try:
            self._sync(entry.path)
            entry.fingerprint = entry.attempted = control.fingerprint(entry.path)
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
        for entry in list(self.models.values()):
            async with self._lock(entry.name):  # a load under way swaps in first, then goes too
                await self._unload_versions(entry, list(entry.loaded))
                control.remove_dir(entry.override_dir)
                entry.override_dir = None

    # -- runtime model control (on the loop; file I/O and building in the executor) -----------
    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def load_async(self, name: str, override: LoadOverride | None = None) -> list[str]:
        """Load or reload `name`; returns error lines (empty on success). Unchanged files and no
        override: a no-op. A failed reload leaves the serving versions serving."""
        if name not in self.models or not self.models[name].path:
            self._apply_scan(await _off_loop(self.discover))
        entry = self.models.get(name)
        if entry is None and override is not None and override.files:
            entry = self.models[name] = ModelEntry(name, "")
        if entry is None or not (entry.path or entry.override_dir or (override and override.files)):
            raise TritonError(ErrorCode.INTERNAL, f"failed to load '{name}', failed to poll from model repository")
        async with self._lock(name):
            return await self._load_locked(entry, override)

    async def _load_locked(self, entry: ModelEntry, override: LoadOverride | None) -> list[str]:
        if entry.path is None:
            return [f"{entry.name}: {entry.reason}"]
        new_dir = None
        if override is not None and override.files:
            new_dir = await _off_loop(control.write_override_dir, entry.name, override.files)
        model_dir = new_dir or entry.path or entry.override_dir or ""
        if model_dir == entry.path:
            try:  # Triton: a load re-reads the model from its repository (here: the bucket)
                await _off_loop(self._sync, model_dir)
            except TritonError as e:
                return self._fail_prepare(entry, e)
        fingerprint = await _off_loop(control.fingerprint, model_dir)
        if (override is None and not entry.overridden and entry.loaded and fingerprint == entry.fingerprint
                and all(s.state is _READY for s in entry.states.values() if s.reason != "unloaded")):
            return []  # Triton: a second load with no changes is a no-op
        entry.attempted = fingerprint
        config_override = override.config if override is not None else None
        try:
            prepared = await _off_loop(prepare_model, model_dir, entry.name, self.settings, config_override)
        except TritonError as e:
            control.remove_dir(new_dir)
            return self._fail_prepare(entry, e)
        errors = await self._load_dependencies(prepared)
        if errors:
            for version in prepared.versions:
                self._fail_or_keep(entry, version, errors[0])
            control.remove_dir(new_dir)
            return [f"version {v} is at UNAVAILABLE state: {_reason(errors[0])}" for v in prepared.versions]
        lines = await self._build_versions(entry, prepared, model_dir)
        if len(lines) == len(prepared.versions):  # nothing new serves: the old directory still does
            control.remove_dir(new_dir)
            return lines
        stale = [v for v in entry.loaded if v not in prepared.versions]
        await self._unload_versions(entry, stale)
        if new_dir is not None or model_dir == entry.path:  # the old override directory serves no more
            await _off_loop(control.remove_dir, entry.override_dir)
            entry.override_dir = new_dir
        entry.overridden = override is not None
        entry.fingerprint = fingerprint
        return lines

    def _fail_prepare(self, entry: ModelEntry, error: TritonError) -> list[str]:
        """The config could not be read or completed: each version fails, or keeps its old model."""
        versions = sorted(entry.loaded) or _disk_versions(entry.path or "") or [1]
        for v in versions:
            self._fail_or_keep(entry, v, error)
        return [f"version {v} is at UNAVAILABLE state: {_reason(error)}" for v in versions]

    def _fail_or_keep(self, entry: ModelEntry, version: int, error: TritonError) -> None:
        if version in entry.loaded:  # a failed reload: the old model keeps serving
            state = entry.states[version]
            if state.state is ModelReadyState.LOADING:
                state.set(_READY)
            log.error("failed to load '%s' version %d: %s; the loaded model stays", entry.name, version,
                      _reason(error))
        else:
            self._fail(entry, version, error)

    async def _load_dependencies(self, prepared: PreparedModel) -> list[TritonError]:
        """An ensemble's composing models load first; one that cannot serve fails the ensemble."""
        if prepared.config.platform != "ensemble":
            return []
        name = prepared.config.name
        self._loading.add(name)
        try:
            for step in prepared.config.ensemble_scheduling.step:
                dep = step.model_name
                entry = self.models.get(dep)
                if (entry is None or not entry.loaded) and dep not in self._loading:
                    try:
                        await self.load_async(dep)
                    except TritonError:
                        pass  # reported below as a missing dependency
                entry = self.models.get(dep)
                if entry is None or not entry.loaded:
                    return [TritonError(ErrorCode.INVALID_ARG,
                                        f"ensemble '{name}' depends on '{dep}' which has no loaded version")]
        finally:
            self._loading.discard(name)
        return []

    async def _build_versions(self, entry: ModelEntry, prepared: PreparedModel, model_dir: str) -> list[str]:
        """Build each version off the loop, then swap it in; returns error lines."""
        errors = []
        for version in prepared.versions:
            state = entry.states.setdefault(version, VersionState())
            state.set(ModelReadyState.LOADING)
            log.info("loading: %s:%d", entry.name, version)
            location = ModelLocation(entry.name, version, model_dir, os.path.join(model_dir, str(version)))
            try:
                model = await _off_loop(self._build, prepared, location)
            except Exception as e:  # a broken model file must not take the server down
                error = e if isinstance(e, TritonError) else TritonError(
                    ErrorCode.INTERNAL, f"{type(e).__name__}: {e}")
                self._fail_or_keep(entry, version, error)
                errors.append(f"version {version} is at UNAVAILABLE state: {_reason(error)}")
                continue
            old = entry.loaded.get(version)
            entry.loaded[version] = model  # the swap: from here on requests resolve to the new model
            state.set(_READY)
            entry.refresh_latest()
            log.info("successfully loaded '%s' version %d", entry.name, version)
            if old is not None:
                await _retire(old)
        return errors

    def _build(self, prepared: PreparedModel, location: ModelLocation) -> Model:
        if prepared.config.platform == "ensemble":
            return build_ensemble(prepared.config, prepared.spec, location, self.resolve, self._validate_step)
        return build_model(prepared.backend_cls, prepared.config, prepared.spec, location, caller=self.caller)

    async def unload_async(self, name: str, unload_dependents: bool = False) -> None:
        """Unload every version of `name` (unknown or unloaded: nothing to do). With
        `unload_dependents`, also the ensembles that use it and, for an ensemble, the composing
        models no other loaded ensemble uses."""
        entry = self.models.get(name)
        if entry is None:
            return
        async with self._lock(name):
            composing = {s.model_name for m in entry.loaded.values()
                         for s in m.config.ensemble_scheduling.step} if unload_dependents else set()
            versions = list(entry.loaded)
            await self._unload_versions(entry, versions)
            for v, state in entry.states.items():  # failed versions read "unloaded" too, as in Triton
                if v not in versions and state.state is ModelReadyState.UNAVAILABLE:
                    state.set(ModelReadyState.UNAVAILABLE, "unloaded")
            await _off_loop(control.remove_dir, entry.override_dir)
            entry.override_dir = None
            entry.overridden = False
        if not unload_dependents:
            return
        for user in self._ensembles_using(name):
            await self.unload_async(user, True)
        for dep in sorted(composing):
            if not self._ensembles_using(dep):
                await self.unload_async(dep, True)

    def _ensembles_using(self, name: str) -> list[str]:
        """Loaded ensembles with a step on `name`."""
        return sorted(e.name for e in self.models.values()
                      if any(s.model_name == name for m in e.loaded.values()
                             for s in m.config.ensemble_scheduling.step))

    async def _unload_versions(self, entry: ModelEntry, versions: list[int]) -> None:
        """Stop new requests at once (out of `loaded`), then retire each model after its in-flight work."""
        retiring = []
        for v in versions:
            retiring.append((v, entry.loaded.pop(v)))
            entry.states[v].set(ModelReadyState.UNLOADING)
        entry.refresh_latest()
        for v, model in retiring:
            await _retire(model)
            entry.states[v].set(ModelReadyState.UNAVAILABLE, "unloaded")
            log.info("successfully unloaded '%s' version %d", entry.name, v)

    async def poll(self) -> None:
        """Poll mode: load added models, reload changed ones, unload (and forget) removed ones."""
        found = await _off_loop(self.discover)
        for name in [n for n, e in self.models.items() if n not in found and e.path != ""]:
            await self.unload_async(name)
            await _off_loop(self._forget, self.models[name].path)
            del self.models[name]  # gone from disk: gone from the index, as in Triton
            self._locks.pop(name, None)
        self._apply_scan(found)
        for name in sorted(found):
            entry = self.models[name]
            if entry.path is None:
                continue
            try:
                await _off_loop(self._sync, entry.path)
            except TritonError as e:  # the serving copy stays; the next poll tries again
                log.error("poll: failed to load '%s': %s", name, e.message)
                continue
            if await _off_loop(control.fingerprint, entry.path) != entry.attempted:
                if errors := await self.load_async(name):
                    log.error("poll: failed to load '%s': %s", name, "; ".join(errors))

    # -- cloud mirrors (file and network I/O: off the loop) -----------------------------------
    def _sync(self, path: str) -> None:
        """Refresh a cloud model's mirror directory from its bucket; local paths: nothing to do."""
        for mirror in self._cloud.values():
            if (name := mirror.owns(path)) is not None:
                mirror.sync(name)

    def _forget(self, path: str | None) -> None:
        for mirror in self._cloud.values():
            if path and (name := mirror.owns(path)) is not None:
                mirror.forget(name)

    # -- lookup (hot path) -------------------------------------------------------------------
    def resolve(self, name: str, version: int = -1) -> Model:
        entry = self.models.get(name)
        if entry is not None:
            if version < 0:
                if entry.latest is not None:
                    return entry.latest
            elif (model := entry.loaded.get(version)) is not None:
                return model
        if entry is None or not entry.states:
            raise not_found(f"Request for unknown model: '{name}' is not found")
        if version < 0:
            raise not_found(f"Request for unknown model: '{name}' has no available versions")
        state = entry.states.get(version)
        if state is None:
            raise not_found(f"Request for unknown model: '{name}' version {version} is not found")
        raise unavailable(f"Request for unknown model: '{name}' version {version} is not at ready state")

    def ready_versions(self, name: str) -> list[Model]:
        entry = self.models.get(name)
        if entry is None:
            return []
        return [entry.loaded[v] for v in sorted(entry.loaded)]

    def all_ready(self) -> bool:
        """Strict readiness: every version READY, unloaded on purpose, serving while it reloads, or
        being loaded. Beyond Triton (its issues #6230 and #7014): a load under way, on request or by
        poll, does not take a serving server out of its load balancer; a load that fails does."""
        return all(s.state is _READY or s.state is _LOADING or s.reason == "unloaded" or v in e.loaded
                   for e in self.models.values() for v, s in e.states.items())

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


async def _off_loop(fn: Callable[..., _T], *args: Any) -> _T:
    """Run blocking file I/O or model building in the loop's executor."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))


async def _retire(model: Model) -> None:
    """Unload a model that no longer serves. A request may have resolved it just before it was
    replaced, with its scheduler step still queued on the loop: yielding first lets those steps
    reach the scheduler, whose stop then waits for them."""
    for _ in range(3):
        await asyncio.sleep(0)
    await model.unload()
