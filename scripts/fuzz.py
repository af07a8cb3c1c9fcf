#!/usr/bin/env python3
"""Longer, coverage-guided fuzzing of the parsers we own (the targets of tests/fuzz/targets.py).

Usage: .venv/bin/python scripts/fuzz.py [--seconds N] [--target NAME ...] [--corpus DIR]
  With atheris (`pip install -e .[fuzz]`): each target runs in its own process (libFuzzer exits
  the process when done) for N seconds, seeded with tests/fuzz/seeds.py, and the runs it made are
  reported. A crash leaves libFuzzer's crash-<sha1> file in the target's corpus directory.
  Without atheris: the hypothesis tests of tests/fuzz run with their budgets scaled up and
  randomized (FUZZ_EXAMPLES_SCALE), for about N seconds per test module.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
_MODULES = {"http": "test_fuzz_http", "kserve": "test_fuzz_kserve", "grpc_framing": "test_fuzz_grpc",
            "grpc_infer": "test_fuzz_grpc", "config": "test_fuzz_config", "shm_json": "test_fuzz_shm"}


def _have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def run_child(target: str, seconds: int, corpus: str) -> None:
    """In the child process: instrument our package, then hand the target to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["triton_asyncio", "h11", "tests.fuzz"]):
        from tests.fuzz import targets
    entry = targets.TARGETS[target]
    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", "-rss_limit_mb=4096", "-print_final_stats=1",
                   "-timeout=10", f"-artifact_prefix={corpus}{os.sep}", corpus],
                  lambda data: entry(bytes(data)))
    atheris.Fuzz()


def run_atheris(target: str, seconds: int, corpus_root: str) -> tuple[int, int, bool]:
    """(runs, exit code, crashed) for one target run in a child process."""
    from tests.fuzz.seeds import all_seeds

    corpus = os.path.join(corpus_root, target)
    os.makedirs(corpus, exist_ok=True)
    for i, seed in enumerate(all_seeds()[target]):
        with open(os.path.join(corpus, f"seed{i}"), "wb") as f:
            f.write(seed)
    proc = subprocess.run([sys.executable, __file__, "--child", target, "--seconds", str(seconds),
                           "--corpus", corpus_root], capture_output=True, text=True, cwd=ROOT)
    runs = re.findall(r"Done (\d+) runs", proc.stderr) or re.findall(r"stat::number_of_executed_units: (\d+)",
                                                                     proc.stderr)
    crashed = "ERROR: libFuzzer" in proc.stderr or "Uncaught Python exception" in proc.stderr
    if crashed:
        print(proc.stderr[-4000:], file=sys.stderr)
    return (int(runs[-1]) if runs else 0), proc.returncode, crashed


def run_hypothesis(targets: list[str], seconds: int) -> int:
    """The fallback: the hypothesis tests with large, randomized budgets, timed per module."""
    modules = sorted({_MODULES[t] for t in targets})
    env = dict(os.environ, FUZZ_EXAMPLES_SCALE=str(max(1, seconds * 4)))
    rc = 0
    for module in modules:
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               f"tests/fuzz/{module}.py", "--hypothesis-show-statistics"],
                              env=env, cwd=ROOT, capture_output=True, text=True)
        tried = sum(int(n) for n in re.findall(r"(\d+) passing examples", proc.stdout))
        print(f"{module}: {tried} passing examples in {time.monotonic() - start:.0f} s, rc {proc.returncode}")
        if proc.returncode:
            print(proc.stdout[-4000:])
            rc = 1
    return rc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60, help="budget per target (default 60)")
    parser.add_argument("--target", action="append", choices=sorted(_MODULES), help="default: all")
    parser.add_argument("--corpus", help="corpus directory (default: a temporary one)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child, args.seconds, os.path.join(args.corpus, args.child))
        return 0
    targets = args.target or sorted(_MODULES)
    if not _have_atheris():
        print("atheris is not importable: falling back to hypothesis with scaled-up budgets")
        return run_hypothesis(targets, args.seconds)
    corpus_root = args.corpus or tempfile.mkdtemp(prefix="triton_fuzz_")
    rc = 0
    for target in targets:
        runs, code, crashed = run_atheris(target, args.seconds, corpus_root)
        print(f"{target}: {runs} runs in {args.seconds} s, {'CRASH' if crashed else 'ok'} (exit {code})")
        rc |= crashed
    print(f"corpus: {corpus_root}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
