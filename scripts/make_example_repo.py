#!/usr/bin/env python3
"""Build the example Triton model repository: small ONNX models, built with the `onnx` helper API.

  simple               INPUT0, INPUT1 INT32 dims [16], max_batch_size 8; OUTPUT0 = INPUT0 + INPUT1,
                       OUTPUT1 = INPUT0 - INPUT1
  simple_int8          the same in INT8 (wraps around on overflow)
  simple_dyna          like simple, served by the dynamic batcher (preferred batch sizes 4 and 8,
                       max queue delay 2000 us)
  simple_sequence      INPUT INT32 [1] + control START, max_batch_size 1, sequence_batching;
                       OUTPUT = INPUT * (1 + START)
  simple_sequence_oldest
                       the same graph, max_batch_size 8, sequence_batching with the oldest
                       strategy (4 candidate sequences, preferred batch size 4, max queue delay
                       200000 us): requests of concurrent sequences run as one batch
  simple_state         accumulator with implicit state, max_batch_size 8, sequence_batching
                       (direct): INPUT INT32 [1], state STATE_IN -> STATE_OUT (zero initial
                       state, not visible to clients); OUTPUT = INPUT + STATE_IN, STATE_OUT = OUTPUT
  simple_identity      INPUT0 BYTES (TYPE_STRING) dims [-1], max_batch_size 8; OUTPUT0 = INPUT0
  simple_autocomplete  like simple, but no config.pbtxt: the server completes the configuration
                       from the ONNX model (symbolic batch dim, so it can infer batching)
  simple_versions      like simple with versions 1 and 2, both served (version_policy specific):
                       v1: OUTPUT0 = INPUT0 + INPUT1; v2: OUTPUT0 = INPUT0 * INPUT1;
                       both: OUTPUT1 = INPUT0 - INPUT1
  big                  INPUT0 FP32 dims [262144] (1 MiB), max_batch_size 8; OUTPUT0 = INPUT0
  digits               INPUT FP32 dims [64] (an 8x8 image, pixels 0..16), max_batch_size 8;
                       PROBS FP32 dims [10] (softmax), labels.txt "zero".."nine": logistic
                       regression trained here on sklearn's bundled digits data set (no download)
  simple_ensemble      ensemble of two `simple` steps: INPUT0, INPUT1 -> (sum, diff) -> (sum + diff,
                       sum - diff), so OUTPUT0 = 2 * INPUT0, OUTPUT1 = 2 * INPUT1; empty version dir 1/

Every ONNX graph has a symbolic first dimension "batch". No downloads; needs numpy, onnx and
scikit-learn (for `digits`). Importable: `build_repository(outdir)`.
Usage: make_example_repo.py OUTDIR [--check]   (--check runs every model once in onnxruntime)
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys

import numpy as np
from onnx import TensorProto, checker, helper, numpy_helper, save

OPSET, IR_VERSION = 17, 8  # onnxruntime 1.31 runs both
MAX_BATCH = 8
I8, I32, F32, STR = TensorProto.INT8, TensorProto.INT32, TensorProto.FLOAT, TensorProto.STRING
CONFIG_TYPE = {I8: "TYPE_INT8", I32: "TYPE_INT32", F32: "TYPE_FP32", STR: "TYPE_STRING"}
DIGIT_LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SEED = 0


def _onnx_model(name, inputs, outputs, nodes, initializers=()):
    """inputs/outputs: (name, onnx type, dims without the batch dim); nodes: (op, ins, outs, attrs)."""
    def vi(n, t, dims):
        return helper.make_tensor_value_info(n, t, ["batch", *dims])
    graph = helper.make_graph(
        [helper.make_node(op, i, o, **attrs) for op, i, o, attrs in nodes], name,
        [vi(*x) for x in inputs], [vi(*x) for x in outputs], initializer=list(initializers))
    model = helper.make_model(graph, producer_name="triton_asyncio-example",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    checker.check_model(model)
    return model


def _config(name, inputs, outputs, extra="", output_extra=None):
    """config.pbtxt text as Triton's examples write it; output_extra: {output name: extra fields}."""
    output_extra = output_extra or {}

    def tensors(kind, items):
        rows = []
        for n, t, dims in items:
            more = f"\n    {output_extra[n]}" if n in output_extra else ""
            rows.append(f'  {{\n    name: "{n}"\n    data_type: {CONFIG_TYPE[t]}\n'
                        f'    dims: [ {", ".join(str(d) for d in dims)} ]{more}\n  }}')
        return f"{kind} [\n" + ",\n".join(rows) + "\n]\n"
    return (f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {MAX_BATCH}\n'
            + extra + tensors("input", inputs) + tensors("output", outputs)
            + "instance_group [ { count: 1, kind: KIND_CPU } ]\n")


