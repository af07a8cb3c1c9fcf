"""A small renderer for the Go-template subset that scripts/deploy/helm/triton-asyncio uses.

There is no helm binary here, so the chart tests render it with this. The subset: text,
`{{/* comments */}}`, `{{ define "n" }}...{{ end }}` (in _helpers.tpl), `{{ if P }}...{{ else }}...{{ end }}`,
and pipelines of `.Values.a.b` / `.Release.X` / `.Chart.X` / `.` paths, string and integer literals
and the functions include, toYaml, nindent, indent, quote and not; `{{-` and `-}}` trim whitespace as
in Go. Anything else raises TemplateError, so a template that leaves the subset fails the tests
instead of rendering wrongly. A missing value raises too (helm would print an empty string or fail).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)
_WORD = re.compile(r'"(?:[^"\\]|\\.)*"|\||[^\s|]+')
_EOF = "<end of file>"


class TemplateError(Exception):
    pass


@dataclass
class _If:
    cond: str
    then: list = field(default_factory=list)
    orelse: list = field(default_factory=list)


def _lex(src: str) -> list[tuple[str, str]]:
    """("text", s) and ("action", s) items, with Go's {{- / -}} whitespace trimming applied."""
    items: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in _ACTION.finditer(src):
        text = src[pos:m.start()]
        if trim_next:
            text = text.lstrip()
        if m.group(1):
            text = text.rstrip()
        items.append(("text", text))
        items.append(("action", m.group(2)))
        pos, trim_next = m.end(), bool(m.group(3))
    tail = src[pos:]
    items.append(("text", tail.lstrip() if trim_next else tail))
    return items


def _parse(items, defines: dict, pos: int, stop: tuple[str, ...]) -> tuple[list, int, str]:
    """Nodes until one of the `stop` keywords; returns (nodes, next position, keyword met)."""
    nodes: list = []
    while pos < len(items):
        kind, text = items[pos]
        pos += 1
        if kind == "text":
            if text:
                nodes.append(text)
            continue
        word = text.split(None, 1)[0] if text else ""
        rest = text[len(word):].strip()
        if text.startswith("/*"):
            continue
        if word in stop:
            return nodes, pos, word
        if word == "if":
            node = _If(rest)
            node.then, pos, met = _parse(items, defines, pos, ("else", "end"))
            if met == "else":
                node.orelse, pos, _ = _parse(items, defines, pos, ("end",))
            nodes.append(node)
        elif word == "define":
            body, pos, _ = _parse(items, defines, pos, ("end",))
            defines[_literal(rest)] = body
        elif word in ("range", "with", "template", "block", "else", "end"):
            raise TemplateError(f"unsupported action {{{{ {text} }}}}")
        else:
            nodes.append(("expr", text))
    if _EOF not in stop:
        raise TemplateError("missing {{ end }}")
    return nodes, pos, _EOF


def _literal(word: str) -> str:
    if not (word.startswith('"') and word.endswith('"')):
        raise TemplateError(f"expected a string literal, got {word}")
    return word[1:-1].encode().decode("unicode_escape")


def to_yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=False).rstrip("\n")


def _go_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise TemplateError(f"printing a {type(value).__name__} without toYaml: {value!r}")
    return str(value)


def _truthy(value: Any) -> bool:
    return bool(value)  # Go's truth: false, 0, "", nil and empty collections are false


class Renderer:
    def __init__(self, chart_dir: str):
        self.chart_dir = chart_dir
        with open(os.path.join(chart_dir, "Chart.yaml"), encoding="utf-8") as f:
            self.chart = yaml.safe_load(f)
        with open(os.path.join(chart_dir, "values.yaml"), encoding="utf-8") as f:
            self.values = yaml.safe_load(f)
        self.defines: dict[str, list] = {}
        self.templates: dict[str, list] = {}
        tdir = os.path.join(chart_dir, "templates")
        for name in sorted(os.listdir(tdir)):
            with open(os.path.join(tdir, name), encoding="utf-8") as f:
                nodes, _, _ = _parse(_lex(f.read()), self.defines, 0, (_EOF,))
            if not name.startswith("_"):
                self.templates[name] = nodes

    def render(self, overrides: dict | None = None, release: str = "demo",
               namespace: str = "default") -> dict[str, str]:
        """{template file name: rendered text} for every non-helper template."""
        ctx = {
            "Values": _merge(self.values, overrides or {}),
            "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
            "Chart": {"Name": self.chart["name"], "Version": self.chart["version"],
                      "AppVersion": self.chart.get("appVersion", "")},
        }
        return {name: self._run(nodes, ctx) for name, nodes in self.templates.items()}

    def manifests(self, overrides: dict | None = None) -> list[dict]:
        docs = []
        for text in self.render(overrides).values():
            docs.extend(d for d in yaml.safe_load_all(text) if d)
        return docs

    def _run(self, nodes: list, ctx: Any) -> str:
        out = []
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif isinstance(node, _If):
                branch = node.then if _truthy(self._pipeline(node.cond, ctx)) else node.orelse
                out.append(self._run(branch, ctx))
            else:
                out.append(_go_string(self._pipeline(node[1], ctx)))
        return "".join(out)

    def _pipeline(self, text: str, ctx: Any) -> Any:
        words = _WORD.findall(text)
        commands: list[list[str]] = [[]]
        for w in words:
            if w == "|":
                commands.append([])
            else:
                commands[-1].append(w)
        value, piped = None, False
        for cmd in commands:
            if not cmd:
                raise TemplateError(f"empty command in {text!r}")
            args = [self._arg(w, ctx) for w in cmd[1:]] + ([value] if piped else [])
            value, piped = self._call(cmd[0], args, ctx), True
        return value

    def _arg(self, word: str, ctx: Any) -> Any:
        if word.startswith('"'):
            return _literal(word)
        if re.fullmatch(r"-?\d+", word):
            return int(word)
        if word.startswith("."):
            return _lookup(ctx, word)
        raise TemplateError(f"unsupported argument {word!r}")

    def _call(self, head: str, args: list, ctx: Any) -> Any:
        if head.startswith(".") or head.startswith('"') or re.fullmatch(r"-?\d+", head):
            if args:
                raise TemplateError(f"{head} takes no arguments")
            return self._arg(head, ctx)
        if head == "include":
            name, sub = args
            if name not in self.defines:
                raise TemplateError(f"no template {name!r}")
            return self._run(self.defines[name], sub)
        if head == "toYaml":
            return to_yaml(*args)
        if head in ("nindent", "indent"):
            n, s = args
            body = "\n".join((" " * n + line) if line else line for line in str(s).split("\n"))
            return ("\n" if head == "nindent" else "") + body
        if head == "quote":
            (v,) = args
            return '"' + _go_string(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
        if head == "not":
            (v,) = args
            return not _truthy(v)
        raise TemplateError(f"unsupported function {head!r}")


def _lookup(ctx: Any, path: str) -> Any:
    if path == ".":
        return ctx
    value = ctx
    for part in path.strip(".").split("."):
        if not isinstance(value, dict) or part not in value:
            raise TemplateError(f"no value at {path}")
        value = value[part]
    return value


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
