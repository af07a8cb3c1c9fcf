"""tritonserver command-line parsing (spec 9.1, 9.2): defaults, syntax, errors, post-parse rules."""
from __future__ import annotations

import dataclasses

import pytest

from triton_asyncio.server.cli_args import UsageError, parse_args, unsupported_flags, usage_text
from triton_asyncio.server.cli_flags import FLAGS, _wrap
from triton_asyncio.server.options import ServerOptions

REPO = "--model-repository=/models"


def parse(*argv: str) -> ServerOptions:
    return parse_args([REPO, *argv])


def error(*argv: str, repo: bool = True) -> UsageError:
    with pytest.raises(UsageError) as info:
        parse_args([REPO, *argv] if repo else list(argv))
    assert info.value.exit_code == 1
    return info.value


def test_defaults_are_tritonservers():
    o = parse()
    assert o == dataclasses.replace(ServerOptions(), model_repositories=("/models",), repository_poll_secs=0)
    assert (o.id, o.http_port, o.grpc_port, o.metrics_port) == ("triton", 8000, 8001, 8002)
    assert (o.http_address, o.grpc_address, o.metrics_address) == ("0.0.0.0",) * 3
    assert (o.exit_timeout_secs, o.http_max_input_size, o.pinned_memory_pool_byte_size) == (30, 67108864, 268435456)
    assert o.exit_on_error and o.strict_readiness and not o.strict_model_config and not o.allow_client_shm
    assert (o.model_control_mode, o.log_format, o.grpc_max_response_pool_size) == ("none", "default", 2**31 - 1)


def test_every_flag_is_handled():
    from triton_asyncio.server.cli_handlers import SIMPLE, SPECIAL
    assert set(FLAGS) - {"help"} == set(SIMPLE) | set(SPECIAL)


def test_both_syntaxes_and_last_value_wins():
    assert parse("--http-port=9000") == parse("--http-port", "9000")
    assert parse("--id", "--not-a-flag").id == "--not-a-flag"  # a separate argument is taken verbatim
    assert parse("--http-port=1", "--http-port=2").http_port == 2
    assert parse("--id=").id == ""


def test_unique_prefix_selects_a_flag():
    assert parse("--http-po=9000").http_port == 9000
    e = error("--model=x")
    assert "tritonserver: option '--model=x' is ambiguous; possibilities: '--model-store'" in e.message


@pytest.mark.parametrize("text,value", [("true", True), ("ON", True), ("1", True),
                                        ("False", False), ("off", False), ("0", False)])
def test_bool_values(text, value):
    assert parse(f"--allow-http={text}").allow_http is value


def test_bad_bool_is_reported_with_usage():
    e = error("--allow-grpc=yes")
    assert e.message.startswith('Bad option: "--allow-grpc".\ninvalid value for bool option: yes\n'
                                "Usage: tritonserver [options]\n  --help\n\tPrint usage\n\nServer:\n")


@pytest.mark.parametrize("text,message", [
    ("abc", "Invalid option value. Got abc"),
    ("", "Invalid option value. Got "),
    ("99999999999", "Provided option value is out of bound. Got 99999999999"),
])
def test_bad_int(text, message):
    assert error(f"--http-port={text}").message.startswith(f'Bad option: "--http-port".\n{message}\n')


def test_ints_parse_like_stoi():
    assert parse("--http-port= 80x").http_port == 80
    assert parse("--exit-timeout-secs=-3").exit_timeout_secs == -3
    assert parse("--pinned-memory-pool-byte-size=8589934592").pinned_memory_pool_byte_size == 2**33
    assert parse("--min-supported-compute-capability=6").min_supported_compute_capability == 6.0


@pytest.mark.parametrize("text,level", [("true", 1), ("FALSE", 0), ("3", 3)])
def test_log_verbose_accepts_bools_and_levels(text, level):
    assert parse(f"--log-verbose={text}").log_verbose == level


def test_log_verbose_rejects_on():
    assert "Invalid option value. Got on" in error("--log-verbose=on").message


def test_repeated_set_flags_collapse_and_sort():
    o = parse_args(["--model-repository=/b", "--model-store=/a", "--model-repository", "/b",
                    "--model-control-mode=EXPLICIT", "--load-model=y", "--load-model=x", "--load-model=y"])
    assert o.model_repositories == ("/a", "/b")
    assert (o.model_control_mode, o.load_models) == ("explicit", ("x", "y"))