def _arith(t, first_op="Add"):
    ins = [("INPUT0", t, [16]), ("INPUT1", t, [16])]
    outs = [("OUTPUT0", t, [16]), ("OUTPUT1", t, [16])]
    nodes = [(first_op, ["INPUT0", "INPUT1"], ["OUTPUT0"], {}), ("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"], {})]
    return ins, outs, nodes


def _write(outdir, name, versions, config_text=None, files=None):
    """versions: {version number: onnx ModelProto}; files: {file name: text} beside config.pbtxt."""
    d = os.path.join(outdir, name)
    shutil.rmtree(d, ignore_errors=True)
    for v, model in versions.items():
        os.makedirs(os.path.join(d, str(v)))
        save(model, os.path.join(d, str(v), "model.onnx"))
    texts = {"config.pbtxt": config_text} if config_text else {}
    for fname, text in {**texts, **(files or {})}.items():
        with open(os.path.join(d, fname), "w", encoding="utf-8") as f:
            f.write(text)


def _simple(outdir, name="simple", t=I32):
    ins, outs, nodes = _arith(t)
    _write(outdir, name, {1: _onnx_model(name, ins, outs, nodes)}, _config(name, ins, outs))


def _simple_dyna(outdir):
    name = "simple_dyna"
    ins, outs, nodes = _arith(I32)
    batching = "dynamic_batching {\n  preferred_batch_size: [ 4, 8 ]\n  max_queue_delay_microseconds: 2000\n}\n"
    _write(outdir, name, {1: _onnx_model(name, ins, outs, nodes)}, _config(name, ins, outs, extra=batching))


def _simple_identity(outdir):
    ins, outs = [("INPUT0", STR, [-1])], [("OUTPUT0", STR, [-1])]
    onnx_dims = [("INPUT0", STR, ["n"])], [("OUTPUT0", STR, ["n"])]
    model = _onnx_model("simple_identity", *onnx_dims, [("Identity", ["INPUT0"], ["OUTPUT0"], {})])
    _write(outdir, "simple_identity", {1: model}, _config("simple_identity", ins, outs))


def _simple_autocomplete(outdir):
    ins, outs, nodes = _arith(I32)
    _write(outdir, "simple_autocomplete", {1: _onnx_model("simple_autocomplete", ins, outs, nodes)})


def _simple_versions(outdir):
    name = "simple_versions"
    ins, outs, add_nodes = _arith(I32, "Add")
    _, _, mul_nodes = _arith(I32, "Mul")
    policy = "version_policy: { specific: { versions: [ 1, 2 ] } }\n"
    _write(outdir, name, {1: _onnx_model(name, ins, outs, add_nodes), 2: _onnx_model(name, ins, outs, mul_nodes)},
           _config(name, ins, outs, extra=policy))


def _big(outdir):
    ins, outs = [("INPUT0", F32, [262144])], [("OUTPUT0", F32, [262144])]
    model = _onnx_model("big", ins, outs, [("Identity", ["INPUT0"], ["OUTPUT0"], {})])
    _write(outdir, "big", {1: model}, _config("big", ins, outs))


