"""``python -m bench``: the proxy and KMS benchmark in one command (about 3-5 minutes on 2
cores; ``--quick`` about a minute).  Prints a table with the targets beside the measured values and
writes ``bench/results/<timestamp>.json`` with PNG charts next to it.

Needs wrk (``apt-get install wrk``; without it a Python load generator is used, which competes
with the proxy for the CPU) and, for the charts, matplotlib.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.plots import plot
from bench.report import evaluate, print_table, write_json
from bench.run import Settings, run

RESULTS = Path(__file__).resolve().parent / "results"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").split("\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="short runs (about a minute, 64 MiB transfers)"
    )
    p.add_argument("--duration", type=float, help="seconds per load run (default 5; quick 1)")
    p.add_argument("--concurrency", type=int, nargs="+", help="connections (default 8 32 64)")
    p.add_argument("--transfer-mib", type=int, help="large transfer size (default 1024 MiB)")
    p.add_argument("--kms-seconds", type=float, help="seconds per KMS measurement")
    p.add_argument("--repeat", type=int, default=1, help="runs per throughput point (best kept)")
    p.add_argument("--generator", choices=["wrk", "python"], default="wrk")
    p.add_argument("--profile", action="store_true", help="py-spy one worker (extra run)")
    p.add_argument("--log-level", default="info", help="the proxy's Log.Level (default info)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    s = Settings.quick() if args.quick else Settings()
    if args.duration is not None:
        s.duration = args.duration
    if args.concurrency:
        s.concurrencies = tuple(args.concurrency)
    if args.transfer_mib is not None:
        s.transfer_mib = args.transfer_mib
    if args.kms_seconds is not None:
        s.kms_seconds = args.kms_seconds
    s.generator, s.profile, s.log_level = args.generator, args.profile, args.log_level
    s.repeat = args.repeat
    return s


def main() -> None:
    args = _parser().parse_args()
    stem = args.out / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    settings = settings_from(args)
    args.out.mkdir(parents=True, exist_ok=True)
    settings.artifacts = stem
    results = run(settings)
    targets = evaluate(results)
    results["targets"] = [t.as_dict() for t in targets]
    print_table(results, targets)
    path = write_json(results, stem.with_suffix(".json"))
    print(f"results: {path}")
    if not args.no_plots:
        for png in plot(results, stem):
            print(f"plot:    {png}")


if __name__ == "__main__":
    main()
