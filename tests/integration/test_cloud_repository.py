"""An S3 model repository through the real server and tritonclient, against moto's standalone
S3-compatible server on loopback with IAM authentication enforced: serving, poll mode following
the bucket, explicit load re-reading the bucket, and the startup errors for bad credentials, a
denied user, a missing bucket and an unreachable endpoint.

Every wait is a deadline loop on an observable state, never a sleep tuned to a fast machine.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient

from .conftest import _load_repo_builder, start_server, stop_server

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")

DEADLINE_S = 60.0
BUCKET = "triton-models"
_ALLOW_S3 = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'


def _wait_for(predicate, what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_moto(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up() -> bool:
        assert proc.poll() is None, f"moto_server exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/data.json", timeout=1):
                return True
        except OSError:
            return False

    _wait_for(up, "moto_server to start")
    return proc


def _keys(iam, user: str, policy: str | None) -> tuple[str, str]:
    iam.create_user(UserName=user)
    if policy is not None:
        iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=policy)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


class S3:
    """The moto server, an authorized and a denied user, and a client acting as the authorized one."""

    def __init__(self, port: int) -> None:
        self.endpoint = f"127.0.0.1:{port}"
        admin = {"endpoint_url": f"http://{self.endpoint}", "region_name": "us-east-1",
                 "aws_access_key_id": "admin", "aws_secret_access_key": "admin"}
        iam = boto3.client("iam", **admin)
        self.allowed = _keys(iam, "triton", _ALLOW_S3)
        self.denied = _keys(iam, "nobody", None)
        # from here on moto checks every request's signature and IAM policy
        # (not form-encoded: moto reads the raw body)
        reset = urllib.request.Request(f"http://{self.endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                       headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(reset, timeout=10).close()
        self.client = boto3.client("s3", **dict(admin, aws_access_key_id=self.allowed[0],
                                                aws_secret_access_key=self.allowed[1]))

    def url(self, bucket: str = BUCKET, prefix: str = "models") -> str:
        return f"s3://{self.endpoint}/{bucket}/{prefix}"

    def upload(self, local_dir: str, prefix: str) -> None:
        for root, _dirs, files in os.walk(local_dir):
            for f in files:
                path = os.path.join(root, f)
                self.client.upload_file(path, BUCKET, f"{prefix}/{os.path.relpath(path, local_dir)}")

    def delete(self, prefix: str) -> None:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
            for obj in page.get("Contents", ()):
                self.client.delete_object(Bucket=BUCKET, Key=obj["Key"])


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    port = _free_port()
    proc = _start_moto(port)
    try:
        store = S3(port)
        store.client.create_bucket(Bucket=BUCKET)
        local = str(tmp_path_factory.mktemp("s3src") / "repo")
        _load_repo_builder().build_repository(local, ["simple", "simple_int8"])
        store.local = local
        yield store
    finally:
        proc.terminate()
        proc.wait()


@pytest.fixture
def aws_env(monkeypatch, tmp_path, s3):
    """The server inherits os.environ: Triton's AWS variables, and no profile or config files."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.allowed[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.allowed[1])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "TRITON_CLOUD_CREDENTIAL_PATH", "TRITON_AWS_MOUNT_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return monkeypatch


def _infer(client, model: str, dtype=np.int32) -> None:
    a = np.arange(16, dtype=dtype).reshape(1, 16)
    wire = "INT32" if dtype == np.int32 else "INT8"
    inputs = [httpclient.InferInput("INPUT0", [1, 16], wire), httpclient.InferInput("INPUT1", [1, 16], wire)]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(np.ones_like(a))
    np.testing.assert_array_equal(client.infer(model, inputs).as_numpy("OUTPUT0"), a + 1)


