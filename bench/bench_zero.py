"""Sharded data parallelism: train_fmnist --zero 0-3 against PyTorch 1.13 DDP and DDP with
ZeroRedundancyOptimizer (gloo), 2 ranks x 1 thread, global batch 256.

For fmnist-mlp and fmnist-cnn, measures the global samples/s of
  strata --zero 0 (DistributedDataParallel), --zero 1, 2, 3 (ZeroDataParallel), under mpirun;
  peer DDP and peer DDP + ZeroRedundancyOptimizer (bench/ddp_peer.py),
interleaving them so that machine noise hits all alike, and reports medians and each one's
ratio to PyTorch DDP. Prints a table, then one JSON object per figure (docs/benchmarks.md).

    /usr/bin/python3 bench/bench_zero.py --runs 5 --steps 80
"""
import argparse
import json
import os
import statistics
import sys

from bench_data_parallel import ROOT, peer_run, strata_run

CASES = ["zero0", "zero1", "zero2", "zero3", "peer_ddp", "peer_zero"]


def measure(case, binary, model, steps):
    if case.startswith("zero"):
        return strata_run(binary, model, 2, steps, ["--zero", case[4:]])
    return peer_run(model, 2, steps, ["--zero-optimizer"] if case == "peer_zero" else [])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "examples", "train_fmnist"))
    args = parser.parse_args()

    records = []
    print(f"{'workload':<12}" + "".join(f"{c:>11}" for c in CASES) +
          f"   (samples/s, medians of {args.runs}; ratio to peer_ddp below)", flush=True)
    for model in args.models.split(","):
        runs = {c: [] for c in CASES}
        for run in range(args.runs):
            for case in CASES:
                runs[case].append(measure(case, args.binary, model, args.steps))
            print(f"  fmnist-{model}: run {run + 1} of {args.runs} done", file=sys.stderr, flush=True)
        m = {c: statistics.median(v) for c, v in runs.items()}
        print(f"fmnist-{model:<5}" + "".join(f"{m[c]:>11.0f}" for c in CASES), flush=True)
        print(f"{'':<12}" + "".join(f"{m[c] / m['peer_ddp']:>11.2f}" for c in CASES), flush=True)
        for c in CASES:
            records.append({"bench": "zero", "case": f"fmnist-{model} {c} 2x1 vs PyTorch DDP gloo 2x1",
                            "value": m[c], "unit": "samples/s", "baseline": m["peer_ddp"],
                            "ratio": m[c] / m["peer_ddp"], "runs": args.runs})
    for r in records:
        print(json.dumps(r))


if __name__ == "__main__":
    sys.exit(main())
