"""Pipeline parallelism: samples/s, idle time and memory of fmnist-mlp under each schedule.

For K = 2 pipeline ranks x 1 thread (mpirun --bind-to core), every schedule (gpipe, 1f1b,
interleaved with v = 2, zb-h1) and M in {1, 2, 4, 8, 16, 32} micro-batches that the
generator accepts, measures bench/bench_pipeline's samples/s, per-rank idle fraction and
peak RSS, interleaved run by run with the single-process baselines:
  1x1      the whole model in one process, 1 thread (speedup = pipeline / this)
  1x2      the same with 2 threads
  chunks   1 thread, the batch run as M chunks of batch/M rows one after another: the
           pipeline's work without the pipeline; efficiency = pipeline / (K x this), whose
           theory is 1 - idle theory (GPipe's K*M/(M+K-1) speedup over it)
then K = 4 oversubscribed ranks (2 cores: the idle fractions, not the speed, are the
point), then peak memory at K = 2, M = 32 for GPipe and 1F1B with and without
recomputation. Prints a markdown table per K and for memory, then one JSON object per figure
(docs/BENCHMARKS.md), and writes every run's raw JSON and the 1f1b K=2 M=8 timeline
(Chrome trace and PNG) to --out.

    /usr/bin/python3 bench/bench_pipeline.py --runs 3 --steps 10
    /usr/bin/python3 bench/bench_pipeline.py --quick     # a smoke test, figures meaningless
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from plot_pipeline_trace import plot_trace  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
SCHEDULES = [("gpipe", 1), ("1f1b", 1), ("interleaved", 2), ("zb-h1", 1)]
TRACED = ("1f1b", 2, 8)  # (schedule, K, M) whose timeline is written


class Bench:
    def __init__(self, args):
        self.args = args
        self.binary = os.path.join(args.build, "bench", "bench_pipeline")
        self.schedule_tool = os.path.join(args.build, "tools", "strata-schedule")
        self.raw = []

    def run(self, cmd, threads):
        """Runs one bench_pipeline command; returns its JSON line."""
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "run.jsonl")
            a = self.args
            cmd = cmd + ["--batch", str(a.batch), "--steps", str(a.steps), "--warmup",
                         str(a.warmup), "--threads", str(threads), "--json-out", out]
            # OpenBLAS sizes its pool from this at start-up; set_num_threads can only shrink it.
            env = dict(ENV, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"error: {' '.join(cmd)} failed:\n{done.stderr.strip()}")
            with open(out) as f:
                line = json.loads(f.readlines()[-1])
        self.raw.append(line)
        return line

    def single(self, threads, rows=0):
        return self.run([self.binary, "--mode", "single", "--micro-batch-rows", str(rows)],
                        threads)

    def pipeline(self, ranks, schedule, v, m, trace=None, recompute="never"):
        cmd = ["mpirun", "-np", str(ranks), "--oversubscribe", "--bind-to",
               "core:overload-allowed", self.binary, "--mode", "pipeline", "--schedule",
               schedule, "--virtual-stages", str(v), "--micro-batches", str(m),
               "--partition", self.args.partition, "--recompute", recompute]
        if trace:
            cmd += ["--trace-out", trace]
        return self.run(cmd, 1)

    def accepted(self, ranks, schedule, v, m):
        """Whether the generator makes this schedule (interleaved needs M % K == 0, ...)."""
        if self.args.batch % m:
            return False
        done = subprocess.run([self.schedule_tool, "--schedule", schedule, "--ranks", str(ranks),
                               "--micro-batches", str(m), "--virtual-stages", str(v)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(f"skipped {schedule} K={ranks} M={m} v={v}: {done.stderr.strip()}",
                  file=sys.stderr)
        return done.returncode == 0


def megabytes(peaks, starts):
    """Peak and its growth over the run's start, per rank: 260+47/256+43."""
    return "/".join(f"{p / 1e6:.0f}+{(p - s) / 1e6:.0f}" for p, s in zip(peaks, starts))


def percents(values):
    return "/".join(f"{100 * v:.0f}" for v in values)


