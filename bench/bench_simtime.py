"""Pipelines on two simulated accelerators in simulated time (issue 17, "Benchmark").

1. Simulated samples/s of the real pipeline (strata-accel model --devices: the executor,
   one worker thread per device, every instruction timed by the Simulator and the
   schedule replayed) for fmnist-cnn and fortunes-lm, on a heterogeneous pair
   (nvdla,shidiannao) and a homogeneous pair (nvdla,nvdla), for each schedule and
   M in {1, 4, 8}, against the old "stages in turn" figure of the same run (the stages'
   simulated times added up: what SimulatedPipeline reported).
2. The wall-clock cost of running on simulated devices: train_fmnist --pp 2 with
   --devices accel:nvdla,accel:shidiannao (Simulator installed, every instruction timed)
   against --devices cpu,cpu (the same in-process pipeline on the CPU), runs interleaved,
   medians; target at most 1.3x. (train_lm cannot run in one process yet: its tied
   embedding and head would sit on two in-process ranks.)

Prints a markdown table per part and one JSON object per figure.

    /usr/bin/python3 bench/bench_simtime.py --runs 3
    /usr/bin/python3 bench/bench_simtime.py --quick     # a smoke test, figures meaningless
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
SCHEDULES = ["gpipe", "1f1b", "zb-h1"]
PAIRS = {"heterogeneous": "nvdla,shidiannao", "homogeneous": "nvdla,nvdla"}
MODELS = {"fmnist-cnn": ["--batch", "64"], "fortunes-lm": ["--batch", "8", "--seq", "64"]}


def log(message):
    print(message, file=sys.stderr, flush=True)


def simulated(args):
    rows = []
    micro = [1, 4] if args.quick else [1, 4, 8]
    total = len(MODELS) * len(PAIRS) * len(SCHEDULES) * len(micro)
    done = 0
    for model, model_flags in MODELS.items():
        for pair_name, pair in PAIRS.items():
            for schedule in SCHEDULES:
                for m in micro:
                    done += 1
                    log(f"[{done}/{total}] {model} on {pair}, {schedule}, M {m}")
                    out = subprocess.run(
                        [os.path.join(BUILD, "tools", "strata-accel"), "model", "--model", model,
                         *model_flags, "--devices", pair, "--schedule", schedule,
                         "--micro-batches", str(m), "--train-steps", str(args.train_steps),
                         "--json"], check=True, capture_output=True, text=True).stdout
                    # The report is the JSON object; anything logged before it is not.
                    report = json.loads(out[out.index("\n{") + 1:] if not out.startswith("{")
                                        else out)
                    pipe = report["pipeline"]
                    batch = report["batch"]
                    steps = report["train_steps"]
                    in_turn = batch * steps / (pipe["latency_us"] * 1e-6)
                    sim = pipe["simulated"]
                    rows.append({"bench": "simtime", "model": model, "pair": pair_name,
                                 "devices": pair, "schedule": schedule, "micro_batches": m,
                                 "simulated_samples_per_s": sim["simulated_samples_per_s"],
                                 "stages_in_turn_samples_per_s": in_turn,
                                 "ratio": sim["simulated_samples_per_s"] / in_turn,
                                 "idle": sim["simulated_idle_fraction"],
                                 "energy_uj_per_step": sim["energy_uj"] / steps})
    print("| model | pair | schedule | M | simulated samples/s | stages in turn | ratio | idle per device |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        idle = " / ".join(f"{100 * i:.0f}%" for i in r["idle"])
        print(f"| {r['model']} | {r['pair']} | {r['schedule']} | {r['micro_batches']} | "
              f"{r['simulated_samples_per_s']:.0f} | {r['stages_in_turn_samples_per_s']:.0f} | "
              f"{r['ratio']:.2f} | {idle} |")
    return rows


def train(devices, steps, out):
    metrics = os.path.join(out, "m.jsonl")
    if os.path.exists(metrics):
        os.remove(metrics)
    subprocess.run([os.path.join(BUILD, "examples", "train_fmnist"), "--model", "cnn",
                    "--threads", "1", "--pp", "2", "--devices", devices, "--batch", "64",
                    "--max-steps", str(steps), "--log-every", str(steps),
                    "--metrics-out", metrics], check=True, capture_output=True, text=True)
    with open(metrics) as f:
        return [json.loads(line) for line in f][-1]


def overhead(args):
    cpu, acc = [], []
    with tempfile.TemporaryDirectory() as out:
        for run in range(args.runs):
            log(f"wall clock run {run + 1}/{args.runs}")
            cpu.append(train("cpu,cpu", args.steps, out)["samples_per_s"])
            acc.append(train("accel:nvdla,accel:shidiannao", args.steps, out)["samples_per_s"])
    row = {"bench": "simtime-overhead", "model": "fmnist-cnn", "batch": 64,
           "cpu_samples_per_s": statistics.median(cpu),
           "accel_samples_per_s": statistics.median(acc)}
    row["overhead"] = row["cpu_samples_per_s"] / row["accel_samples_per_s"]
    print("\n| train_fmnist cnn, --pp 2, batch 64 | samples/s (median) |")
    print("|---|---|")
    print(f"| --devices cpu,cpu | {row['cpu_samples_per_s']:.0f} |")
    print(f"| --devices accel:nvdla,accel:shidiannao | {row['accel_samples_per_s']:.0f} |")
    print(f"| wall-clock overhead | {row['overhead']:.2f}x (target <= 1.3x) |")
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60, help="train_fmnist steps per run")
    parser.add_argument("--train-steps", type=int, default=2, help="strata-accel steps per case")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.steps, args.train_steps = 1, 25, 1
    rows = simulated(args) + [overhead(args)]
    print()
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
