"""Startup tables, option rows, listener lines and the Triton log line format (spec 9.3, 9.4)."""
from __future__ import annotations

import logging
import re

import pytest

from triton_asyncio.server import startup_log
from triton_asyncio.server.cli_args import parse_args
from triton_asyncio.server.options import ServerOptions
from triton_asyncio.server.startup_log import (
    TritonFormatter,
    configure_logging,
    grpc_started,
    http_started,
    log_table,
    metrics_started,
    model_table,
    options_table,
    render_table,
    server_option_rows,
    verbose_level,
)

SIMPLE_TABLE = """\
+--------+---------+--------+
| Model  | Version | Status |
+--------+---------+--------+
| simple | 1       | READY  |
+--------+---------+--------+"""

OPTIONS_TABLE = """\
+----------------------------------+---------------------------------------+
| Option                           | Value                                 |
+----------------------------------+---------------------------------------+
| server_id                        | srv                                   |
| server_version                   | 2.73.0                                |
| server_extensions                | classification sequence               |
| model_repository_path[0]         | /models                               |
| model_repository_path[1]         | /more                                 |
| model_control_mode               | MODE_EXPLICIT                         |
| startup_models_0                 | simple                                |
| strict_model_config              | 1                                     |
| model_config_name                | h100                                  |
| rate_limit                       | EXEC_COUNT                            |
| rate_limit_resource[0]           | {"name":"R1", "count":10 "device":-1} |
| rate_limit_resource[1]           | {"name":"R2", "count":4 "device":1}   |
| pinned_memory_pool_byte_size     | 268435456                             |
| cuda_memory_pool_byte_size{0}    | 1024                                  |
| min_supported_compute_capability | 6.0                                   |
| strict_readiness                 | 1                                     |
| exit_timeout                     | 0                                     |
| cache_enabled                    | 1                                     |
+----------------------------------+---------------------------------------+"""


def test_model_table_golden():
    assert model_table([("simple", "1", "READY")]) == SIMPLE_TABLE


def test_options_table_golden():
    o = parse_args(["--model-repository=/models", "--model-repository=/more", "--model-control-mode=explicit",
                    "--load-model=simple", "--rate-limit=execution_count", "--rate-limit-resource=R2:4:1",
                    "--rate-limit-resource=R1:10", "--cuda-memory-pool-byte-size=0:1024",
                    "--cache-config=local,size=1048576", "--exit-timeout-secs=-5",
                    "--min-supported-compute-capability=6", "--disable-auto-complete-config",
                    "--model-config-name=h100", "--id=srv"])
    assert options_table(server_option_rows(o, "2.73.0", ["classification", "sequence"])) == OPTIONS_TABLE


def test_default_option_rows():
    rows = server_option_rows(ServerOptions(model_repositories=("/m",)), "2.73.0", [])
    assert [k for k, _ in rows] == [
        "server_id", "server_version", "server_extensions", "model_repository_path[0]", "model_control_mode",
        "strict_model_config", "model_config_name", "rate_limit", "pinned_memory_pool_byte_size",
        "min_supported_compute_capability", "strict_readiness", "exit_timeout", "cache_enabled"]
    assert dict(rows)["min_supported_compute_capability"] == "7.5"
    assert dict(rows)["model_control_mode"] == "MODE_NONE"


def test_long_cells_wrap_within_fair_shares():
    # width 18: two columns get 5 chars each; "Name" needs 4, so its spare char goes to "Text".
    # A row of empty cells prints as an empty line, as tritonserver's printer does.
    assert render_table(("Name", "Text"), [("a", "abcdefghij"), ("", "")], width=18) == """\
+------+--------+
| Name | Text   |
+------+--------+
| a    | abcdef |
|      | ghij   |

+------+--------+"""


def test_listener_lines():
    assert grpc_started("0.0.0.0", 8001) == "Started GRPCInferenceService at 0.0.0.0:8001"
    assert http_started("0.0.0.0", 8000) == "Started HTTPService at 0.0.0.0:8000"
    assert metrics_started("0.0.0.0", 8002) == "Started Metrics Service at 0.0.0.0:8002"


def _record(msg: str, level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("triton_asyncio.x", level, "/a/b/model_lifecycle.py", 473, msg, (), None)
    record.created, record.process = 1726560723.48122, 1
    record.__dict__.update(extra)
    return record


def test_default_format_line():
    line = TritonFormatter(escape=True).format(_record("loading: simple:1"))
    assert line == 'I0917 08:12:03.481220 1 model_lifecycle.py:473] "loading: simple:1"'


def test_iso8601_format_and_levels():
    fmt = TritonFormatter("ISO8601", escape=True)
    assert fmt.format(_record("x", logging.WARNING)) == '2024-09-17T08:12:03Z W 1 model_lifecycle.py:473] "x"'
    assert fmt.format(_record("x", logging.ERROR)).startswith("2024-09-17T08:12:03Z E ")
    assert fmt.format(_record("x", verbose_level(2))).startswith("2024-09-17T08:12:03Z I ")


def test_escaping_and_raw_tables():
    assert TritonFormatter(escape=True).format(_record('a "b"\nc')).endswith('] "a \\"b\\"\\nc"')
    assert TritonFormatter(escape=False).format(_record('a "b"')).endswith('] a "b"')
    assert TritonFormatter(escape=True).format(_record("\n+--+\n", triton_raw=True)).endswith("] \n+--+\n")


def test_escape_env(monkeypatch):
    monkeypatch.setenv("TRITON_SERVER_ESCAPE_LOG_MESSAGES", "0")
    assert not TritonFormatter().escape


def test_verbose_levels():
    assert [verbose_level(n) for n in (1, 2, 3)] == [logging.DEBUG, logging.DEBUG - 1, logging.DEBUG - 2]


@pytest.fixture
def restore_logger():
    logger = logging.getLogger("triton_asyncio")
    saved = logger.level, logger.propagate, list(logger.handlers)
    yield logger
    control = startup_log.log_control()
    if control is not None:
        control.close()
    startup_log._control = None
    logger.setLevel(saved[0])
    logger.propagate = saved[1]
    logger.handlers[:] = saved[2]


def test_log_file_enables_and_runtime_update(tmp_path, restore_logger):
    path = tmp_path / "triton.log"
    control = configure_logging(ServerOptions(log_file=str(path), log_info=False))
    log = logging.getLogger("triton_asyncio.repository")
    log.info("hidden")
    log.warning("shown")
    log.debug("verbose off")
    control.update({"log_info": True, "log_verbose_level": 1})
    log.info("now shown")
    log.debug("verbose on")
    log_table(SIMPLE_TABLE)
    lines = path.read_text().splitlines()
    assert [re.sub(r"^.*\] ", "", s) for s in lines[:4]] == ['"shown"', '"now shown"', '"verbose on"', ""]
    assert re.match(r"W\d{4} \d\d:\d\d:\d\d\.\d{6} \d+ test_startup_log\.py:\d+\] ", lines[0])
    assert "\n".join(lines[4:9]) == SIMPLE_TABLE
    assert control.settings() == {"log_file": str(path), "log_info": True, "log_warning": True,
                                  "log_error": True, "log_verbose_level": 1, "log_format": "default"}


def test_console_goes_to_stderr(capsys, restore_logger):
    configure_logging(ServerOptions(log_format="ISO8601"))
    logging.getLogger("triton_asyncio").error("boom")
    captured = capsys.readouterr()
    assert captured.out == "" and re.match(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ E \d+ .*\] "boom"\n$', captured.err)
