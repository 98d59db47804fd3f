"""Mixed precision: strata fp32 and bf16 against PyTorch 1.13 fp32 and autocast bf16.

fortunes-lm (docs/BENCHMARKS.md: batch 32, context 128, 1 thread per rank): tokens/s of
  strata   build/examples/train_lm --precision fp32 | bf16
  peer     bench/lm_peer.py --precision fp32 | bf16 (torch.autocast("cpu", torch.bfloat16))
in one process, and with 2 in --ranks on 2 ranks (strata under mpirun --bind-to core,
PyTorch DDP over gloo); strata's bf16 on 2 ranks once per --grad-reduce-dtype. Then the
same for fmnist data parallel (--fmnist-models; samples/s of train_fmnist against
bench/ddp_peer.py). Runs are interleaved (machine noise hits every case alike) and
reported as medians: a table, then one JSON object per figure (docs/BENCHMARKS.md).

    /usr/bin/python3 bench/bench_precision.py --runs 5
    /usr/bin/python3 bench/bench_precision.py --quick     # a smoke test, figures meaningless
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


def final_record(metrics):
    with open(metrics) as f:
        return [json.loads(line) for line in f if '"final"' in line][-1]


def strata_run(cmd, ranks, key):
    """Runs a strata training command on `ranks` ranks; returns its final record's `key`."""
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "m.jsonl")
        cmd = cmd + ["--threads", "1", "--log-every", "1000", "--metrics-out", metrics]
        if ranks > 1:
            cmd = ["mpirun", "-np", str(ranks), "--oversubscribe", "--bind-to", "core"] + cmd
        done = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"error: {' '.join(cmd)} failed:\n{done.stderr.strip()}")
        return final_record(metrics)[key]


def peer_run(script, args, key):
    cmd = ["/usr/bin/python3", os.path.join(ROOT, "bench", script)] + args
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])[key]


def cases(args):
    """(workload, name, ranks, precision, function returning the figure) in run order."""
    lm = os.path.join(args.build, "examples", "train_lm")
    fmnist = os.path.join(args.build, "examples", "train_fmnist")
    out = []
    ranks_list = [int(r) for r in args.ranks.split(",")]
    workloads = [("fortunes-lm", "tokens/s")] + [(f"fmnist-{m}", "samples/s")
                                                for m in args.fmnist_models.split(",") if m]
    for workload, unit in workloads:
        for ranks in ranks_list:
            for precision in ("fp32", "bf16"):
                reduce_dtypes = args.grad_reduce_dtype.split(",") if ranks > 1 and precision == "bf16" else ["fp32"]
                for reduce in reduce_dtypes:
                    flags = ["--precision", precision]
                    name = f"strata {precision}"
                    if ranks > 1 and precision == "bf16":
                        flags += ["--grad-reduce-dtype", reduce]
                        name += f" reduce {reduce}"
                    if workload == "fortunes-lm":
                        cmd = [lm, "--steps", str(args.lm_steps), "--eval-every", "0",
                               "--eval-batches", "1"] + flags
                        out.append((workload, unit, name, ranks, precision,
                                    lambda cmd=cmd, r=ranks: strata_run(cmd, r, "tokens_per_s")))
                    else:
                        cmd = [fmnist, "--model", workload.split("-")[1], "--max-steps",
                               str(args.fmnist_steps), "--epochs", "1", "--lr-schedule",
                               "constant"] + flags
                        out.append((workload, unit, name, ranks, precision,
                                    lambda cmd=cmd, r=ranks: strata_run(cmd, r, "samples_per_s")))
                if workload == "fortunes-lm":
                    peer = ["--precision", precision, "--ranks", str(ranks), "--threads", "1",
                            "--steps", str(args.lm_steps)]
                    out.append((workload, unit, f"PyTorch {precision}", ranks, precision,
                                lambda peer=peer: peer_run("lm_peer.py", peer, "tokens_per_s")))
                else:
                    peer = ["--model", workload.split("-")[1], "--precision", precision,
                            "--ranks", str(ranks), "--threads", "1", "--steps",
                            str(args.fmnist_steps)]
                    out.append((workload, unit, f"PyTorch {precision}", ranks, precision,
                                lambda peer=peer: peer_run("ddp_peer.py", peer, "samples_per_s")))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lm-steps", type=int, default=40)
    parser.add_argument("--fmnist-steps", type=int, default=60)
    parser.add_argument("--ranks", default="1,2", help="rank counts, e.g. 1 or 1,2")
    parser.add_argument("--fmnist-models", default="mlp", help="e.g. mlp,cnn; empty: none")
    parser.add_argument("--grad-reduce-dtype", default="fp32,bf16",
                        help="strata bf16 on several ranks once per dtype")
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--quick", action="store_true", help="1 run of few steps")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.lm_steps, args.fmnist_steps = 1, 12, 12

    todo = cases(args)
    results = {i: [] for i in range(len(todo))}
    for run in range(args.runs):
        for i, case in enumerate(todo):
            results[i].append(case[5]())
            # Progress: a case takes from seconds (fmnist) to minutes (fortunes-lm).
            print(f"run {run + 1}/{args.runs}: {case[0]} {case[3]} rank(s) {case[2]}: "
                  f"{results[i][-1]:.0f} {case[1]}", file=sys.stderr, flush=True)
    medians = {i: statistics.median(v) for i, v in results.items()}

    records = []
    print(f"{'workload':<12} {'ranks':>5} {'case':<28} {'median':>10}  unit   vs PyTorch same precision"
          f"  (medians of {args.runs})")
    for i, (workload, unit, name, ranks, precision, _) in enumerate(todo):
        peer = next(j for j, c in enumerate(todo) if c[0] == workload and c[3] == ranks
                    and c[2] == f"PyTorch {precision}")
        fp32_peer = next(j for j, c in enumerate(todo) if c[0] == workload and c[3] == ranks
                         and c[2] == "PyTorch fp32")
        ratio = medians[i] / medians[peer]
        print(f"{workload:<12} {ranks:>5} {name:<28} {medians[i]:>10.0f}  {unit:<9} {ratio:>5.2f}x"
              f"  ({medians[i] / medians[fp32_peer]:.2f}x PyTorch fp32)")
        if name.startswith("strata"):
            records.append({"bench": "precision",
                            "case": f"{workload} {ranks}x1 {name} vs PyTorch {precision}",
                            "value": medians[i], "unit": unit, "baseline": medians[peer],
                            "ratio": ratio, "runs": args.runs})
    for r in records:
        print(json.dumps(r))


if __name__ == "__main__":
    sys.exit(main())
