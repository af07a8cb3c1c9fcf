"""Python-backend example models (model.py sources written into the example repository).

Importable by make_example_repo.py: BUILDERS maps a model name to a function(outdir).

  python_string    INPUT0 BYTES dims [-1], max_batch_size 8; OUTPUT0 = INPUT0 upper-cased
  python_sequence  sequence accumulator, string correlation ids (CORRID TYPE_STRING), START/END
                   controls, INPUT/OUTPUT INT32 [1]: OUTPUT = running sum of the sequence's INPUTs
  python_repeat    decoupled: IN INT32 [-1], REPEAT INT32 [1]; sends REPEAT responses
                   (OUT = IN, IDX = i), then the final flag, from a thread after execute returns
  python_bls       INPUT0, INPUT1 INT32 [16], max_batch_size 8; calls the ONNX model `simple`
                   through BLS and returns its OUTPUT0, OUTPUT1
  python_identity  INPUT0 FP32 dims [-1], max_batch_size 8, dynamic batching; OUTPUT0 = INPUT0
  python_text      TEXT BYTES [1], max_batch_size 8; LABEL BYTES [1] ("positive"/"negative") and
                   SCORE FP32 [1]: a bag-of-words sentiment classifier whose vocabulary and weights
                   the builder writes next to model.py (no download); uses @pb_utils.batched
"""
from __future__ import annotations

import json
import os
import shutil
import textwrap


