"""Cloud model repositories (`s3://`, `gs://`): list the models, copy one to a local directory.

Rules: a cloud repository is mirrored into a local directory, one subdirectory per model, and the
manager loads from there exactly as from a local repository; nothing above this module talks to
a bucket. The URL forms and credential sources are Triton's (spec §5.4):
  * `s3://bucket/path`, `s3://host:port/bucket/path`, `s3://http(s)://host:port/bucket/path`
    (an explicit endpoint is HTTP unless it says https, and uses path-style addressing);
  * `gs://bucket/path`;
  * credentials from the SDKs' own environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN, AWS_DEFAULT_REGION, AWS_PROFILE; GOOGLE_APPLICATION_CREDENTIALS, else
    anonymous), overridden by TRITON_CLOUD_CREDENTIAL_PATH's longest matching prefix;
  * the local copy lives in a private temporary directory removed at exit, or in
    TRITON_AWS_MOUNT_DIRECTORY / TRITON_GCS_MOUNT_DIRECTORY (must exist and be empty; left in place).
A model's remote fingerprint is every object's (relative key, ETag, size). `sync` downloads a
model only when that fingerprint changed, into a staging directory that replaces the old copy by
rename once complete: a download that fails half-way (network, disk full) removes the staging
directory and leaves the previous copy, if any, untouched. Every SDK error becomes a TritonError
in Triton's words; boto3 and google-cloud-storage are imported only when a URL needs them.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ErrorCode, TritonError

log = logging.getLogger("triton_asyncio.repository")

CLOUD_PREFIXES = ("s3://", "gs://", "as://")
# Triton's S3 endpoint form: s3://[http(s)://]host:port/bucket[/path]
_S3_ENDPOINT = re.compile(r"^s3://(http://|https://|)([0-9a-zA-Z\-.]+):([0-9]+)/([0-9a-z.\-]+)((/[^/]+)*)/?$")
_MOUNT_ENV = {"s3": "TRITON_AWS_MOUNT_DIRECTORY", "gs": "TRITON_GCS_MOUNT_DIRECTORY"}

RemoteFingerprint = tuple[tuple[str, str, int], ...]  # (key relative to the model dir, etag, size)


def is_cloud(url: str) -> bool:
    return url.startswith(CLOUD_PREFIXES)


@dataclass(frozen=True, slots=True)
class CloudUrl:
    scheme: str  # "s3" | "gs"
    bucket: str
    prefix: str  # the repository's key prefix, without leading or trailing "/" ("" = bucket root)
    endpoint: str | None = None  # "http(s)://host:port" for S3-compatible servers

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/")


def parse_url(url: str) -> CloudUrl:
    """Split a repository URL into bucket, key prefix and (S3) endpoint."""
    if url.startswith("as://"):
        raise TritonError(ErrorCode.UNSUPPORTED, f"Azure Blob repositories are not supported: {url}")
    if url.startswith("s3://") and (m := _S3_ENDPOINT.match(url)):
        scheme = m.group(1) or "http://"
        return CloudUrl("s3", m.group(4), m.group(5).strip("/"), f"{scheme}{m.group(2)}:{m.group(3)}")
    if not url.startswith(("s3://", "gs://")):
        raise TritonError(ErrorCode.INVALID_ARG, f"not a cloud repository path: {url}")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise TritonError(ErrorCode.INTERNAL, f"No bucket name found in path: {url}")
    return CloudUrl(url[:2], bucket, prefix.strip("/"))


def credentials_for(url: str, scheme: str, environ: os._Environ[str] | dict[str, str] = os.environ) -> Any:
    """TRITON_CLOUD_CREDENTIAL_PATH's entry for `url` (longest matching prefix, "" the default),
    or None when the variable is unset or has no entry for this scheme."""
    path = environ.get("TRITON_CLOUD_CREDENTIAL_PATH")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f).get(scheme, {})
    except (OSError, ValueError, AttributeError) as e:
        raise TritonError(ErrorCode.INTERNAL, f"failed to read cloud credential file {path}: {e}") from None
    matches = [p for p in table if url.startswith(p)]
    return table[max(matches, key=len)] if matches else None


@dataclass(frozen=True, slots=True)
class RemoteObject:
    key: str  # full object key
    etag: str
    size: int


class ObjectStore(Protocol):
    """What a cloud repository needs from a storage service; errors are TritonErrors."""

    def list_dirs(self, prefix: str) -> list[str]:
        """Names of the immediate "subdirectories" under `prefix` (which ends in "/" or is "")."""

    def list_objects(self, prefix: str) -> list[RemoteObject]:
        """Every object whose key starts with `prefix`."""

    def download(self, key: str, path: str) -> None:
        """Write the object's bytes to the local file `path`."""


