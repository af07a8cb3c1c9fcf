"""Version directories of a model and the version_policy that picks which of them to load (spec 5.1, 5.2).

Rules: filesystem listing and pure selection only; no config parsing and no loading. Directory names
are read the way Triton's std::stoll reads them; the policy is any object shaped like
inference.ModelVersionPolicy (duck-typed, so this module imports nothing but errors).
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from triton_asyncio.errors import invalid_arg

log = logging.getLogger("triton_asyncio.repository")

# Subdirectories of a model directory that are never versions.
RESERVED_DIRS = frozenset({"warmup", "initial_state", "configs"})
_INT64_MAX = 2**63 - 1
# std::stoll: optional leading whitespace, optional sign, then digits (the rest is ignored).
_STOLL = re.compile(r"\s*([+-]?\d+)")


def parse_version_dirname(name: str) -> int | None:
    """The version a directory name denotes, or None (with a warning) when Triton would ignore it."""
    if name in RESERVED_DIRS:
        return None
    if len(name) > 1 and name[0] == "0":
        log.warning("ignore version directory '%s' which contains leading zeros in its directory name", name)
        return None
    match = _STOLL.match(name)
    if match is None:
        log.warning("ignore version directory '%s' which fails to convert to integral number", name)
        return None
    version = int(match.group(1))
    if version < 0 or version > _INT64_MAX:
        # stoll would accept "-1" or throw out_of_range; a negative version would collide with
        # "-1 = latest" in requests and ensemble steps, so we skip it rather than load it.
        log.warning("ignore version directory '%s' which is not a valid model version", name)
        return None
    return version


def version_dirs(model_dir: str | Path) -> dict[int, str]:
    """{version: directory path} for every numeric subdirectory; the first spelling wins on a tie ("3", "3a")."""
    found: dict[int, str] = {}
    try:
        entries = sorted(os.scandir(model_dir), key=lambda e: e.name)
    except OSError:
        return found
    for entry in entries:
        if not entry.is_dir():
            continue
        version = parse_version_dirname(entry.name)
        if version is not None and version not in found:
            found[version] = entry.path
    return found


def find_versions(model_dir: str | Path) -> list[int]:
    """The available versions of a model, ascending."""
    return sorted(version_dirs(model_dir))


def versions_to_load(model_name: str, available: Iterable[int], policy: Any) -> list[int]:
    """Apply a ModelVersionPolicy to the available versions; ascending result.

    latest{N}: the N largest; all{}: every one; specific{versions}: the listed ones that exist
    (a missing one is logged, as Triton does). An unset policy is the normalised default, latest 1.
    Nothing selected -> INVALID_ARG with Triton's message.
    """
    existing = sorted(set(available), reverse=True)
    choice = policy.WhichOneof("policy_choice") if policy is not None else None
    if choice == "specific":
        selected = []
        for version in policy.specific.versions:
            if version in existing:
                selected.append(version)
            else:
                log.error("version %d is specified for model '%s', but the version directory is not present",
                          version, model_name)
    elif choice == "all":
        selected = existing
    else:
        count = policy.latest.num_versions if choice == "latest" else 1
        selected = existing[:max(count, 0)]
    if not selected:
        raise invalid_arg(f"at least one version must be available under the version policy of model "
                          f"'{model_name}'")
    return sorted(set(selected))


def select_versions(config: Any, available: Iterable[int]) -> list[int]:
    """`versions_to_load` for a normalised ModelConfig."""
    policy = config.version_policy if config.HasField("version_policy") else None
    return versions_to_load(config.name, available, policy)