def _write(outdir: str, name: str, config: str, model_py: str, extra: dict[str, str] | None = None) -> None:
    path = os.path.join(outdir, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(os.path.join(path, "1"))
    with open(os.path.join(path, "config.pbtxt"), "w", encoding="utf-8") as f:
        f.write(config)
    with open(os.path.join(path, "1", "model.py"), "w", encoding="utf-8") as f:
        f.write(textwrap.dedent(model_py).lstrip())
    for filename, text in (extra or {}).items():
        with open(os.path.join(path, "1", filename), "w", encoding="utf-8") as f:
            f.write(text)


def python_string(outdir: str) -> None:
    config = ('name: "python_string"\nbackend: "python"\nmax_batch_size: 8\n'
              'input [ { name: "INPUT0" data_type: TYPE_STRING dims: [ -1 ] } ]\n'
              'output [ { name: "OUTPUT0" data_type: TYPE_STRING dims: [ -1 ] } ]\n'
              "instance_group [ { count: 1, kind: KIND_CPU } ]\n")
    _write(outdir, "python_string", config, '''
        import numpy as np
        import triton_python_backend_utils as pb_utils


        class TritonPythonModel:
            def execute(self, requests):
                responses = []
                for request in requests:
                    text = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
                    upper = np.array([s.upper() for s in text.reshape(-1)], dtype=np.object_).reshape(text.shape)
                    responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", upper)]))
                return responses
        ''')


def python_sequence(outdir: str) -> None:
    config = ('name: "python_sequence"\nbackend: "python"\nmax_batch_size: 4\n'
              "sequence_batching {\n  max_sequence_idle_microseconds: 5000000\n  control_input [\n"
              '    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },\n'
              '    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },\n'
              '    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_STRING } ] }\n'
              "  ]\n}\n"
              'input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
              'output [ { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
              "instance_group [ { count: 1, kind: KIND_CPU } ]\n")
    _write(outdir, "python_sequence", config, '''
        import numpy as np
        import triton_python_backend_utils as pb_utils


        class TritonPythonModel:
            """Accumulator: OUTPUT is the running sum of INPUT over the sequence."""

            def initialize(self, args):
                self.sums = {}

            def execute(self, requests):
                responses = []
                for request in requests:
                    start = pb_utils.get_input_tensor_by_name(request, "START").as_numpy().reshape(-1)[0]
                    end = pb_utils.get_input_tensor_by_name(request, "END").as_numpy().reshape(-1)[0]
                    corrid = request.correlation_id()
                    value = int(pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy().reshape(-1)[0])
                    total = value + (0 if start else self.sums.get(corrid, 0))
                    if end:
                        self.sums.pop(corrid, None)
                    else:
                        self.sums[corrid] = total
                    out = np.array([[total]], dtype=np.int32)
                    responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", out)]))
                return responses
        ''')


def python_repeat(outdir: str) -> None:
    config = ('name: "python_repeat"\nbackend: "python"\nmax_batch_size: 0\n'
              "model_transaction_policy { decoupled: true }\n"
              'input [ { name: "IN" data_type: TYPE_INT32 dims: [ -1 ] },\n'
              '        { name: "REPEAT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
              'output [ { name: "OUT" data_type: TYPE_INT32 dims: [ -1 ] },\n'
              '         { name: "IDX" data_type: TYPE_INT32 dims: [ 1 ] } ]\n'
              "instance_group [ { count: 1, kind: KIND_CPU } ]\n")
    _write(outdir, "python_repeat", config, '''
        import threading

        import numpy as np
        import triton_python_backend_utils as pb_utils


        class TritonPythonModel:
            """Decoupled: REPEAT responses per request, sent from a thread after execute returns."""

            def execute(self, requests):
                for request in requests:
                    values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy().copy()
                    count = int(pb_utils.get_input_tensor_by_name(request, "REPEAT").as_numpy()[0])
                    sender = request.get_response_sender()
                    threading.Thread(target=self._send, args=(sender, values, count)).start()
                return None

            @staticmethod
            def _send(sender, values, count):
                for i in range(count):
                    if sender.is_cancelled():
                        break
                    tensors = [pb_utils.Tensor("OUT", values), pb_utils.Tensor("IDX", np.array([i], np.int32))]
                    sender.send(pb_utils.InferenceResponse(tensors))
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        ''')


def python_bls(outdir: str) -> None:
    config = ('name: "python_bls"\nbackend: "python"\nmax_batch_size: 8\n'
              'input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },\n'
              '        { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]\n'
              'output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },\n'
              '         { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] } ]\n'
              "instance_group [ { count: 1, kind: KIND_CPU } ]\n")
    _write(outdir, "python_bls", config, '''
        import triton_python_backend_utils as pb_utils


        class TritonPythonModel:
            """Forwards each request to the ONNX model `simple` (BLS) and returns its outputs."""

            def execute(self, requests):
                responses = []
                for request in requests:
                    bls = pb_utils.InferenceRequest(
                        model_name="simple", inputs=request.inputs(),
                        requested_output_names=["OUTPUT0", "OUTPUT1"])
                    result = bls.exec()
                    if result.has_error():
                        responses.append(pb_utils.InferenceResponse(error=result.error()))
                        continue
                    outputs = [pb_utils.Tensor(t.name(), t.as_numpy()) for t in result.output_tensors()]
                    responses.append(pb_utils.InferenceResponse(outputs))
                return responses
        ''')


def python_identity(outdir: str) -> None:
    config = ('name: "python_identity"\nbackend: "python"\nmax_batch_size: 8\n'
              "dynamic_batching { }\n"
              'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
              'output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]\n'
              "instance_group [ { count: 1, kind: KIND_CPU } ]\n")
    _write(outdir, "python_identity", config, '''
        import triton_python_backend_utils as pb_utils


        class TritonPythonModel:
            def execute(self, requests):
                return [pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", r.inputs()[0].as_numpy())])
                        for r in requests]
        ''')


_POSITIVE = ("good", "great", "love", "excellent", "happy", "wonderful", "best", "nice", "fantastic", "like")
_NEGATIVE = ("bad", "terrible", "hate", "awful", "sad", "worst", "poor", "horrible", "boring", "dislike")


def python_text(outdir: str) -> None:
    """The 'weights' are built here: +1 per positive word, -1 per negative word, bias 0."""
    weights = {w: 1.0 for w in _POSITIVE} | {w: -1.0 for w in _NEGATIVE}
    vocab = json.dumps({"bias": 0.0, "negators": ["not", "never", "no"], "weights": weights}, indent=1)
    config = ('name: "python_text"\nbackend: "python"\nmax_batch_size: 8\n'
              "dynamic_batching { }\n"
              'input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]\n'
              'output [ { name: "LABEL" data_type: TYPE_STRING dims: [ 1 ] },\n'
              '         { name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
              "instance_group [ { count: 1, kind: KIND_CPU } ]\n")
    _write(outdir, "python_text", config, '''
        import json
        import os
        import re

        import numpy as np
        import triton_python_backend_utils as pb_utils


        class TritonPythonModel:
            """A text-classification pipeline: tokenize, bag-of-words logit, sigmoid, label."""

            def initialize(self, args):
                with open(os.path.join(os.path.dirname(__file__), "vocab.json"), encoding="utf-8") as f:
                    vocab = json.load(f)
                self.weights, self.bias = vocab["weights"], vocab["bias"]
                self.negators = set(vocab["negators"])

            def _logit(self, text):
                words = re.findall(r"[a-z']+", text.lower())
                logit, sign = self.bias, 1.0
                for word in words:
                    if word in self.negators:
                        sign = -1.0
                        continue
                    if word in self.weights:
                        logit += sign * self.weights[word]
                        sign = 1.0
                return logit

            @pb_utils.batched
            def execute(self, inputs):
                texts = [t.decode("utf-8", "replace") for t in inputs["TEXT"].reshape(-1)]
                scores = 1.0 / (1.0 + np.exp(-np.array([self._logit(t) for t in texts], dtype=np.float32)))
                labels = np.array([b"positive" if s >= 0.5 else b"negative" for s in scores], dtype=np.object_)
                return {"LABEL": labels.reshape(-1, 1), "SCORE": scores.astype(np.float32).reshape(-1, 1)}
        ''', {"vocab.json": vocab})


BUILDERS: dict = {
    "python_string": python_string,
    "python_sequence": python_sequence,
    "python_repeat": python_repeat,
    "python_bls": python_bls,
    "python_identity": python_identity,
    "python_text": python_text,
}