class CloudRepository:
    """One cloud repository and its local mirror; thread-safe per model (syncs run off the loop)."""

    def __init__(self, url: str, store: ObjectStore | None = None, environ: Any = os.environ) -> None:
        self.url = url
        self.location = parse_url(url)
        self.store = store if store is not None else open_store(self.location, url, environ)
        self.root, self._owned = _local_root(self.location.scheme, environ)
        self._synced: dict[str, RemoteFingerprint] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def local_path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def owns(self, path: str) -> str | None:
        """The model name when `path` is one of this mirror's model directories."""
        head, name = os.path.split(path)
        return name if head == self.root else None

    def list_models(self) -> list[str]:
        """The model names (immediate "subdirectories") in the bucket, sorted."""
        prefix = self.location.key() + "/" if self.location.prefix else ""
        return sorted(n for n in self.store.list_dirs(prefix) if n and not n.startswith(".") and _safe_name(n))

    def fingerprint(self, name: str) -> RemoteFingerprint:
        return _fingerprint(self._objects(name), self._model_prefix(name))

    def sync(self, name: str) -> str:
        """Bring the local copy of `name` up to date with the bucket; returns its directory.
        A model gone from the bucket loses its local copy."""
        with self._lock(name):
            objects = self._objects(name)
            fingerprint = _fingerprint(objects, self._model_prefix(name))
            local = self.local_path(name)
            if not fingerprint:
                shutil.rmtree(local, ignore_errors=True)
                self._synced.pop(name, None)
                return local
            if self._synced.get(name) == fingerprint and os.path.isdir(local):
                return local
            self._download(name, objects, local)
            self._synced[name] = fingerprint
            log.info("downloaded model '%s' from %s to %s", name, self.url, local)
            return local

    def forget(self, name: str) -> None:
        """Remove the local copy of a model that left the bucket."""
        with self._lock(name):
            shutil.rmtree(self.local_path(name), ignore_errors=True)
            self._synced.pop(name, None)

    def close(self) -> None:
        """Remove the local mirror if it is our temporary directory (a mount directory stays)."""
        if self._owned:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- internals ---------------------------------------------------------------------------
    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _model_prefix(self, name: str) -> str:
        return self.location.key(name) + "/"

    def _objects(self, name: str) -> list[RemoteObject]:
        return self.store.list_objects(self._model_prefix(name))

    def _download(self, name: str, objects: list[RemoteObject], local: str) -> None:
        """Download into a staging directory, then swap it in by rename (never half a model)."""
        staging = tempfile.mkdtemp(prefix=f".sync-{name}-", dir=self.root)
        try:
            prefix = self._model_prefix(name)
            for obj in objects:
                rel = obj.key[len(prefix):]
                target = os.path.normpath(os.path.join(staging, rel))
                if os.path.commonpath([staging, target]) != staging or not rel.strip("/"):
                    continue  # a key like "m/../x" must not write outside the model directory
                if obj.key.endswith("/"):  # a "directory marker", e.g. an ensemble's empty 1/
                    os.makedirs(target, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                self.store.download(obj.key, target)
            old = None
            if os.path.exists(local):
                old = tempfile.mkdtemp(prefix=f".old-{name}-", dir=self.root)
                os.rename(local, os.path.join(old, name))
            os.rename(staging, local)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except OSError as e:
            shutil.rmtree(staging, ignore_errors=True)
            raise TritonError(ErrorCode.INTERNAL,
                              f"failed to download model '{name}' from {self.url}: {e}") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _safe_name(name: str) -> bool:
    return name not in (".", "..") and "/" not in name and "\x00" not in name


def _fingerprint(objects: list[RemoteObject], prefix: str) -> RemoteFingerprint:
    return tuple(sorted((o.key[len(prefix):], o.etag, o.size) for o in objects))


def _local_root(scheme: str, environ: Any) -> tuple[str, bool]:
    """(directory, ours): the mount directory Triton's variable names (must exist and be empty),
    else a fresh temporary directory, removed when the process exits however the server stops."""
    var = _MOUNT_ENV[scheme]
    mount = environ.get(var)
    if mount:
        if not os.path.isdir(mount) or os.listdir(mount):
            raise TritonError(ErrorCode.INTERNAL, f"{var} {mount} must be an existing, empty directory")
        return mount, False
    root = tempfile.mkdtemp(prefix=f"triton_asyncio_{scheme}_")
    atexit.register(shutil.rmtree, root, True)
    return root, True


def open_store(location: CloudUrl, url: str, environ: Any = os.environ) -> ObjectStore:
    if location.scheme == "s3":
        return S3Store(location, credentials_for(url, "s3", environ))
    return GcsStore(location, credentials_for(url, "gs", environ))


def _require(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise TritonError(ErrorCode.UNSUPPORTED,
                          f"{package} is required for this model repository; install it with "
                          f"`pip install triton_asyncio[cloud]`") from None


# -- S3 (boto3) ------------------------------------------------------------------------------
class S3Store:
    """S3 or an S3-compatible server through boto3; boto3 reads the AWS_* variables itself."""

    def __init__(self, location: CloudUrl, credentials: Any = None) -> None:
        boto3 = _require("boto3", "boto3")
        botocore_config = _require("botocore.config", "boto3")
        self.bucket = location.bucket
        self._botocore = _require("botocore.exceptions", "boto3")
        creds = credentials if isinstance(credentials, dict) else {}
        try:
            session = boto3.session.Session(
                aws_access_key_id=creds.get("key_id") or None,
                aws_secret_access_key=creds.get("secret_key") or None,
                aws_session_token=creds.get("session_token") or None,
                region_name=creds.get("region") or None,
                profile_name=creds.get("profile") or None)
            # bounded retries: an unreachable endpoint fails startup in seconds, not minutes
            config = botocore_config.Config(
                connect_timeout=10, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path"} if location.endpoint else None)
            self._client = session.client("s3", endpoint_url=location.endpoint, config=config)
        except self._botocore.BotoCoreError as e:
            raise TritonError(ErrorCode.INTERNAL, f"failed to create S3 client for {location}: {e}") from None

    def list_dirs(self, prefix: str) -> list[str]:
        names = []
        for page in self._pages(prefix, "/", f"Could not get MetaData for bucket with name {self.bucket}"):
            names.extend(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", ()))
        return names

    def list_objects(self, prefix: str) -> list[RemoteObject]:
        what = f"Could not list contents of directory at s3://{self.bucket}/{prefix}"
        return [RemoteObject(o["Key"], o.get("ETag", ""), int(o.get("Size", 0)))
                for page in self._pages(prefix, "", what) for o in page.get("Contents", ())]

    def download(self, key: str, path: str) -> None:
        try:
            self._client.download_file(self.bucket, key, path)
        except (self._botocore.BotoCoreError, self._botocore.ClientError) as e:
            raise self._error(f"Failed to get object at s3://{self.bucket}/{key}", e) from None

    def _pages(self, prefix: str, delimiter: str, what: str) -> list[dict]:
        kwargs = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        try:
            return list(self._client.get_paginator("list_objects_v2").paginate(**kwargs))
        except (self._botocore.BotoCoreError, self._botocore.ClientError) as e:
            raise self._error(what, e) from None

    def _error(self, what: str, e: Exception) -> TritonError:
        if isinstance(e, self._botocore.ClientError):
            err = e.response.get("Error", {})
            name, message = err.get("Code", "Unknown"), err.get("Message", str(e))
        else:
            name, message = type(e).__name__, str(e)
        return TritonError(ErrorCode.INTERNAL, f"{what} due to exception: {name}, error message: {message}")


# -- GCS (google-cloud-storage) --------------------------------------------------------------
class GcsStore:
    """Google Cloud Storage: a key file (GOOGLE_APPLICATION_CREDENTIALS or the credential file's
    entry), else the attached service account, else anonymous. Not exercised by the test suite
    (no GCS emulator there)."""

    def __init__(self, location: CloudUrl, key_file: Any = None) -> None:
        storage = _require("google.cloud.storage", "google-cloud-storage")
        self._exceptions = _require("google.api_core.exceptions", "google-cloud-storage")
        auth_exceptions = _require("google.auth.exceptions", "google-cloud-storage")
        try:
            if isinstance(key_file, str) and key_file:
                client = storage.Client.from_service_account_json(key_file)
            else:
                try:
                    client = storage.Client()
                except auth_exceptions.DefaultCredentialsError:
                    client = storage.Client.create_anonymous_client()
        except Exception as e:  # the SDK raises several unrelated types for bad key files
            raise TritonError(ErrorCode.INTERNAL, f"failed to create GCS client for {location}: {e}") from None
        self.bucket_name = location.bucket
        self._bucket = client.bucket(location.bucket)

    def list_dirs(self, prefix: str) -> list[str]:
        try:
            blobs = self._bucket.list_blobs(prefix=prefix, delimiter="/")
            for _ in blobs:  # the prefixes are filled in as the pages are read
                pass
            return [p[len(prefix):].rstrip("/") for p in blobs.prefixes]
        except self._exceptions.GoogleAPIError as e:
            raise TritonError(ErrorCode.INTERNAL, f"Could not get MetaData for bucket with name "
                                                  f"{self.bucket_name}: {e}") from None

    def list_objects(self, prefix: str) -> list[RemoteObject]:
        try:
            return [RemoteObject(b.name, b.etag or b.md5_hash or "", int(b.size or 0))
                    for b in self._bucket.list_blobs(prefix=prefix)]
        except self._exceptions.GoogleAPIError as e:
            raise TritonError(ErrorCode.INTERNAL, f"Could not list contents of directory at "
                                                  f"gs://{self.bucket_name}/{prefix}: {e}") from None

    def download(self, key: str, path: str) -> None:
        try:
            self._bucket.blob(key).download_to_filename(path)
        except self._exceptions.GoogleAPIError as e:
            raise TritonError(ErrorCode.INTERNAL, f"Failed to get object at gs://{self.bucket_name}/{key}: {e}") \
                from None
