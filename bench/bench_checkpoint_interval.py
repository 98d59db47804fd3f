#!/usr/bin/env python3
"""How often to checkpoint a long job on many nodes (issue 19): a simulated job whose
checkpoint and restart costs are measured on this machine, its failures drawn at random,
the fraction of its time that is useful work for several checkpoint intervals against the
interval Young/Daly's rule picks (what `--checkpoint-every auto` uses).

The costs come from a real run: train_lm (fortunes-lm) with --checkpoint-every auto, whose
metrics file records the measured checkpoint time (one checkpoint written and timed), the
restart time (the process's start-up to its first step) and the step time. Or give them.

  /usr/bin/python3 bench/bench_checkpoint_interval.py --build build [--nodes 1000] \\
      [--mtbf-hours 5000] [--days 30] [--seeds 20] [--plot out/checkpoint_interval.png]
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile


def daly(c, m):
    """Daly's interval (the same formula as programs/checkpoint_interval.cpp)."""
    if c >= 2 * m:
        return m
    return math.sqrt(2 * c * m) * (1 + math.sqrt(c / (2 * m)) / 3 + c / (18 * m)) - c


def measure(build, mtbf_hours):
    """Checkpoint, restart and step seconds of fortunes-lm, from --checkpoint-every auto."""
    with tempfile.TemporaryDirectory() as work:
        metrics = os.path.join(work, "m.jsonl")
        command = [f"{build}/examples/train_lm", "--threads", "1", "--steps", "40",
                   "--checkpoint-dir", os.path.join(work, "ckpt"), "--checkpoint-every", "auto",
                   "--mtbf-hours", str(mtbf_hours), "--metrics-out", metrics, "--log-every", "10"]
        print("# measuring: " + " ".join(command), file=sys.stderr, flush=True)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        with open(metrics) as f:
            for line in f:
                record = json.loads(line)
                if record.get("event") == "checkpoint_interval":
                    return record
    sys.exit("bench_checkpoint_interval: the run wrote no checkpoint_interval record")


def useful_fraction(interval, c, r, m, work, rng):
    """One job of `work` seconds of useful work: segments of `interval` work + a checkpoint
    of `c`; a failure (exponential, mean `m`) loses the segment under way and costs `r`
    (failures may also strike during the restart)."""
    t = done = 0.0
    while done < work:
        segment = min(interval, work - done)
        length = segment + c
        failure = rng.expovariate(1 / m)
        if failure >= length:
            t += length
            done += segment
            continue
        t += failure
        while True:  # the restart, which may fail too
            failure = rng.expovariate(1 / m)
            if failure >= r:
                t += r
                break
            t += failure
    return work / t


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--mtbf-hours", type=float, default=5000, help="per node")
    parser.add_argument("--days", type=float, default=30, help="useful work of the job")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--checkpoint-seconds", type=float, help="instead of measuring")
    parser.add_argument("--restart-seconds", type=float, help="instead of measuring")
    parser.add_argument("--plot", help="write a PNG of useful fraction against interval")
    args = parser.parse_args()
    if args.checkpoint_seconds is None or args.restart_seconds is None:
        measured = measure(args.build, args.mtbf_hours)
        c = args.checkpoint_seconds or measured["checkpoint_seconds"]
        r = args.restart_seconds or measured["restart_seconds"]
        print(f"measured on fortunes-lm: checkpoint {measured['checkpoint_seconds']:.3f} s, "
              f"restart {measured['restart_seconds']:.2f} s, step {measured['step_seconds']:.4f} s; "
              f"--checkpoint-every auto chose {measured['every_steps']} steps "
              f"({measured['interval_seconds']:.0f} s) for 1 node")
    else:
        c, r = args.checkpoint_seconds, args.restart_seconds
    m = args.mtbf_hours * 3600 / args.nodes
    best = daly(c, m)
    work = args.days * 86400
    print(f"{args.nodes} nodes, MTBF {args.mtbf_hours:.0f} h per node: the job fails every "
          f"{m / 60:.1f} min on average; checkpoint {c:.3f} s, restart {r:.2f} s; "
          f"Young/Daly interval {best:.1f} s\n")
    factors = [1 / 16, 1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8, 16]
    rows = []
    print("| interval (s) | vs Young/Daly | useful fraction (mean of seeds) | min | max |")
    print("|---|---|---|---|---|")
    for factor in factors:
        interval = best * factor
        fractions = [useful_fraction(interval, c, r, m, work, random.Random(seed))
                     for seed in range(args.seeds)]
        mean = sum(fractions) / len(fractions)
        rows.append((interval, mean))
        mark = " (the rule)" if factor == 1 else ""
        print(f"| {interval:.1f} | {factor:g}x{mark} | {mean:.4f} | {min(fractions):.4f} | "
              f"{max(fractions):.4f} |", flush=True)
    winner = max(rows, key=lambda row: row[1])
    print(f"\nbest simulated interval {winner[0]:.1f} s ({winner[1]:.4f} useful); the rule's "
          f"{best:.1f} s gives {rows[factors.index(1)][1]:.4f}")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.semilogx([row[0] for row in rows], [row[1] for row in rows], "o-", label="simulated")
        ax.axvline(best, color="gray", linestyle="--", label="Young/Daly")
        ax.set_xlabel("checkpoint interval (s of work)")
        ax.set_ylabel("useful fraction of the job's time")
        ax.set_title(f"{args.nodes} nodes, MTBF {args.mtbf_hours:.0f} h/node, C={c:.2f} s, R={r:.1f} s")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
