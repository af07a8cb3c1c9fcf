#!/usr/bin/env python3
"""Models for the scheduling benchmarks, built here (no downloads), into a repository of their own.

  mlp       FP32 [512] -> Gemm 2048 + Relu -> Gemm 2048 + Relu -> Gemm 512: 6.3 M parameters
            (25 MiB), max_batch_size 32, no dynamic batching: each request executes alone
  mlp_dyna  the same graph and weights, served by the dynamic batcher (max_queue_delay 0: a batch
            is whatever waits when an instance frees up)

Usage: make_bench_repo.py OUTDIR
"""
from __future__ import annotations

import os
import sys

import numpy as np
from onnx import TensorProto, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
from make_example_repo import _onnx_model, _write  # noqa: E402

F32 = TensorProto.FLOAT
WIDTHS = (512, 2048, 2048, 512)
MAX_BATCH = 32


def mlp_graph(name: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "INPUT0"
    for i, (n_in, n_out) in enumerate(zip(WIDTHS, WIDTHS[1:], strict=False)):
        w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
        b = np.zeros(n_out, np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        out = "OUTPUT0" if i == len(WIDTHS) - 2 else f"h{i}"
        gemm_out = out if out == "OUTPUT0" else f"g{i}"
        nodes.append(("Gemm", [prev, f"w{i}", f"b{i}"], [gemm_out], {}))
        if out != "OUTPUT0":
            nodes.append(("Relu", [gemm_out], [out], {}))
        prev = out
    return _onnx_model(name, [("INPUT0", F32, [WIDTHS[0]])], [("OUTPUT0", F32, [WIDTHS[-1]])], nodes, inits)


def _config(name: str, extra: str = "") -> str:
    return (f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {MAX_BATCH}\n{extra}'
            f'input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ {WIDTHS[0]} ] }} ]\n'
            f'output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ {WIDTHS[-1]} ] }} ]\n'
            'instance_group [ { count: 1, kind: KIND_CPU } ]\n')


def build(outdir: str) -> str:
    os.makedirs(outdir, exist_ok=True)
    _write(outdir, "mlp", {1: mlp_graph("mlp")}, _config("mlp"))
    _write(outdir, "mlp_dyna", {1: mlp_graph("mlp_dyna")},
           _config("mlp_dyna", "dynamic_batching { max_queue_delay_microseconds: 0 }\n"))
    return outdir


if __name__ == "__main__":
    print(build(sys.argv[1]))
