#!/usr/bin/env python3
"""A perf_analyzer concurrency sweep against one model: perf_analyzer's CSV, and a PNG of throughput
and p50/p90/p99 latency against concurrency.

  scripts/perf_sweep.py --model simple --url localhost:8000 --protocol http \
      --concurrency-range 1:16:1 --out bench/results/simple_http
  -> simple_http.csv (perf_analyzer's `-f` report: one row per concurrency, with its throughput,
     latency breakdown and p50/p90/p95/p99 latencies in microseconds) and simple_http.png

perf_analyzer is NVIDIA's C++ client: .venv/bin/perf_analyzer_cpp (scripts/install_perf_analyzer.sh),
~/.cache/triton-peers/bin/perf_analyzer, or --perf-analyzer PATH. Arguments after `--` go to
perf_analyzer unchanged (e.g. `-- --async -b 4`). Needs matplotlib (drawn with the Agg backend).
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PERCENTILES = ("p50", "p90", "p99")


def find_perf_analyzer() -> str | None:
    """The first runnable perf_analyzer among the usual places, or None."""
    candidates = (
        os.path.join(ROOT, ".venv", "bin", "perf_analyzer_cpp"),
        os.path.expanduser("~/.cache/triton-peers/bin/perf_analyzer"),
        shutil.which("perf_analyzer_cpp"),
    )
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def perf_analyzer_command(args: argparse.Namespace, pa: str, csv_path: str) -> list[str]:
    cmd = [pa, "-m", args.model, "-u", args.url, "-i", args.protocol,
           "--concurrency-range", args.concurrency_range, "-f", csv_path,
           "-p", str(args.measurement_interval), "-s", str(args.stability_percentage),
           "--max-trials", str(args.max_trials)]
    return cmd + list(args.extra)


def read_rows(csv_path: str) -> list[dict[str, float]]:
    """perf_analyzer's CSV rows as floats, sorted by concurrency. perf_analyzer writes the
    throughput as `Inferences/Second` and the latencies as `p50 latency` ... in microseconds."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = [{k.strip(): float(v) for k, v in row.items() if k and v not in (None, "")}
                for row in csv.DictReader(f)]
    missing = {"Concurrency", "Inferences/Second", *(f"{p} latency" for p in PERCENTILES)} - set(rows[0] if rows else ())
    if not rows or missing:
        raise ValueError(f"{csv_path}: no rows, or columns missing: {sorted(missing)}")
    return sorted(rows, key=lambda r: r["Concurrency"])


def plot(rows: list[dict[str, float]], png_path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    conc = [r["Concurrency"] for r in rows]
    fig, (ax_tp, ax_lat) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    ax_tp.plot(conc, [r["Inferences/Second"] for r in rows], marker="o")
    ax_tp.set(xlabel="concurrency", ylabel="inferences / s", title="throughput")
    for p in PERCENTILES:
        ax_lat.plot(conc, [r[f"{p} latency"] / 1000 for r in rows], marker="o", label=p)
    ax_lat.set(xlabel="concurrency", ylabel="latency (ms)", title="client latency")
    ax_lat.legend()
    for ax in (ax_tp, ax_lat):
        ax.grid(True, alpha=0.3)
        ax.set_xticks(conc)
        ax.set_ylim(bottom=0)
    fig.suptitle(title)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str]) -> argparse.Namespace:
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "-m", required=True)
    p.add_argument("--url", "-u", default="localhost:8000", help="host:port (8000 for http, 8001 for grpc)")
    p.add_argument("--protocol", "-i", choices=("http", "grpc"), default="http")
    p.add_argument("--concurrency-range", default="1:8:1", help="start:end:step, as perf_analyzer's")
    p.add_argument("--out", default=None,
                   help="output path without extension (default bench/results/perf_sweep_MODEL_PROTOCOL)")
    p.add_argument("--measurement-interval", "-p", type=int, default=5000, help="ms per window")
    p.add_argument("--stability-percentage", "-s", type=float, default=10)
    p.add_argument("--max-trials", type=int, default=10)
    p.add_argument("--perf-analyzer", default=None, help="path of the perf_analyzer binary")
    args = p.parse_args(argv)
    args.extra = extra
    if args.out is None:
        args.out = os.path.join(ROOT, "bench", "results", f"perf_sweep_{args.model}_{args.protocol}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    pa = args.perf_analyzer or find_perf_analyzer()
    if pa is None or not os.access(pa, os.X_OK):
        print(f"perf_sweep: no runnable perf_analyzer ({pa or 'none found'}; scripts/install_perf_analyzer.sh)",
              file=sys.stderr)
        return 2
    csv_path, png_path = args.out + ".csv", args.out + ".png"
    os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
    cmd = perf_analyzer_command(args, pa, csv_path)
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        print(f"perf_sweep: perf_analyzer exited with {proc.returncode}", file=sys.stderr)
        return proc.returncode
    rows = read_rows(csv_path)
    plot(rows, png_path, f"{args.model} over {args.protocol} ({args.url})")
    print(f"{'concurrency':>11} {'infer/s':>10} " + " ".join(f"{p + ' ms':>8}" for p in PERCENTILES))
    for r in rows:
        print(f"{r['Concurrency']:>11.0f} {r['Inferences/Second']:>10.1f} "
              + " ".join(f"{r[f'{p} latency'] / 1000:>8.2f}" for p in PERCENTILES))
    print(f"wrote {csv_path} and {png_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