def test_repeated_key_value_flags():
    o = parse("--backend-config=python,shm-default-byte-size=1048576", "--backend-config=default-max-batch-size=8",
              "--cuda-memory-pool-byte-size=1:5", "--cuda-memory-pool-byte-size=0:7",
              "--cuda-memory-pool-byte-size=1:9", "--host-policy=gpu0,numa-node=1",
              "--rate-limit-resource=R1:10", "--rate-limit-resource=R2:4:0", "--metrics-config=summary_latencies=true")
    assert o.backend_config == (("python", "shm-default-byte-size", "1048576"), ("", "default-max-batch-size", "8"))
    assert o.cuda_memory_pool_byte_size == ((0, 7), (1, 9))
    assert o.host_policies == (("gpu0", "numa-node", "1"),)
    assert o.rate_limit_resources == (("R1", 10, -1), ("R2", 4, 0))
    assert o.metrics_config == (("summary_latencies", "true"),)


@pytest.mark.parametrize("argv,message", [
    (["--foo"], "tritonserver: unrecognized option '--foo'\n\nUsage: tritonserver [options]\n"),
    (["--foo=1"], "tritonserver: unrecognized option '--foo=1'\n"),
    (["-v"], "tritonserver: invalid option -- 'v'\n"),
    (["--http-port"], "tritonserver: option '--http-port' requires an argument\n"),
    (["--help=1"], "tritonserver: option '--help' doesn't allow an argument\n"),
    (["extra"], "Unexpected argument: extra\nUsage: tritonserver [options]\n"),
    (["--", "--http-port=1"], "Unexpected argument: --http-port=1\n"),
    (["--model-control-mode=auto"], 'Bad option: "--model-control-mode".\ninvalid argument for --model-control-mode\n'),
    (["--log-format=iso8601"], 'Bad option: "--log-format".\ninvalid argument for --log-format\n'),
    (["--model-config-name="], "Error: empty argument for --model-config-name\n"),
    (["--grpc-infer-thread-count=1"], "Must be in the range 2 to 128."),
    (["--http-max-input-size=0"], "Error: --http-max-input-size must be greater than 0."),
    (["--backend-config=,a=b"], "No backend specified."),
    (["--cache-config=size=1"], "No cache specified."),
    (["--http-restricted-api=bogus:k=v"], "unknown restricted api 'bogus'"),
    (["--cuda-memory-pool-byte-size=1024"], "Cannot parse pair option"),
])
def test_errors_print_usage(argv, message):
    e = error(*argv)
    assert message in e.message
    assert "\nUsage: tritonserver [options]\n" in e.message


def test_help_is_usage_and_exit_1():
    e = error("--help")
    assert e.message == usage_text() and e.message.startswith("\nUsage: tritonserver [options]\n")
    for group in ("Server:", "Logging:", "Model Repository:", "HTTP:", "GRPC:", "Metrics:", "DEPRECATED:"):
        assert f"\n{group}\n" in e.message
    assert "  --backend-config <<string>,<string>=<string>>\n\t" in e.message
    assert "  --disable-auto-complete-config\n\t" in e.message


def test_usage_wraps_help_like_tritonserver():
    text = " ".join(["word"] * 40)
    # C++: break at the last space at or before pos + 60, then pos += 69 (counting the inserted tab)
    assert _wrap(text) == "\n\t".join([text[:59], text[60:124], text[125:194], text[195:]])


def test_load_model_requires_explicit_mode():
    e = error("--load-model=simple")
    assert e.message.startswith("Error: Use of '--load-model' requires setting '--model-control-mode=explicit' "
                                "as well.\nUsage:")


def test_poll_secs_forced_to_zero_outside_poll_mode():
    assert parse("--repository-poll-secs=5").repository_poll_secs == 0
    assert parse("--model-control-mode=poll", "--repository-poll-secs=5").repository_poll_secs == 5
    assert parse("--model-control-mode=poll").repository_poll_secs == 15