def train_digits(verbose=True):
    """Logistic regression on sklearn's 8x8 digits (1797 images, bundled with scikit-learn).
    Returns (W [64, 10] float32, b [10] float32, test accuracy); pixels are used as given (0..16)."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.25, random_state=SEED, stratify=y)
    clf = LogisticRegression(max_iter=2000, C=1.0, random_state=SEED).fit(x_train, y_train)
    accuracy = float(clf.score(x_test, y_test))
    if verbose:
        print(f"digits: logistic regression test accuracy {accuracy:.4f} ({len(y_test)} held-out images)",
              file=sys.stderr)
    # fold the /16 scaling into the weights: softmax(x @ (W / 16) + b) on raw 0..16 pixels
    w = (clf.coef_.T / 16.0).astype(np.float32)
    b = clf.intercept_.astype(np.float32)
    return w, b, accuracy


def _digits(outdir, verbose=True):
    w, b, _ = train_digits(verbose)
    ins, outs = [("INPUT", F32, [64])], [("PROBS", F32, [10])]
    nodes = [("MatMul", ["INPUT", "W"], ["LOGITS"], {}), ("Add", ["LOGITS", "B"], ["SCORES"], {}),
             ("Softmax", ["SCORES"], ["PROBS"], {"axis": -1})]
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")]
    model = _onnx_model("digits", ins, outs, nodes, inits)
    config = _config("digits", ins, outs, output_extra={"PROBS": 'label_filename: "labels.txt"'})
    _write(outdir, "digits", {1: model}, config, {"labels.txt": "\n".join(DIGIT_LABELS) + "\n"})

def _simple_sequence(outdir, name="simple_sequence", max_batch=1, strategy=""):
    """Stateless stand-in for Triton's accumulator: OUTPUT = INPUT * (1 + START), so the first
    request of a sequence doubles its input: proof that the START control arrives."""
    ins, outs = [("INPUT", I32, [1]), ("START", I32, [1])], [("OUTPUT", I32, [1])]
    one = numpy_helper.from_array(np.array([1], np.int32), "ONE")
    nodes = [("Add", ["START", "ONE"], ["SCALE"], {}), ("Mul", ["INPUT", "SCALE"], ["OUTPUT"], {})]
    model = _onnx_model(name, ins, outs, nodes, [one])
    config = (f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {max_batch}\n'
              "sequence_batching {\n  max_sequence_idle_microseconds: 5000000\n" + strategy +
              '  control_input [ { name: "START" control [ { kind: CONTROL_SEQUENCE_START '
              "int32_false_true: [ 0, 1 ] } ] } ]\n}\n"
              'input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
              'output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
              "instance_group [ { count: 1, kind: KIND_CPU } ]\n")
    _write(outdir, name, {1: model}, config)


def _simple_sequence_oldest(outdir):
    # a long queue delay: a step's requests from several sequences, sent together, form one batch
    oldest = ("  oldest {\n    max_candidate_sequences: 4\n    preferred_batch_size: [ 4 ]\n"
              "    max_queue_delay_microseconds: 200000\n  }\n")
    _simple_sequence(outdir, "simple_sequence_oldest", MAX_BATCH, oldest)


def _simple_state(outdir):
    """Triton's implicit-state accumulator: the batcher feeds STATE_OUT of one request back as
    STATE_IN of the next; STATE_* are declared only in the `state` block, as Triton wants."""
    name = "simple_state"
    ins, outs = [("INPUT", I32, [1]), ("STATE_IN", I32, [1])], [("OUTPUT", I32, [1]), ("STATE_OUT", I32, [1])]
    nodes = [("Add", ["INPUT", "STATE_IN"], ["OUTPUT"], {}), ("Identity", ["OUTPUT"], ["STATE_OUT"], {})]
    model = _onnx_model(name, ins, outs, nodes)
    config = (f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {MAX_BATCH}\n'
              "sequence_batching {\n  max_sequence_idle_microseconds: 5000000\n"
              '  state [ {\n    input_name: "STATE_IN"\n    output_name: "STATE_OUT"\n'
              "    data_type: TYPE_INT32\n    dims: [ 1 ]\n"
              '    initial_state { data_type: TYPE_INT32 dims: [ 1 ] zero_data: true name: "zeros" }\n  } ]\n}\n'
              'input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
              'output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
              "instance_group [ { count: 1, kind: KIND_CPU } ]\n")
    _write(outdir, name, {1: model}, config)


def _simple_ensemble(outdir):
    """Two `simple` steps chained through the ensemble tensors SUM and DIFF (needs `simple`)."""
    name = "simple_ensemble"
    path = os.path.join(outdir, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(os.path.join(path, "1"))  # Triton requires the version directory, even empty

    def step(in0, in1, out0, out1):
        return ('    {\n      model_name: "simple"\n      model_version: -1\n'
                f'      input_map {{ key: "INPUT0" value: "{in0}" }}\n'
                f'      input_map {{ key: "INPUT1" value: "{in1}" }}\n'
                f'      output_map {{ key: "OUTPUT0" value: "{out0}" }}\n'
                f'      output_map {{ key: "OUTPUT1" value: "{out1}" }}\n    }}')
    def tensors(prefix):
        return "".join(f'  {{ name: "{prefix}{i}" data_type: TYPE_INT32 dims: [ 16 ] }}{sep}\n'
                       for i, sep in ((0, ","), (1, "")))
    config = (f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: {MAX_BATCH}\n'
              + "input [\n" + tensors("INPUT") + "]\n"
              + "output [\n" + tensors("OUTPUT") + "]\n"
              + "ensemble_scheduling {\n  step [\n"
              + step("INPUT0", "INPUT1", "SUM", "DIFF") + ",\n"
              + step("SUM", "DIFF", "OUTPUT0", "OUTPUT1") + "\n  ]\n}\n")
    with open(os.path.join(path, "config.pbtxt"), "w", encoding="utf-8") as f:
        f.write(config)


BUILDERS = {
    "simple": _simple,
    "simple_int8": lambda out: _simple(out, "simple_int8", I8),
    "simple_dyna": _simple_dyna,
    "simple_identity": _simple_identity,
    "simple_sequence": _simple_sequence,
    "simple_sequence_oldest": _simple_sequence_oldest,
    "simple_state": _simple_state,
    "simple_autocomplete": _simple_autocomplete,
    "simple_versions": _simple_versions,
    "big": _big,
    "digits": _digits,
    "simple_ensemble": _simple_ensemble,
}


def _python_builders():
    """The Python-backend examples, from the sibling example_python_models.py."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "example_python_models.py")
    spec = importlib.util.spec_from_file_location("example_python_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BUILDERS


BUILDERS.update(_python_builders())


def build_repository(outdir, models=None, verbose=False):
    """Write the example models (all, or the names in `models`) into outdir; returns outdir.
    Each model's directory is replaced; other directories in outdir are left alone."""
    os.makedirs(outdir, exist_ok=True)
    for name in models or BUILDERS:
        if name == "digits":
            _digits(outdir, verbose)
        else:
            BUILDERS[name](outdir)
    return outdir


def check_repository(outdir):
    """Run every model once in onnxruntime (CPU) and compare with the expected results."""
    import onnxruntime as ort

    def run(name, feeds, version=1):
        path = os.path.join(outdir, name, str(version), "model.onnx")
        return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)

    rng = np.random.default_rng(SEED)
    a, b = (rng.integers(-1000, 1000, (3, 16), dtype=np.int32) for _ in range(2))
    for name in ("simple", "simple_autocomplete", "simple_dyna"):
        o0, o1 = run(name, {"INPUT0": a, "INPUT1": b})
        assert o0.dtype == np.int32 and (o0 == a + b).all() and (o1 == a - b).all(), name
    for version, expect in ((1, a + b), (2, a * b)):
        o0, o1 = run("simple_versions", {"INPUT0": a, "INPUT1": b}, version)
        assert (o0 == expect).all() and (o1 == a - b).all(), f"simple_versions v{version}"
    a8, b8 = (rng.integers(-128, 128, (2, 16), dtype=np.int8) for _ in range(2))
    o0, o1 = run("simple_int8", {"INPUT0": a8, "INPUT1": b8})
    with np.errstate(over="ignore"):
        assert o0.dtype == np.int8 and (o0 == a8 + b8).all() and (o1 == a8 - b8).all(), "simple_int8"
    # onnxruntime's Python API takes and returns str (UTF-8) for string tensors, not bytes
    s = np.array([["hello", "", "wörld"], ["a", "b c", "\u00e9"]], dtype=object)
    (o,) = run("simple_identity", {"INPUT0": s})
    assert o.shape == s.shape and list(o.flat) == list(s.flat), o
    x5 = np.array([[5]], np.int32)
    for start, expect in ((1, 10), (0, 5)):
        (o,) = run("simple_sequence", {"INPUT": x5, "START": np.array([[start]], np.int32)})
        assert o.tolist() == [[expect]], "simple_sequence"
    starts = np.array([[1], [0], [1]], np.int32)
    (o,) = run("simple_sequence_oldest", {"INPUT": np.array([[5], [6], [7]], np.int32), "START": starts})
    assert o.tolist() == [[10], [6], [14]], "simple_sequence_oldest"
    x3, s3 = np.array([[1], [2], [3]], np.int32), np.array([[10], [0], [-3]], np.int32)
    o, state = run("simple_state", {"INPUT": x3, "STATE_IN": s3})
    assert o.tolist() == [[11], [2], [0]] and (state == o).all(), "simple_state"
    x = rng.standard_normal((2, 262144), dtype=np.float32)
    (y,) = run("big", {"INPUT0": x})
    assert (y == x).all(), "big"
    from sklearn.datasets import load_digits
    images, labels = load_digits(return_X_y=True)
    (probs,) = run("digits", {"INPUT": images[:8].astype(np.float32)})
    assert probs.shape == (8, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-5), "digits"
    (all_probs,) = run("digits", {"INPUT": images.astype(np.float32)})
    return float((all_probs.argmax(axis=1) == labels).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--check", action="store_true", help="run every model once in onnxruntime")
    args = ap.parse_args(argv)
    build_repository(args.outdir, verbose=True)
    msg = f"model repository {args.outdir}: {', '.join(BUILDERS)}"
    if args.check:
        msg += f" (all run in onnxruntime; digits accuracy on all 1797 images {check_repository(args.outdir):.4f})"
    print(msg, file=sys.stderr)


if __name__ == "__main__":
    main()
