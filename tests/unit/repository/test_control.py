"""Model control: override parsing and paths, fingerprints, and the manager's async load/unload/poll
over a real example repository (tiny ONNX models), without a server."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil

import pytest

from triton_asyncio.errors import ErrorCode, TritonError
from triton_asyncio.repository import control
from triton_asyncio.repository.lifecycle import ModelReadyState, VersionState
from triton_asyncio.repository.loader import LoadSettings
from triton_asyncio.repository.manager import RepositoryManager

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _builder():
    spec = importlib.util.spec_from_file_location("make_example_repo", os.path.join(ROOT, "scripts", "make_example_repo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def source_repo(tmp_path_factory) -> str:
    return _builder().build_repository(str(tmp_path_factory.mktemp("src") / "repo"), ["simple", "simple_ensemble"])


@pytest.fixture
def repo(source_repo, tmp_path) -> str:
    out = str(tmp_path / "repo")
    shutil.copytree(source_repo, out)
    return out


def _manager(repo: str) -> RepositoryManager:
    manager = RepositoryManager([repo], LoadSettings())
    manager.scan()
    return manager


# -- pure parts ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["../x", "1/../../x", "/abs/x", "", ".", "a/\x00b", "..\\x"])
def test_override_paths_that_escape_are_refused(path):
    with pytest.raises(TritonError) as info:
        control.check_override_path(path)
    assert info.value.code is ErrorCode.INVALID_ARG
    assert "the file path must be relative" in info.value.message


@pytest.mark.parametrize("path", ["1/model.onnx", "config.pbtxt", "1/sub/./file", "a..b/c"])
def test_override_paths_inside_are_accepted(path):
    control.check_override_path(path)


def test_make_override():
    assert control.make_override("m", None, {}) is None
    override = control.make_override("m", '{"max_batch_size": 4}', {"1/model.onnx": b"x"})
    assert override.config.max_batch_size == 4 and override.files == {"1/model.onnx": b"x"}
    with pytest.raises(TritonError, match="'config' parameter is required"):
        control.make_override("m", None, {"1/model.onnx": b"x"})
    with pytest.raises(TritonError, match="^Invalid config override: "):
        control.make_override("m", '{"max_batch_size": "many"}', {})
    with pytest.raises(TritonError, match="^Invalid config override: "):
        control.make_override("m", "not json", {})


def test_write_override_dir_and_fingerprint(tmp_path):
    root = control.write_override_dir("m", {"1/model.onnx": b"abc", "config.pbtxt": b""})
    try:
        with open(os.path.join(root, "1", "model.onnx"), "rb") as f:
            assert f.read() == b"abc"
        first = control.fingerprint(root)
        assert [row[0] for row in first] == ["1", "config.pbtxt", os.path.join("1", "model.onnx")]
        assert control.fingerprint(root) == first
        with open(os.path.join(root, "1", "model.onnx"), "wb") as f:
            f.write(b"abcd")  # the size changes even where mtime resolution is coarse
        assert control.fingerprint(root) != first
    finally:
        control.remove_dir(root)
    assert control.fingerprint(root) == ()


def test_reload_state_transitions():
    state = VersionState()
    for s in (ModelReadyState.LOADING, ModelReadyState.READY, ModelReadyState.LOADING, ModelReadyState.READY,
              ModelReadyState.UNLOADING, ModelReadyState.UNAVAILABLE):
        state.set(s)
    with pytest.raises(RuntimeError):
        state.set(ModelReadyState.READY)


# -- the manager -----------------------------------------------------------------------------------
def test_load_noop_reload_unload(repo):
    async def run():
        manager = _manager(repo)
        assert await manager.load_async("simple") == []
        first = manager.resolve("simple")
        assert await manager.load_async("simple") == []  # unchanged: the same model keeps serving
        assert manager.resolve("simple") is first
        override = control.make_override("simple", json.dumps({"name": "simple", "max_batch_size": 2,
                                                                 "platform": "onnxruntime_onnx"}), {})
        assert await manager.load_async("simple", override) == []
        second = manager.resolve("simple")
        assert second is not first and second.config.max_batch_size == 2
        await manager.unload_async("simple")
        with pytest.raises(TritonError, match="has no available versions"):
            manager.resolve("simple")
        assert manager.index() == [("simple", "1", "UNAVAILABLE", "unloaded"), ("simple_ensemble", None, None, "")]
        assert manager.models["simple"].loaded == {} and manager.models["simple"].latest is None
    asyncio.run(run())


def test_failed_reload_keeps_serving(repo):
    async def run():
        manager = _manager(repo)
        await manager.load_async("simple")
        old = manager.resolve("simple")
        bad = control.make_override("simple", json.dumps({"name": "simple", "platform": "onnxruntime_onnx",
                                                            "input": [{"name": "NOPE", "data_type": "TYPE_INT32",
                                                                       "dims": [16]}]}), {})
        errors = await manager.load_async("simple", bad)
        assert errors and errors[0].startswith("version 1 is at UNAVAILABLE state:")
        assert manager.resolve("simple") is old
        assert manager.index(ready_only=True) == [("simple", "1", "READY", "")]
        assert manager.all_ready()
        await manager.unload_all()
    asyncio.run(run())


def test_unknown_model(repo):
    async def run():
        manager = _manager(repo)
        with pytest.raises(TritonError, match="failed to poll from model repository") as info:
            await manager.load_async("nope")
        assert info.value.code is ErrorCode.INTERNAL
    asyncio.run(run())


def test_ensemble_dependencies(repo):
    async def run():
        manager = _manager(repo)
        assert await manager.load_async("simple_ensemble") == []
        assert manager.models["simple"].loaded  # loaded first, as a dependency
        await manager.unload_async("simple_ensemble", unload_dependents=True)
        assert not manager.models["simple"].loaded and not manager.models["simple_ensemble"].loaded
        await manager.load_async("simple_ensemble")
        await manager.unload_async("simple", unload_dependents=True)
        assert not manager.models["simple_ensemble"].loaded
    asyncio.run(run())


def test_concurrent_calls_on_one_model_are_serialized(repo):
    async def run():
        manager = _manager(repo)
        await asyncio.gather(*(manager.load_async("simple") if i % 2 == 0 else manager.unload_async("simple")
                               for i in range(6)))
        entry = manager.models["simple"]
        assert all(s.state in (ModelReadyState.READY, ModelReadyState.UNAVAILABLE) for s in entry.states.values())
        await manager.unload_all()
    asyncio.run(run())


def test_poll_adds_reloads_and_removes(repo, source_repo):
    async def run():
        manager = _manager(repo)
        shutil.rmtree(os.path.join(repo, "simple_ensemble"))
        await manager.poll()
        assert "simple_ensemble" not in manager.models
        first = manager.resolve("simple")
        await manager.poll()  # nothing changed
        assert manager.resolve("simple") is first
        with open(os.path.join(repo, "simple", "config.pbtxt"), "a") as f:
            f.write("\n# touched\n")
        await manager.poll()
        assert manager.resolve("simple") is not first
        shutil.copytree(os.path.join(source_repo, "simple_ensemble"), os.path.join(repo, "simple_ensemble"))
        await manager.poll()
        assert manager.resolve("simple_ensemble").config.platform == "ensemble"
        shutil.rmtree(os.path.join(repo, "simple"))
        await manager.poll()
        assert "simple" not in manager.models
        await manager.unload_all()
    asyncio.run(run())


def test_a_failed_change_is_retried_by_explicit_load_not_by_poll(repo):
    async def run():
        manager = _manager(repo)
        await manager.load_async("simple")
        old = manager.resolve("simple")
        with open(os.path.join(repo, "simple", "1", "model.onnx"), "wb") as f:
            f.write(b"not an onnx model")
        assert await manager.load_async("simple")  # the new files fail; the old model serves
        assert manager.resolve("simple") is old
        assert await manager.load_async("simple")  # asked again: tried again, not a no-op
        await manager.poll()  # poll tries a change once only
        assert manager.resolve("simple") is old
        await manager.unload_all()
    asyncio.run(run())


def test_files_only_model_reloads_from_its_own_directory(repo):
    async def run():
        manager = _manager(repo)
        with open(os.path.join(repo, "simple", "1", "model.onnx"), "rb") as f:
            files = {"1/model.onnx": f.read()}
        config = {"name": "loose", "platform": "onnxruntime_onnx"}
        assert await manager.load_async("loose", control.make_override("loose", json.dumps(config), files)) == []
        directory = manager.models["loose"].override_dir
        assert directory and os.path.isdir(directory)
        config["max_batch_size"] = 2  # config only: the files stay where they are
        assert await manager.load_async("loose", control.make_override("loose", json.dumps(config), {})) == []
        assert manager.resolve("loose").config.max_batch_size == 2 and os.path.isdir(directory)
        await manager.unload_async("loose")
        assert not os.path.exists(directory)
        with pytest.raises(TritonError, match="failed to poll"):
            await manager.load_async("loose")
    asyncio.run(run())


def test_control_only_in_explicit_mode(repo):
    from triton_asyncio.server.inference_server import InferenceServer

    async def run():
        for mode in ("none", "poll"):
            server = InferenceServer(_manager(repo), model_control_mode=mode)
            for call in (server.load_model("simple"), server.unload_model("simple")):
                with pytest.raises(TritonError) as info:
                    await call
                assert info.value.code is ErrorCode.UNAVAILABLE
                assert info.value.message == "explicit model load / unload is not allowed if polling is enabled"
        server = InferenceServer(_manager(repo), model_control_mode="explicit")
        with pytest.raises(TritonError) as info:
            await server.load_model("simple", config=json.dumps({"name": "simple", "platform": "onnxruntime_onnx",
                                                                 "input": [{"name": "X", "data_type": "TYPE_INT32",
                                                                            "dims": [16]}]}))
        assert info.value.code is ErrorCode.INVALID_ARG
        assert info.value.message.startswith("load failed for model 'simple': version 1 is at UNAVAILABLE state: ")
        assert info.value.message.endswith(";\n")
    asyncio.run(run())


def test_index_reports_loading_while_the_old_model_serves(repo):
    async def run():
        manager = _manager(repo)
        await manager.load_async("simple")
        old = manager.resolve("simple")
        override = control.make_override("simple", json.dumps({"name": "simple", "max_batch_size": 2,
                                                                 "platform": "onnxruntime_onnx"}), {})
        task = asyncio.ensure_future(manager.load_async("simple", override))
        seen_loading = False
        while not task.done():  # the build runs in the executor: the loop keeps turning meanwhile
            if manager.index()[0][2] == "LOADING":
                seen_loading = True
                assert manager.resolve("simple") is old and manager.all_ready()
            # one loop turn per look: the task needs at least one turn between LOADING and done
            await asyncio.sleep(0)
        assert task.result() == [] and seen_loading
        assert manager.resolve("simple") is not old and manager.index()[0][2] == "READY"
        await manager.unload_all()
    asyncio.run(run())


def test_a_first_load_under_way_keeps_the_server_ready(repo):
    async def run():
        manager = _manager(repo)
        task = asyncio.ensure_future(manager.load_async("simple"))
        seen_loading = False
        while not task.done():
            if manager.index() and manager.index()[0][2] == "LOADING":
                seen_loading = True
                assert manager.all_ready()
            await asyncio.sleep(0)  # one loop turn per look (see above)
        assert task.result() == [] and seen_loading and manager.all_ready()
        await manager.unload_all()
    asyncio.run(run())