def test_poll_mode_follows_the_bucket(s3, aws_env, tmp_path):
    prefix = "poll"
    s3.upload(os.path.join(s3.local, "simple"), f"{prefix}/simple")
    srv = start_server(s3.url(prefix=prefix), str(tmp_path / "poll.log"), "--model-control-mode=poll",
                       "--repository-poll-secs=1")
    http = httpclient.InferenceServerClient(srv.http_url)
    try:
        _wait_for(lambda: http.is_server_ready(), "server ready")
        _infer(http, "simple")

        s3.upload(os.path.join(s3.local, "simple_int8"), f"{prefix}/simple_int8")
        _wait_for(lambda: http.is_model_ready("simple_int8"), "the uploaded model to load")
        _infer(http, "simple_int8", np.int8)

        s3.upload(os.path.join(s3.local, "simple", "1"), f"{prefix}/simple/2")  # a changed model
        _wait_for(lambda: http.is_model_ready("simple", "2"), "the new version to load")
        _infer(http, "simple")

        s3.delete(f"{prefix}/simple")
        _wait_for(lambda: not http.is_model_ready("simple"), "the deleted model to unload")
        names = {row["name"] for row in http.get_model_repository_index()}
        assert "simple" not in names and "simple_int8" in names
    finally:
        http.close()
        assert stop_server(srv) == 0, srv.log()
    log = srv.log()
    assert "Traceback" not in log
    mirrors = {os.path.dirname(p) for p in re.findall(r"downloaded model '\w+' from \S+ to (\S+?)\"", log)}
    assert mirrors and not any(os.path.exists(m) for m in mirrors)  # the private mirror is removed at exit


def test_explicit_load_rereads_the_bucket(s3, aws_env, tmp_path):
    prefix = "explicit"
    s3.upload(os.path.join(s3.local, "simple"), f"{prefix}/simple")
    srv = start_server(s3.url(prefix=prefix), str(tmp_path / "explicit.log"), "--model-control-mode=explicit",
                       "--load-model=simple")
    http = httpclient.InferenceServerClient(srv.http_url)
    try:
        _wait_for(lambda: http.is_server_ready(), "server ready")
        _infer(http, "simple")
        s3.upload(os.path.join(s3.local, "simple", "1"), f"{prefix}/simple/2")
        assert not http.is_model_ready("simple", "2")  # explicit mode does not watch the bucket
        http.load_model("simple")
        assert http.is_model_ready("simple", "2")
        _infer(http, "simple")

        s3.upload(os.path.join(s3.local, "simple_int8"), f"{prefix}/simple_int8")  # a model new to the server
        http.load_model("simple_int8")
        _infer(http, "simple_int8", np.int8)
    finally:
        http.close()
        assert stop_server(srv) == 0, srv.log()


def _startup_error(url: str, log_path: str) -> str:
    srv = start_server(url, log_path, wait_ready=False)
    try:
        code = srv.proc.wait(DEADLINE_S)
    finally:
        stop_server(srv)
    log = srv.log()
    assert code != 0, log
    assert "Traceback" not in log, log
    return log


def test_wrong_secret_fails_startup(s3, aws_env, tmp_path):
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    log = _startup_error(s3.url(), str(tmp_path / "secret.log"))
    assert (f"Could not get MetaData for bucket with name {BUCKET} due to exception: SignatureDoesNotMatch"
            in log), log


def test_unknown_key_fails_startup(s3, aws_env, tmp_path):
    aws_env.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
    log = _startup_error(s3.url(), str(tmp_path / "key.log"))
    assert "due to exception: InvalidClientTokenId" in log or "due to exception: InvalidAccessKeyId" in log, log


def test_access_denied_fails_startup(s3, aws_env, tmp_path):
    aws_env.setenv("AWS_ACCESS_KEY_ID", s3.denied[0])
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", s3.denied[1])
    log = _startup_error(s3.url(), str(tmp_path / "denied.log"))
    assert "due to exception: AccessDenied" in log, log


def test_missing_bucket_fails_startup(s3, aws_env, tmp_path):
    log = _startup_error(s3.url(bucket="no-such-bucket"), str(tmp_path / "bucket.log"))
    assert "Could not get MetaData for bucket with name no-such-bucket due to exception: NoSuchBucket" in log, log


def test_unreachable_endpoint_fails_startup(aws_env, tmp_path):
    log = _startup_error(f"s3://127.0.0.1:{_free_port()}/{BUCKET}/models", str(tmp_path / "unreachable.log"))
    assert f"Could not get MetaData for bucket with name {BUCKET} due to exception: EndpointConnectionError" in log
