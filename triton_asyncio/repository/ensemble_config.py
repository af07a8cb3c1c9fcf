"""Ensemble section checks (Triton's ValidateEnsembleSchedulingConfig): section shape and step data flow.

Rules: only what one config can tell; checks that need the composing models (data types, shapes,
max_batch_size, decoupled mixing) belong to the repository manager, which has them loaded.
"""
from __future__ import annotations

from typing import Any

from triton_asyncio.errors import invalid_arg


class _Tensor:
    """A node of the ensemble data-flow graph (one ensemble tensor)."""

    __slots__ = ("name", "is_output", "ready", "prev", "next")

    def __init__(self, name: str, is_output: bool) -> None:
        self.name, self.is_output, self.ready = name, is_output, False
        self.prev: list[_Tensor] = []
        self.next: list[_Tensor] = []


def validate_ensemble(config: Any) -> None:
    """ValidateEnsembleSchedulingConfig: shape of the section plus the data flow between steps.
    Checks that need the composing models (types, shapes, max_batch_size) belong to the manager."""
    name = config.name
    if config.platform != "ensemble":
        raise invalid_arg(f"ensemble scheduling cannot be set for model '{name}' whose platform is not ensemble")
    if config.instance_group:
        raise invalid_arg(f"instance group should not be specified for ensemble '{name}'")
    if config.HasField("optimization"):
        raise invalid_arg(f"optimization should not be specified for ensemble '{name}'")
    if config.model_warmup:
        raise invalid_arg(f"model_warmup can not be specified for ensemble '{name}'")
    if not config.ensemble_scheduling.step:
        raise invalid_arg(f"must specify 'step' for ensemble '{name}'")
    tensors = _ensemble_graph(config)
    _propagate_ready(config, tensors)
    outputs = set()
    for output in config.output:
        node = tensors.get(output.name)
        if node is None:
            raise invalid_arg(f"ensemble output '{output.name}' for ensemble {name}' is not used")
        if not node.ready:
            raise invalid_arg(_not_written(name, node))
        outputs.add(output.name)
    for tname, node in tensors.items():
        if tname not in outputs and (not node.ready or not node.next):
            raise invalid_arg(f"ensemble tensor '{tname}' is unused in ensemble '{name}'")


def _ensemble_graph(config: Any) -> dict[str, _Tensor]:
    tensors: dict[str, _Tensor] = {}
    for index, step in enumerate(config.ensemble_scheduling.step):
        for field in ("model_name", "input_map", "output_map"):
            if not getattr(step, field):
                raise invalid_arg(f"must specify '{field}' in step {index} of ensemble '{config.name}'")
        produced = []
        for tname in step.output_map.values():
            node = tensors.get(tname)
            if node is None:
                node = tensors[tname] = _Tensor(tname, True)
            elif node.is_output:
                raise invalid_arg(f"ensemble tensor '{tname}' can appear in an output map only once for ensemble "
                                  f"'{config.name}' step {index}")
            else:
                node.is_output = True
            produced.append(node)
        for tname in step.input_map.values():
            node = tensors.setdefault(tname, _Tensor(tname, False))
            for out in produced:
                out.prev.append(node)
                node.next.append(out)
    return tensors


def _propagate_ready(config: Any, tensors: dict[str, _Tensor]) -> None:
    queue = []
    for io in config.input:
        node = tensors.get(io.name)
        if node is None:
            raise invalid_arg(f"ensemble input '{io.name}' for ensemble {config.name}' is not used")
        node.ready = True
        queue.append(node)
    while queue:
        for nxt in queue.pop(0).next:
            if not nxt.ready and all(p.ready for p in nxt.prev):
                nxt.ready = True
                queue.append(nxt)


def _not_written(ensemble: str, node: _Tensor) -> str:
    message = f"output '{node.name}' for ensemble '{ensemble}' is not written"
    last, prev, seen = node, node.prev, set()
    while prev:
        nodes, prev = prev, []
        for p in nodes:
            if not p.ready and p.name not in seen:
                seen.add(p.name)
                last, prev = p, p.prev
                break
    if last is not node:
        message += f": at least one of its depending tensors, '{last.name}', is not connected"
    return message
