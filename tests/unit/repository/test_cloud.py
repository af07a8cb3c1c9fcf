"""Cloud repositories: URL forms and credential files (pure), and the mirror's sync logic against a
real S3-compatible server (moto's standalone server on loopback, one per module)."""
from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from triton_asyncio.errors import ErrorCode, TritonError
from triton_asyncio.repository import cloud
from triton_asyncio.repository.cloud import CloudUrl, parse_url

DEADLINE_S = 60.0


# -- URL forms (pure) --------------------------------------------------------------------------
@pytest.mark.parametrize("url, expected", [
    ("s3://bucket/models", CloudUrl("s3", "bucket", "models")),
    ("s3://bucket/a/b/", CloudUrl("s3", "bucket", "a/b")),
    ("s3://bucket", CloudUrl("s3", "bucket", "")),
    ("s3://127.0.0.1:9000/bucket/models", CloudUrl("s3", "bucket", "models", "http://127.0.0.1:9000")),
    ("s3://minio.local:9000/bucket", CloudUrl("s3", "bucket", "", "http://minio.local:9000")),
    ("s3://https://s3.example.com:443/bkt/x/y", CloudUrl("s3", "bkt", "x/y", "https://s3.example.com:443")),
    ("s3://http://host:80/bkt/m", CloudUrl("s3", "bkt", "m", "http://host:80")),
    ("gs://bucket/path/to/repo", CloudUrl("gs", "bucket", "path/to/repo")),
])
def test_parse_url(url, expected):
    assert parse_url(url) == expected


def test_parse_url_errors():
    with pytest.raises(TritonError, match="No bucket name found in path: s3:///models"):
        parse_url("s3:///models")
    with pytest.raises(TritonError) as info:
        parse_url("as://account/container/models")
    assert info.value.code is ErrorCode.UNSUPPORTED
    assert cloud.is_cloud("gs://b") and cloud.is_cloud("as://a/c") and not cloud.is_cloud("/models")


def test_key_and_str():
    url = parse_url("s3://127.0.0.1:9000/bucket/models")
    assert url.key("simple", "1") == "models/simple/1"
    assert parse_url("s3://bucket").key("simple") == "simple"
    assert str(url) == "s3://bucket/models"


def test_credential_file_longest_prefix_wins(tmp_path):
    path = tmp_path / "creds.json"
    path.write_text(json.dumps({"s3": {"": {"key_id": "default"}, "s3://bucket": {"key_id": "bucket"},
                                       "s3://bucket/models": {"key_id": "models"}},
                                "gs": {"gs://other": "/key.json"}}))
    env = {"TRITON_CLOUD_CREDENTIAL_PATH": str(path)}
    assert cloud.credentials_for("s3://bucket/models/x", "s3", env) == {"key_id": "models"}
    assert cloud.credentials_for("s3://bucket/other", "s3", env) == {"key_id": "bucket"}
    assert cloud.credentials_for("s3://elsewhere", "s3", env) == {"key_id": "default"}
    assert cloud.credentials_for("gs://bucket", "gs", env) is None
    assert cloud.credentials_for("s3://bucket", "s3", {}) is None
    with pytest.raises(TritonError, match="failed to read cloud credential file"):
        cloud.credentials_for("s3://b", "s3", {"TRITON_CLOUD_CREDENTIAL_PATH": str(tmp_path / "missing")})


def test_mount_directory_must_be_empty(tmp_path):
    (tmp_path / "leftover").write_text("x")
    env = {"TRITON_AWS_MOUNT_DIRECTORY": str(tmp_path)}
    with pytest.raises(TritonError, match="must be an existing, empty directory"):
        cloud.CloudRepository("s3://bucket/models", store=_NoStore(), environ=env)


def test_missing_sdk_names_the_extra():
    try:
        import google.cloud.storage  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("google-cloud-storage is installed")
    with pytest.raises(TritonError, match=r"google-cloud-storage is required.*triton_asyncio\[cloud\]") as info:
        cloud.CloudRepository("gs://bucket/models")
    assert info.value.code is ErrorCode.UNSUPPORTED


class _NoStore:
    def list_dirs(self, prefix):
        return []

    def list_objects(self, prefix):
        return []

    def download(self, key, path):
        raise AssertionError("nothing to download")


# -- against a real S3-compatible server -------------------------------------------------------
@pytest.fixture(scope="module")
def boto3():
    pytest.importorskip("moto")
    return pytest.importorskip("boto3")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint(boto3):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + DEADLINE_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"moto_server exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/data.json", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("moto_server did not start")
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "TRITON_CLOUD_CREDENTIAL_PATH", "TRITON_AWS_MOUNT_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def bucket(boto3, moto_endpoint, request):
    s3 = boto3.client("s3", endpoint_url=f"http://{moto_endpoint}")
    name = request.node.name.lower().replace("_", "-")[:50]
    s3.create_bucket(Bucket=name)
    return s3, name


