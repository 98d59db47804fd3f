"""Data-parallel throughput: strata's train_fmnist against PyTorch 1.13 DDP (gloo).

For fmnist-mlp and fmnist-cnn, measures global samples/s of
  strata 1 rank x 1 thread, strata 2 ranks x 1 thread (mpirun),
  peer   1 process x 1 thread, peer 2 DDP ranks x 1 thread,
  and a ceiling: two independent 1-thread processes, each pinned to a core and training
  on half the global batch with no communication at all (the sum of their samples/s),
interleaving them so that machine noise hits all alike, and reports medians.
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


ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")


def train_command(binary, model, steps, metrics, extra):
    return [binary, "--model", model, "--threads", "1", "--max-steps", str(steps),
            "--epochs", "1", "--lr-schedule", "constant", "--log-every", "1000",
            "--metrics-out", metrics] + extra


def final_samples_per_s(metrics):
    with open(metrics) as f:
        return [json.loads(line) for line in f if '"final"' in line][-1]["samples_per_s"]


def strata_run(binary, model, ranks, steps, extra):
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "m.jsonl")
        cmd = train_command(binary, model, steps, metrics, extra)
        if ranks > 1:
            cmd = ["mpirun", "-np", str(ranks), "--oversubscribe", "--bind-to", "core"] + cmd
        subprocess.run(cmd, env=ENV, check=True, stdout=subprocess.DEVNULL)
        return final_samples_per_s(metrics)


def independent_run(binary, model, steps, extra, batch=256, ranks=2):
    """Two processes training at once on half batches, without communicating."""
    with tempfile.TemporaryDirectory() as tmp:
        procs, files = [], []
        for r in range(ranks):
            metrics = os.path.join(tmp, f"m{r}.jsonl")
            cmd = ["taskset", "-c", str(r)] + train_command(
                binary, model, steps, metrics, extra + ["--batch", str(batch // ranks)])
            procs.append(subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL))
            files.append(metrics)
        for p in procs:
            if p.wait() != 0:
                raise RuntimeError("independent run failed")
        return sum(final_samples_per_s(m) for m in files)


def peer_run(model, ranks, steps, extra=()):
    out = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench", "ddp_peer.py"),
                          "--model", model, "--ranks", str(ranks), "--threads", "1",
                          "--steps", str(steps), *extra],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["samples_per_s"]


def fmnist_parser(doc):
    """The flags every train_fmnist throughput bench takes: --runs, --steps, --binary."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--binary", default=os.path.join(ROOT, "build", "examples", "train_fmnist"))
    return parser


def interleaved_medians(cases, runs, measure, label):
    """measure(case) for every case in turn, `runs` rounds (so that machine noise hits all
    alike); the median of each case's values."""
    values = {c: [] for c in cases}
    for run in range(runs):
        for case in cases:
            values[case].append(measure(case))
        print(f"  {label}: run {run + 1} of {runs} done", file=sys.stderr, flush=True)
    return {c: statistics.median(v) for c, v in values.items()}


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
          f" {'no-comm 2x':>11} {'2r/peer':>8} {'2r/1r':>6} {'ceiling/1r':>10}"
          f"   (samples/s, medians of {args.runs})", flush=True)
    for model in args.models.split(","):
        runs = {"s1": [], "s2": [], "p1": [], "p2": [], "c2": []}
        for _ in range(args.runs):
            runs["s1"].append(strata_run(args.binary, model, 1, args.steps, extra))
            runs["s2"].append(strata_run(args.binary, model, 2, args.steps, extra))
            runs["p1"].append(peer_run(model, 1, args.steps))
            runs["p2"].append(peer_run(model, 2, args.steps))
            runs["c2"].append(independent_run(args.binary, model, args.steps, extra))
        m = {k: statistics.median(v) for k, v in runs.items()}
        print(f"fmnist-{model:<5} {m['s1']:>10.0f} {m['s2']:>10.0f} {m['p1']:>10.0f} {m['p2']:>12.0f}"
              f" {m['c2']:>11.0f} {m['s2'] / m['p2']:>8.2f} {m['s2'] / m['s1']:>6.2f}"
              f" {m['c2'] / m['s1']:>10.2f}", flush=True)
        w = f"fmnist-{model}"
        records += [
            {"bench": "data_parallel", "case": f"{w} strata 2x1 vs PyTorch DDP gloo 2x1",
             "value": m["s2"], "unit": "samples/s", "baseline": m["p2"], "ratio": m["s2"] / m["p2"]},
            {"bench": "data_parallel", "case": f"{w} strata 2x1 vs strata 1x1",
             "value": m["s2"], "unit": "samples/s", "baseline": m["s1"], "ratio": m["s2"] / m["s1"]},
            {"bench": "data_parallel", "case": f"{w} strata 1x1 vs PyTorch 1x1",
             "value": m["s1"], "unit": "samples/s", "baseline": m["p1"], "ratio": m["s1"] / m["p1"]},
            {"bench": "data_parallel", "case": f"{w} 2 independent half-batch processes vs strata 1x1",
             "value": m["c2"], "unit": "samples/s", "baseline": m["s1"], "ratio": m["c2"] / m["s1"]},
            {"bench": "data_parallel", "case": f"{w} PyTorch DDP 2x1 vs PyTorch 1x1",
             "value": m["p2"], "unit": "samples/s", "baseline": m["p1"], "ratio": m["p2"] / m["p1"]},
        ]
    for r in records:
        r["runs"] = args.runs
        print(json.dumps(r))


if __name__ == "__main__":
    sys.exit(main())
