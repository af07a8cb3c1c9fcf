"""Layering rules from style.md, checked over the source (asyncpg's test__sourcecode idea)."""
from __future__ import annotations

import ast
import pathlib

PKG = pathlib.Path(__file__).resolve().parents[2] / "triton_asyncio"

# Layer rank: a module may import only project modules of strictly lower rank (or its own package).
RANK = {
    "errors": 0, "pb": 0, "core": 1, "codec": 2, "memory": 2, "metrics": 2,
    "scheduling": 3, "backends": 3, "repository": 4, "server": 5, "transport": 6, "cli": 7, "__main__": 8,
}
THIRD_PARTY_HOMES = {
    "h11": ("transport",), "h2": ("transport",), "uvloop": ("cli",),
    "onnxruntime": ("backends",), "tensorrt": ("backends", "memory"), "pycuda": ("memory",),
    "cuda": ("memory",),
}


def _modules():
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        if rel.parts[0] == "pb":
            continue
        yield rel, ast.parse(path.read_text(encoding="utf-8"))


def _top(rel: pathlib.PurePath) -> str:
    return rel.parts[0].removesuffix(".py")


def _project_imports(rel, tree):
    pkg_parts = list(rel.parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[: len(pkg_parts) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
                if not target:  # `from .. import X` at package root
                    for alias in node.names:
                        yield alias.name
                else:
                    yield target[0]
            elif node.module and node.module.startswith("triton_asyncio."):
                yield node.module.split(".")[1]


def _third_party(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.module.split(".")[0]


def test_layers_import_only_downwards():
    bad = []
    for rel, tree in _modules():
        top = _top(rel)
        if top == "__init__":
            continue
        for target in _project_imports(rel, tree):
            if target in ("__init__", "TRITON_VERSION", "__version__") or target == top:
                continue
            if target in RANK and RANK[target] >= RANK[top]:
                bad.append(f"{rel} imports {target}")
    assert not bad, bad


def test_core_and_codec_never_import_asyncio():
    bad = [str(rel) for rel, tree in _modules()
           if _top(rel) in ("core", "codec") and "asyncio" in set(_third_party(tree))]
    assert not bad, bad


def test_third_party_imports_have_one_home():
    bad = []
    for rel, tree in _modules():
        for name in set(_third_party(tree)):
            homes = THIRD_PARTY_HOMES.get(name)
            if homes and _top(rel) not in homes:
                bad.append(f"{rel} imports {name}")
    assert not bad, bad
