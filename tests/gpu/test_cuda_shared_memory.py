"""CUDA shared memory through the real server, with tritonclient's cuda_shared_memory utilities."""
from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from ..integration.conftest import _load_repo_builder, start_server, stop_server

pytestmark = pytest.mark.gpu
SIZE = 64  # 16 INT32


@pytest.fixture(scope="module")
def cuda_server(tmp_path_factory):
    repo = str(tmp_path_factory.mktemp("cuda_shm_repo") / "repo")
    _load_repo_builder().build_repository(repo, ["simple"])
    srv = start_server(repo, str(tmp_path_factory.mktemp("cuda_shm_log") / "server.log"), "--allow-client-shm=true")
    yield srv
    assert stop_server(srv) == 0, srv.log()


@pytest.mark.parametrize("module", [httpclient, grpcclient])
def test_inputs_and_outputs_in_cuda_shared_memory(cuda_server, module):
    import tritonclient.utils.cuda_shared_memory as cudashm

    url = cuda_server.http_url if module is httpclient else cuda_server.grpc_url
    client = module.InferenceServerClient(url)
    client.unregister_cuda_shared_memory()
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 3, dtype=np.int32)
    inp = cudashm.create_shared_memory_region("cin", 2 * SIZE, 0)
    out = cudashm.create_shared_memory_region("cout", 2 * SIZE, 0)
    try:
        cudashm.set_shared_memory_region(inp, [a, b])
        client.register_cuda_shared_memory("cin", cudashm.get_raw_handle(inp), 0, 2 * SIZE)
        client.register_cuda_shared_memory("cout", cudashm.get_raw_handle(out), 0, 2 * SIZE)
        status = client.get_cuda_shared_memory_status()
        assert status  # both regions listed
        inputs = [module.InferInput("INPUT0", [1, 16], "INT32"), module.InferInput("INPUT1", [1, 16], "INT32")]
        inputs[0].set_shared_memory("cin", SIZE)
        inputs[1].set_shared_memory("cin", SIZE, offset=SIZE)
        outputs = [module.InferRequestedOutput("OUTPUT0"), module.InferRequestedOutput("OUTPUT1")]
        outputs[0].set_shared_memory("cout", SIZE)
        outputs[1].set_shared_memory("cout", SIZE, offset=SIZE)
        client.infer("simple", inputs, outputs=outputs)
        got0 = cudashm.get_contents_as_numpy(out, np.int32, [1, 16])
        got1 = cudashm.get_contents_as_numpy(out, np.int32, [1, 16], offset=SIZE)
        assert got0.tolist() == (a + b).tolist() and got1.tolist() == (a - b).tolist()
        # a region bigger than the client's allocation is refused with Triton's message
        with pytest.raises(Exception, match="failed to register shared memory region 'big': invalid args"):
            client.register_cuda_shared_memory("big", cudashm.get_raw_handle(inp), 0, 4 * SIZE)
    finally:
        client.unregister_cuda_shared_memory()
        cudashm.destroy_shared_memory_region(inp)
        cudashm.destroy_shared_memory_region(out)
