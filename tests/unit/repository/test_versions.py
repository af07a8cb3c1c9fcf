"""Version directory discovery and version_policy selection (spec 5.1, 5.2)."""
import logging

import pytest

from triton_asyncio.errors import ErrorCode, TritonError
from triton_asyncio.pb import model_config_pb2 as mc
from triton_asyncio.repository.versions import (
    find_versions,
    parse_version_dirname,
    select_versions,
    version_dirs,
    versions_to_load,
)


@pytest.mark.parametrize(("name", "version"), [
    ("1", 1), ("0", 0), ("42", 42), ("3abc", 3), ("9223372036854775807", 2**63 - 1),
    ("01", None), ("007", None), ("abc", None), ("", None), ("-1", None), ("9223372036854775808", None),
    ("warmup", None), ("initial_state", None), ("configs", None),
])
def test_parse_version_dirname(name: str, version: int | None) -> None:
    assert parse_version_dirname(name) == version


def test_find_versions_only_numeric_directories(tmp_path, caplog) -> None:
    for d in ("1", "3", "10", "02", "configs", "warmup", "notes", ".ipynb_checkpoints"):
        (tmp_path / d).mkdir()
    (tmp_path / "7").write_text("a file, not a version")
    (tmp_path / "config.pbtxt").write_text("")
    with caplog.at_level(logging.WARNING, logger="triton_asyncio.repository"):
        assert find_versions(tmp_path) == [1, 3, 10]
    assert "leading zeros" in caplog.text and "'notes'" in caplog.text
    assert version_dirs(tmp_path)[10] == str(tmp_path / "10")


def test_find_versions_missing_directory(tmp_path) -> None:
    assert find_versions(tmp_path / "absent") == []


def _policy(text: str) -> mc.ModelVersionPolicy:
    from google.protobuf import text_format
    return text_format.Parse(text, mc.ModelVersionPolicy())


@pytest.mark.parametrize(("policy", "expected"), [
    ("latest { num_versions: 1 }", [7]),
    ("latest { num_versions: 2 }", [3, 7]),
    ("latest { num_versions: 10 }", [1, 3, 7]),
    ("all {}", [1, 3, 7]),
    ("specific { versions: [3, 1] }", [1, 3]),
    ("", [7]),  # unset: the normalised default, latest 1
])
def test_policies(policy: str, expected: list[int]) -> None:
    assert versions_to_load("m", [3, 1, 7], _policy(policy)) == expected


def test_specific_missing_versions_are_logged(caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="triton_asyncio.repository"):
        assert versions_to_load("m", [1, 2], _policy("specific { versions: [2, 5] }")) == [2]
    assert "version 5 is specified for model 'm', but the version directory is not present" in caplog.text


@pytest.mark.parametrize(("available", "policy"), [
    ([], "latest { num_versions: 1 }"),
    ([1, 2], "specific { versions: [9] }"),
    ([1, 2], "latest { num_versions: 0 }"),
    ([], "all {}"),
])
def test_nothing_to_load(available: list[int], policy: str) -> None:
    with pytest.raises(TritonError) as info:
        versions_to_load("m", available, _policy(policy))
    assert info.value.code == ErrorCode.INVALID_ARG
    assert info.value.message == "at least one version must be available under the version policy of model 'm'"


def test_select_versions_reads_the_config() -> None:
    config = mc.ModelConfig(name="m")
    assert select_versions(config, [1, 2]) == [2]
    config.version_policy.all.SetInParent()
    assert select_versions(config, [1, 2]) == [1, 2]
