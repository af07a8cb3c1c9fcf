"""From a model directory to what building a version needs: config, spec, backend, versions.

Rules: Triton's order — read config.pbtxt (or configs/<name>.pbtxt), let the backend
auto-complete it, normalize and validate, then pick versions by policy. Pure of the event loop.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..backends.base import Backend, ModelLocation
from ..backends.registry import backend_class, complete_backend_fields
from ..errors import invalid_arg
from . import config as config_io
from . import normalize, versions
from .ensemble import EnsembleBackend


@dataclass(frozen=True, slots=True)
class LoadSettings:
    model_config_name: str = ""
    auto_complete: bool = True


@dataclass(frozen=True, slots=True)
class PreparedModel:
    config: Any
    spec: Any
    backend_cls: type[Backend]
    versions: list[int]


def prepare_model(path: str, name: str, settings: LoadSettings, config_override: Any = None) -> PreparedModel:
    """`config_override` (a ModelConfig from a load request) replaces the config file; it is copied,
    since auto-complete and normalization fill it in place."""
    if config_override is not None:
        config = config_io.empty_config()
        config.CopyFrom(config_override)
    else:
        config = config_io.read_config(path, settings.model_config_name)
    available = versions.find_versions(path)
    if config is None:
        if not settings.auto_complete:
            raise invalid_arg(f"failed to load model '{name}': model configuration file not found "
                              f"and auto-complete is disabled")
        config = config_io.empty_config()
    if not config.name:
        config.name = name
    complete_backend_fields(config, path, available)
    backend_cls = EnsembleBackend if config.platform == "ensemble" else backend_class(config)
    if settings.auto_complete and available:
        first = available[-1]
        backend_cls.auto_complete_config(config, ModelLocation(name, first, path, os.path.join(path, str(first))))
    normalize.normalize_and_validate(config, name=name, auto_complete=settings.auto_complete)
    selected = versions.select_versions(config, available)
    if not selected:
        raise invalid_arg(f"model '{name}' has no version directories matching its version_policy")
    return PreparedModel(config, normalize.model_spec(config), backend_cls, selected)