def test_metrics_address_and_enables():
    assert parse("--http-address=127.0.0.1").metrics_address == "127.0.0.1"
    assert parse("--http-address=127.0.0.1", "--metrics-address=::1").metrics_address == "::1"
    o = parse("--allow-metrics=false")
    assert not (o.allow_gpu_metrics or o.allow_cpu_metrics)


def test_strict_model_config_is_deprecated(capsys):
    assert parse("--strict-model-config=true").strict_model_config
    assert "Warning: '--strict-model-config' has been deprecated!" in capsys.readouterr().err
    o = parse("--strict-model-config=false", "--disable-auto-complete-config")
    assert o.strict_model_config and o.disable_auto_complete_config
    assert "Overriding deprecated '--strict-model-config' from False to True" in capsys.readouterr().err


def test_cache_flags(capsys):
    assert parse("--cache-config=local,size=1048576").cache_config == (("local", "size", "1048576"),)
    o = parse("--response-cache-byte-size=4096")
    assert (o.cache_enabled, o.cache_config) == (True, (("local", "size", "4096"),))
    assert "'--cache-config=local,size=4096'" in capsys.readouterr().err
    assert "Incompatible flags" in error("--response-cache-byte-size=1", "--cache-config=local,size=2").message


def test_trace_settings(capsys):
    o = parse("--trace-config=level=TIMESTAMPS", "--trace-config=level=tensors", "--trace-config=rate=5",
              "--trace-config=opentelemetry,url=localhost:4318", "--trace-config=triton,file=/tmp/t.json")
    assert (o.trace_level, o.trace_rate, o.trace_file) == (("TIMESTAMPS", "TENSORS"), 5, "/tmp/t.json")
    assert ("opentelemetry", "url", "localhost:4318") in o.trace_config
    assert parse("--trace-level=TENSORS", "--trace-config=level=OFF").trace_level == ()
    assert parse("--trace-rate=7", "--trace-config=rate=9").trace_rate == 9
    assert "Overriding deprecated '--trace-rate'" in capsys.readouterr().err
    assert 'Bad option: "--trace-config rate".\nInvalid option value. Got x' in error("--trace-config=rate=x").message


def test_grpc_ssl_and_restrictions():
    o = parse("--grpc-use-ssl-mutual=true", "--grpc-restricted-protocol=health,metadata:key=v",
              "--http-restricted-api=model-repository:admin-key=secret")
    assert o.grpc_use_ssl and o.grpc_use_ssl_mutual
    assert o.grpc_restricted_protocols == (("health", "triton-grpc-protocol-key", "v"),
                                           ("metadata", "triton-grpc-protocol-key", "v"))
    assert o.http_restricted_apis == (("model-repository", "admin-key", "secret"),)
    assert "can not be specified in multiple config groups" in error(
        "--http-restricted-api=health:a=b", "--http-restricted-api=health:c=d").message


def test_port_collisions():
    e = error("--grpc-port=8000")
    assert "The server cannot listen to HTTP requests and GRPC requests at the same address and port 0.0.0.0:8000" in e.message
    parse("--grpc-port=8000", "--grpc-address=127.0.0.1")
    parse("--grpc-port=8000", "--allow-http=false")
    parse("--http-port=0", "--grpc-port=0", "--metrics-port=0")  # port 0: the OS picks, no collision


def test_core_checks_have_no_usage_text():
    assert error(repo=False).message == "error: creating server: Invalid argument - --model-repository must be specified"
    e = error("--model-control-mode=explicit", "--load-model=*", "--load-model=a")
    assert "Wildcard model name '*' must be the ONLY startup model" in e.message and "Usage" not in e.message
    assert parse("--model-control-mode=explicit", "--load-model=*").load_models == ("*",)


def test_unsupported_flags():
    assert unsupported_flags(parse()) == []
    # served: the cache, opentelemetry tracing (server/otel.py), gRPC keepalive, the memory pools
    assert unsupported_flags(parse("--grpc-use-ssl=true", "--cache-config=local,size=1", "--trace-config=mode=opentelemetry",
                                   "--grpc-keepalive-time=10", "--pinned-memory-pool-byte-size=1024")) == [
        "grpc-use-ssl"]
    assert unsupported_flags(parse_args(["--model-repository=s3://bucket/models"])) == []
    assert unsupported_flags(parse_args(["--model-repository=as://account/container"])) == ["model-repository"]
