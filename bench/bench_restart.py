#!/usr/bin/env python3
"""What an automatic restart costs (issue 19): strata-run --max-restarts 1 with one rank
killed mid-run (STRATA_FAULT), against the same job uninterrupted.

For each workload and world size, from the job's output, timestamped as it arrives:
  detection  the rank's death (the fault's "killing pid" line) to the agent's restart line;
  relaunch   the restart line to the relaunched rank 0's "resumed from" line (new
             processes, rendezvous, reading the checkpoint);
  overhead   the restarted job's wall time minus the uninterrupted job's (detection,
             relaunch and the steps redone since the last checkpoint).

  /usr/bin/python3 bench/bench_restart.py [--build build] [--runs 3]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

# Each workload with the step at which rank 1 dies: 5 steps after a checkpoint, and late
# enough that the relaunched process (which counts its steps anew) does not reach it again.
WORKLOADS = {
    "fmnist-mlp": (["examples/train_fmnist", "--model", "mlp", "--batch", "128", "--max-steps",
                    "60", "--checkpoint-every", "10", "--log-every", "10"], 35),
    "fortunes-lm": (["examples/train_lm", "--steps", "40", "--checkpoint-every", "10",
                     "--log-every", "10"], 25),
}


def run(build, argv, ranks, kill_step, ckpt):
    env = dict(os.environ)
    if kill_step:
        env["STRATA_FAULT"] = f"train-step:{kill_step}:1"
    command = [f"{build}/tools/strata-run", "-n", str(ranks), "--max-restarts", "1",
               f"{build}/{argv[0]}", "--threads", "1", *argv[1:], "--checkpoint-dir", ckpt]
    start = time.monotonic()
    marks = {}
    # The launcher's lines are on stderr, the ranks' log lines on stdout: read both, in order.
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as job:
        for line in job.stdout:
            now = time.monotonic() - start
            for key, text in (("kill", "injected fault: killing pid"),
                              ("restart", "strata-run: restart 1"),
                              ("resumed", "resumed from")):
                if text in line and key not in marks:
                    marks[key] = now
    if job.returncode != 0:
        sys.exit(f"bench_restart: {' '.join(command)} exited with {job.returncode}")
    marks["end"] = time.monotonic() - start
    return marks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print("| workload | ranks | uninterrupted (s) | detection (s) | relaunch to resumed (s) | overhead (s) |")
    print("|---|---|---|---|---|---|")
    for name, (argv, kill_step) in WORKLOADS.items():
        for ranks in (2, 4):
            clean, detect, relaunch, overhead = [], [], [], []
            for i in range(args.runs):
                print(f"# {name}, {ranks} ranks, run {i + 1}/{args.runs}", file=sys.stderr, flush=True)
                with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
                    plain = run(args.build, argv, ranks, None, a)
                    hit = run(args.build, argv, ranks, kill_step, b)
                clean.append(plain["end"])
                detect.append(hit["restart"] - hit["kill"])
                relaunch.append(hit["resumed"] - hit["restart"])
                overhead.append(hit["end"] - plain["end"])
            med = statistics.median
            print(f"| {name} | {ranks} | {med(clean):.1f} | {med(detect):.2f} | {med(relaunch):.2f} | "
                  f"{med(overhead):.1f} |", flush=True)


if __name__ == "__main__":
    main()