def _put(s3, bucket: str, files: dict[str, bytes]) -> None:
    for key, data in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)


def _tree(root: str) -> dict[str, bytes]:
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(d, f), "rb") as fh:
                out[os.path.relpath(os.path.join(d, f), root)] = fh.read()
    return out


def test_lists_models_and_syncs_one(bucket, moto_endpoint):
    s3, name = bucket
    _put(s3, name, {"models/a/config.pbtxt": b"name: 'a'", "models/a/1/model.py": b"x = 1",
                    "models/b/1/": b"", "models/.hidden/x": b"", "other/c/config.pbtxt": b""})
    repo = cloud.CloudRepository(f"s3://{moto_endpoint}/{name}/models")
    try:
        assert repo.list_models() == ["a", "b"]
        path = repo.sync("a")
        assert path == repo.local_path("a") and repo.owns(path) == "a"
        assert _tree(path) == {"config.pbtxt": b"name: 'a'", os.path.join("1", "model.py"): b"x = 1"}
        assert os.path.isdir(os.path.join(repo.sync("b"), "1"))  # a directory marker: an empty 1/
        assert repo.owns("/elsewhere/a") is None
    finally:
        repo.close()
    assert not os.path.exists(repo.root)


def test_sync_downloads_only_on_change(bucket, moto_endpoint):
    s3, name = bucket
    _put(s3, name, {"m/config.pbtxt": b"v1", "m/1/model.py": b"x"})
    repo = cloud.CloudRepository(f"s3://{moto_endpoint}/{name}")
    try:
        path = repo.sync("m")
        first = repo.fingerprint("m")
        mtime = os.stat(os.path.join(path, "config.pbtxt")).st_mtime_ns
        assert repo.sync("m") == path
        assert os.stat(os.path.join(path, "config.pbtxt")).st_mtime_ns == mtime  # not downloaded again
        _put(s3, name, {"m/config.pbtxt": b"v2 longer"})
        assert repo.fingerprint("m") != first
        repo.sync("m")
        assert _tree(path)["config.pbtxt"] == b"v2 longer"
        s3.delete_object(Bucket=name, Key="m/1/model.py")
        repo.sync("m")
        assert os.path.join("1", "model.py") not in _tree(path)  # the mirror drops deleted objects
        s3.delete_object(Bucket=name, Key="m/config.pbtxt")
        repo.sync("m")
        assert not os.path.exists(path)  # gone from the bucket: gone locally
    finally:
        repo.close()


class _DiskFullAfter:
    """The real S3 store, with the local disk filling up after `n` downloads."""

    def __init__(self, store, n: int) -> None:
        self.store, self.left = store, n

    def list_dirs(self, prefix):
        return self.store.list_dirs(prefix)

    def list_objects(self, prefix):
        return self.store.list_objects(prefix)

    def download(self, key, path):
        if self.left == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.left -= 1
        self.store.download(key, path)


def test_failed_download_keeps_the_previous_copy(bucket, moto_endpoint):
    s3, name = bucket
    _put(s3, name, {"m/config.pbtxt": b"v1", "m/1/model.py": b"old"})
    url = f"s3://{moto_endpoint}/{name}"
    real = cloud.open_store(parse_url(url), url)
    store = _DiskFullAfter(real, 2)
    repo = cloud.CloudRepository(url, store=store)
    try:
        path = repo.sync("m")
        _put(s3, name, {"m/config.pbtxt": b"v2", "m/1/model.py": b"new"})
        with pytest.raises(TritonError, match="failed to download model 'm'.*No space left on device"):
            repo.sync("m")
        assert _tree(path) == {"config.pbtxt": b"v1", os.path.join("1", "model.py"): b"old"}
        assert os.listdir(repo.root) == ["m"]  # no staging directory left behind
        store.left = 2
        repo.sync("m")  # the failed sync was not recorded: the next one downloads
        assert _tree(path)[os.path.join("1", "model.py")] == b"new"
    finally:
        repo.close()


def test_missing_bucket(moto_endpoint):
    repo = cloud.CloudRepository(f"s3://{moto_endpoint}/no-such-bucket/models")
    try:
        with pytest.raises(TritonError, match="Could not get MetaData for bucket with name no-such-bucket "
                                              "due to exception: NoSuchBucket"):
            repo.list_models()
    finally:
        repo.close()


def test_unreachable_endpoint(boto3):
    repo = cloud.CloudRepository(f"s3://127.0.0.1:{_free_port()}/bucket/models")
    try:
        with pytest.raises(TritonError, match="Could not get MetaData for bucket with name bucket "
                                              "due to exception: EndpointConnectionError"):
            repo.list_models()
    finally:
        repo.close()
