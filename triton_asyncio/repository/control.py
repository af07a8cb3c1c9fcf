"""Model control's pure parts: load overrides, their temporary model directory, change detection.

Rules: nothing here touches the event loop or the manager's tables; the manager calls these
(off the loop where they do file I/O). A `config` override is protobuf JSON of a ModelConfig and
replaces config.pbtxt for one load. `file:<path>` overrides form a brand-new model directory and
require a `config`; a path must stay inside that directory (no absolute paths, no `..` parts).
A model's fingerprint is every file's and directory's (relative path, mtime, size): poll mode
reloads a model whose fingerprint changed, and an explicit load of an unchanged model is a no-op.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

from ..errors import invalid_arg
from ..pb import model_config_pb2

FILE_PREFIX = "file:"

# (relative path, mtime ns, size); directories are listed with size -1 so empty version dirs count.
Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True, slots=True)
class LoadOverride:
    """What one load request replaces: the config (parsed) and the model files (path -> bytes)."""

    config: Any = None  # inference.ModelConfig or None
    files: dict[str, bytes] = field(default_factory=dict)


def parse_config_override(text: str) -> Any:
    """protobuf JSON -> ModelConfig, as Triton parses a `config` load parameter (400 on failure)."""
    try:
        return json_format.Parse(text, model_config_pb2.ModelConfig())
    except (json_format.ParseError, ValueError, TypeError) as e:
        raise invalid_arg(f"Invalid config override: {e}") from None


def make_override(name: str, config: str | None, files: dict[str, bytes]) -> LoadOverride | None:
    """Check and combine a load's parameters; None when the load overrides nothing."""
    if config is None and not files:
        return None
    if files and config is None:
        raise invalid_arg(f"failed to load '{name}': a 'config' parameter is required with 'file:' parameters")
    for path in files:
        check_override_path(path)
    return LoadOverride(parse_config_override(config) if config is not None else None, dict(files))


def check_override_path(path: str) -> None:
    """A `file:` path must name a file inside the temporary model directory."""
    parts = path.replace("\\", "/").split("/")
    if not path or os.path.isabs(path) or path.startswith("/") or ".." in parts or "\x00" in path \
            or all(p in ("", ".") for p in parts):
        raise _bad_path(path)


def _bad_path(path: str) -> Exception:
    return invalid_arg(f"invalid load parameter '{FILE_PREFIX}{path}': the file path must be relative "
                       f"and stay inside the model directory")


def write_override_dir(name: str, files: dict[str, bytes]) -> str:
    """Write the files into a fresh temporary directory; returns its path (removed by the caller)."""
    root = tempfile.mkdtemp(prefix=f"triton_asyncio_{name}_")
    try:
        for rel, data in files.items():
            check_override_path(rel)  # again: this is the last point before writing
            target = os.path.join(root, rel)
            # normpath guards against any spelling the part check above did not foresee
            if os.path.commonpath([root, os.path.normpath(target)]) != root:
                raise _bad_path(rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(data)
    except BaseException:
        remove_dir(root)
        raise
    return root


def remove_dir(path: str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


def fingerprint(model_dir: str) -> Fingerprint:
    """Every entry under the model directory with its mtime and size; () when it is gone."""
    rows: list[tuple[str, int, int]] = []
    for root, dirs, files in os.walk(model_dir):
        dirs.sort()
        for d in dirs:
            rows.append(_stat_row(model_dir, os.path.join(root, d), directory=True))
        for f in sorted(files):
            rows.append(_stat_row(model_dir, os.path.join(root, f), directory=False))
    return tuple(r for r in rows if r[0])


def _stat_row(model_dir: str, path: str, *, directory: bool) -> tuple[str, int, int]:
    try:
        st = os.stat(path)
    except OSError:  # removed while we walk: the next poll sees the final state
        return ("", 0, 0)
    return (os.path.relpath(path, model_dir), st.st_mtime_ns, -1 if directory else st.st_size)
