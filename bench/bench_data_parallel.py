"""Data-parallel throughput: strata's train_fmnist against PyTorch 1.13 DDP (gloo).

For fmnist-mlp and fmnist-cnn, measures global samples/s of
  strata 1 rank x 1 thread, strata 2 ranks x 1 thread (mpirun),
  peer   1 process x 1 thread, peer 2 DDP ranks x 1 thread,
interleaving the four so that machine noise hits all alike, and reports medians.
Prints a table, then one JSON object per figure (docs/BENCHMARKS.md).

    /usr/bin/python3 bench/bench_data_parallel.py --runs 5 --steps 80
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def strata_run(binary, model, ranks, steps, extra):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "m.jsonl")
        cmd = [binary, "--model", model, "--threads", "1", "--max-steps", str(steps),
               "--epochs", "1", "--lr-schedule", "constant", "--log-every", "1000",
               "--metrics-out", metrics] + extra
        if ranks > 1:
            cmd = ["mpirun", "-np", str(ranks), "--oversubscribe", "--bind-to", "core"] + cmd
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        with open(metrics) as f:
            final = [json.loads(line) for line in f if '"final"' in line][-1]
    return final["samples_per_s"]


def peer_run(model, ranks, steps):
    out = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench", "ddp_peer.py"),
                          "--model", model, "--ranks", str(ranks), "--threads", "1",
                          "--steps", str(steps)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["samples_per_s"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "examples", "train_fmnist"))
    parser.add_argument("--strata-args", default="", help="extra train_fmnist flags")
    args = parser.parse_args()
    extra = args.strata_args.split()

    records = []
    print(f"{'workload':<12} {'strata 1r':>10} {'strata 2r':>10} {'peer 1p':>10} {'peer DDP 2r':>12}"
          f" {'2r/peer':>8} {'2r/1r':>6}   (samples/s, medians of {args.runs})", flush=True)
    for model in args.models.split(","):
        runs = {"s1": [], "s2": [], "p1": [], "p2": []}
        for _ in range(args.runs):
            runs["s1"].append(strata_run(args.binary, model, 1, args.steps, extra))
            runs["s2"].append(strata_run(args.binary, model, 2, args.steps, extra))
            runs["p1"].append(peer_run(model, 1, args.steps))
            runs["p2"].append(peer_run(model, 2, args.steps))
        m = {k: statistics.median(v) for k, v in runs.items()}
        print(f"fmnist-{model:<5} {m['s1']:>10.0f} {m['s2']:>10.0f} {m['p1']:>10.0f} {m['p2']:>12.0f}"
              f" {m['s2'] / m['p2']:>8.2f} {m['s2'] / m['s1']:>6.2f}", flush=True)
        w = f"fmnist-{model}"
        records += [
            {"bench": "data_parallel", "case": f"{w} strata 2x1 vs PyTorch DDP gloo 2x1",
             "value": m["s2"], "unit": "samples/s", "baseline": m["p2"], "ratio": m["s2"] / m["p2"]},
            {"bench": "data_parallel", "case": f"{w} strata 2x1 vs strata 1x1",
             "value": m["s2"], "unit": "samples/s", "baseline": m["s1"], "ratio": m["s2"] / m["s1"]},
            {"bench": "data_parallel", "case": f"{w} strata 1x1 vs PyTorch 1x1",
             "value": m["s1"], "unit": "samples/s", "baseline": m["p1"], "ratio": m["s1"] / m["p1"]},
            {"bench": "data_parallel", "case": f"{w} PyTorch DDP 2x1 vs PyTorch 1x1",
             "value": m["p2"], "unit": "samples/s", "baseline": m["p1"], "ratio": m["p2"] / m["p1"]},
        ]
    for r in records:
        r["runs"] = args.runs
        print(json.dumps(r))


if __name__ == "__main__":
    sys.exit(main())
