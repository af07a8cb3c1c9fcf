"""simple_sequence through the real server: the START control reaches the model, Triton's errors."""
from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def _infer(client, value: int, **sequence):
    inp = httpclient.InferInput("INPUT", [1, 1], "INT32")
    inp.set_data_from_numpy(np.array([[value]], np.int32))
    result = client.infer("simple_sequence", [inp], **sequence)
    return int(result.as_numpy("OUTPUT")[0, 0])


@pytest.mark.parametrize("sequence_id", [1001, "seq-str"])
def test_start_control_reaches_the_model(server, sequence_id):
    client = httpclient.InferenceServerClient(server.http_url)
    # OUTPUT = INPUT * (1 + START): only the request with sequence_start doubles its input
    assert _infer(client, 5, sequence_id=sequence_id, sequence_start=True) == 10
    assert _infer(client, 6, sequence_id=sequence_id) == 6
    assert _infer(client, 7, sequence_id=sequence_id, sequence_end=True) == 7
    with pytest.raises(InferenceServerException, match="must specify the START flag on the first request"):
        _infer(client, 8, sequence_id=sequence_id)


def test_errors(server):
    client = httpclient.InferenceServerClient(server.http_url)
    with pytest.raises(InferenceServerException) as e:
        _infer(client, 1, sequence_id=4321)
    assert ("inference request for sequence 4321 to model 'simple_sequence' must specify the START flag on the "
            "first request of the sequence") in str(e.value)
    with pytest.raises(InferenceServerException,
                       match="inference request to model 'simple_sequence' must specify a non-zero or non-empty "
                             "correlation ID"):
        _infer(client, 1)