def sweep(bench, ranks, micro_batches, records):
    a = bench.args
    configs = [(s, v, m) for m in micro_batches for s, v in SCHEDULES
               if bench.accepted(ranks, s, v, m)]
    base = {"1x1": [], "1x2": []}
    chunks = {m: [] for m in micro_batches}
    runs = {c: [] for c in configs}
    trace = os.path.join(a.out, f"pipeline_{TRACED[0]}_K{TRACED[1]}_M{TRACED[2]}.json")
    if ranks == TRACED[1] and os.path.exists(trace):
        os.remove(trace)  # a stale one would be plotted when M = 8 is not in this sweep
    for rep in range(a.runs):
        # Baselines and pipelines alternate, so that machine noise hits all alike.
        base["1x1"].append(bench.single(1)["samples_per_s"])
        base["1x2"].append(bench.single(2)["samples_per_s"])
        for m in micro_batches:
            if a.batch % m == 0:
                chunks[m].append(bench.single(1, a.batch // m)["samples_per_s"])
        for s, v, m in configs:
            traced = rep == a.runs - 1 and (s, ranks, m) == TRACED
            runs[(s, v, m)].append(bench.pipeline(ranks, s, v, m, trace if traced else None))
    if os.path.exists(trace) and ranks == TRACED[1]:
        png = trace[:-len(".json")] + ".png"
        plot_trace(trace, png, f"fmnist-mlp, {TRACED[0]}, K={TRACED[1]}, M={TRACED[2]}, "
                               f"batch {a.batch} (last timed step)")
        print(f"timeline: {trace} and {png}", file=sys.stderr)

    s1, s2 = statistics.median(base["1x1"]), statistics.median(base["1x2"])
    print(f"\nK = {ranks} ranks x 1 thread, fmnist-mlp, batch {a.batch}, {a.partition}-balanced "
          f"stages; samples/s medians of {a.runs}; 1 process: {s1:,.0f} (1 thread), "
          f"{s2:,.0f} (2 threads)\n")
    print("| schedule | M | samples/s | vs 1x1 | vs 1x2 | chunks 1x1 | efficiency | theory "
          "| idle % per rank | idle % theory | idle % simulated | peak RSS MB per rank (+ growth) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|")
    gpipe_rss = {}
    for s, v, m in configs:
        lines = runs[(s, v, m)]
        sps = statistics.median(l["samples_per_s"] for l in lines)
        idle = [statistics.median(l["idle_fraction"][r] for l in lines) for r in range(ranks)]
        rss = [statistics.median(l["peak_rss_bytes"][r] for l in lines) for r in range(ranks)]
        start = [statistics.median(l["start_rss_bytes"][r] for l in lines) for r in range(ranks)]
        theory, simulated = lines[0]["idle_theory"], lines[0]["idle_simulated"]
        c = statistics.median(chunks[m])
        efficiency = sps / (ranks * c)
        if s == "gpipe":
            gpipe_rss[m] = rss
        name = f"{s} (v={v})" if v > 1 else s
        print(f"| {name} | {m} | {sps:,.0f} | {sps / s1:.2f} | {sps / s2:.2f} | {c:,.0f} "
              f"| {efficiency:.2f} | {1 - theory:.2f} | {percents(idle)} | {100 * theory:.0f} "
              f"| {percents(simulated)} | {megabytes(rss, start)} |")
        w = f"fmnist-mlp {s} v={v} K={ranks} M={m}"
        records.append({"bench": "pipeline", "case": f"{w} vs 1 process x 1 thread",
                        "value": sps, "unit": "samples/s", "baseline": s1, "ratio": sps / s1})
        records.append({"bench": "pipeline", "case": f"{w} vs {ranks} x {m} chunks in 1 process",
                        "value": sps, "unit": "samples/s", "baseline": ranks * c,
                        "ratio": efficiency})
        for r in range(ranks):
            records.append({"bench": "pipeline", "case": f"{w} idle fraction rank {r} vs theory",
                            "value": idle[r], "unit": "fraction", "baseline": theory,
                            "ratio": idle[r] / theory if theory else None})
            if m in gpipe_rss and s != "gpipe":
                records.append({"bench": "pipeline", "case": f"{w} peak RSS rank {r} vs gpipe",
                                "value": rss[r], "unit": "bytes", "baseline": gpipe_rss[m][r],
                                "ratio": rss[r] / gpipe_rss[m][r]})


def memory(bench, m, records):
    """Peak memory per rank at K = 2, M = m: GPipe, 1F1B, each with and without
    recomputation (one run each: memory does not vary from run to run like time does)."""
    print(f"\nPeak memory, K = 2, M = {m}, batch {bench.args.batch}: resident set (peak and its "
          "growth over the start of the run) and the executor's saved-activation peak\n")
    print("| schedule | recompute | peak RSS MB per rank (+ growth) | saved activations MB per rank "
          "| samples/s |")
    print("|---|---|---|---|---:|")
    gpipe = None
    for s, recompute in [("gpipe", "never"), ("1f1b", "never"), ("gpipe", "always"),
                         ("1f1b", "always"), ("1f1b", "except_last")]:
        line = bench.pipeline(2, s, 1, m, recompute=recompute)
        saved = line["peak_saved_bytes"]
        if gpipe is None:
            gpipe = line
        print(f"| {s} | {recompute} | {megabytes(line['peak_rss_bytes'], line['start_rss_bytes'])} "
              f"| {'/'.join(f'{b / 1e6:.1f}' for b in saved)} | {line['samples_per_s']:,.0f} |")
        for r in range(2):
            records.append({"bench": "pipeline", "case": f"fmnist-mlp {s} recompute {recompute} "
                            f"K=2 M={m} saved activations rank {r} vs gpipe",
                            "value": saved[r], "unit": "bytes",
                            "baseline": gpipe["peak_saved_bytes"][r],
                            "ratio": saved[r] / gpipe["peak_saved_bytes"][r]})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions of every run")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per run")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--micro-batches", default="1,2,4,8,16,32", help="M values for K = 2")
    parser.add_argument("--micro-batches-k4", default="4,8,16", help="M values for K = 4")
    parser.add_argument("--partition", default="parameters", choices=["parameters", "time"])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--out", default=os.path.join(ROOT, "out"))
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: 1 run of 2 steps, batch 256, few M")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.steps, args.warmup, args.batch = 1, 2, 1, 256
        args.micro_batches, args.micro_batches_k4 = "1,8", "4"
    os.makedirs(args.out, exist_ok=True)

    bench = Bench(args)
    records = []
    sweep(bench, 2, [int(m) for m in args.micro_batches.split(",")], records)
    if args.micro_batches_k4:
        sweep(bench, 4, [int(m) for m in args.micro_batches_k4.split(",")], records)
    memory(bench, 8 if args.quick else 32, records)
    print()
    for r in records:
        r["runs"] = args.runs
        print(json.dumps(r))
    raw = os.path.join(args.out, "bench_pipeline_runs.jsonl")
    with open(raw, "w") as f:
        for line in bench.raw:
            f.write(json.dumps(line) + "\n")
    print(f"raw runs: {raw}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
