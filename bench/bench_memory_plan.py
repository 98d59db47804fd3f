"""COSMA memory planning: non-compulsory off-chip traffic of each method, and solve times.

Graphs: fmnist-cnn and fortunes-lm recorded on the simulated device (a forward pass and a
training step), and random NAS-like graphs (the generator below: cells of ops whose inputs
are the previous op and, with skip connections, earlier ones, some with a weight). For each
graph, scratchpads of 1, 1.5 and 2 x the smallest that works (the largest op's working
set), every method: ilp, lru, belady, divide-and-conquer. Prints a markdown table, then
the two figures the issue targets: the ILP's mean reduction of the better baseline's
non-compulsory traffic, and divide-and-conquer's mean excess over the ILP. Progress goes
to stderr.

    /usr/bin/python3 bench/bench_memory_plan.py                # the figures
    /usr/bin/python3 bench/bench_memory_plan.py --quick        # a smoke test
    /usr/bin/python3 bench/bench_memory_plan.py --emit-graph 40 --seed 1 > g.json
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ["ilp", "lru", "belady", "divide-and-conquer"]


def nas_graph(ops, seed):
    """A random NAS-like graph: a chain of ops with skip connections to the last few
    outputs, sizes from a few channel widths, a weight on about half the ops."""
    rng = random.Random(seed)
    tensors, graph_ops = [], []

    def tensor(nbytes, kind):
        tensors.append({"id": len(tensors), "bytes": nbytes, "kind": kind})
        return len(tensors) - 1

    widths = [1024 * w for w in (4, 8, 16, 32)]
    made = [tensor(rng.choice(widths), "input")]
    for o in range(ops):
        inputs = [made[-1]]
        if len(made) > 2 and rng.random() < 0.4:  # a skip connection within the cell
            skip = made[-rng.randint(2, min(6, len(made)))]
            if skip not in inputs:
                inputs.append(skip)
        if rng.random() < 0.5:
            inputs.append(tensor(rng.choice(widths) // 2, "weight"))
        out = tensor(rng.choice(widths), "output" if o == ops - 1 else "activation")
        graph_ops.append({"id": o, "name": "op%d" % o, "inputs": inputs, "outputs": [out]})
        made.append(out)
    return {"tensors": tensors, "ops": graph_ops}


def run(accel, source, scratchpad, time_limit):
    cmd = [accel, "memory-plan", *source, "--scratchpad", str(scratchpad),
           "--methods", ",".join(METHODS), "--time-limit", str(time_limit), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def minimum(doc):
    size = {t["id"]: t["bytes"] for t in doc["graph"]["tensors"]}
    return max(sum(size[t] for t in set(op["inputs"] + op["outputs"]))
               for op in doc["graph"]["ops"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--accel", default=os.path.join(ROOT, "build/tools/strata-accel"))
    parser.add_argument("--time-limit", type=float, default=60)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--emit-graph", type=int, metavar="OPS")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.emit_graph:
        print(json.dumps(nas_graph(args.emit_graph, args.seed)))
        return
    tmp = tempfile.mkdtemp()
    sources = [("fmnist-cnn fwd b1", ["--model", "fmnist-cnn", "--batch", "1"]),
               ("fmnist-cnn train b1", ["--model", "fmnist-cnn", "--batch", "1", "--train"]),
               ("fortunes-lm fwd b1x8", ["--model", "fortunes-lm", "--batch", "1", "--seq", "8"]),
               ("fortunes-lm train b1x8",
                ["--model", "fortunes-lm", "--batch", "1", "--seq", "8", "--train"])]
    sizes = [12, 24] if args.quick else [20, 50, 100, 200]
    for ops in sizes:
        for seed in range(1 if args.quick else 2):
            path = os.path.join(tmp, "nas-%d-%d.json" % (ops, seed))
            with open(path, "w") as f:
                json.dump(nas_graph(ops, seed), f)
            sources.append(("nas %d ops seed %d" % (ops, seed), ["--graph", path]))
    if args.quick:
        sources = sources[:1] + sources[-2:]
    factors = [1.0, 2.0] if args.quick else [1.0, 1.5, 2.0]
    rows, reductions, gaps = [], [], []
    print("| graph | ops | scratchpad | " + " | ".join(
        "%s non-compulsory (s)" % m for m in METHODS) + " | ilp vs best baseline |")
    print("|---|---|---|" + "---|" * (len(METHODS) + 1))
    for name, source in sources:
        # The smallest scratchpad that works, read from a cheap run's graph.
        with_graph = subprocess.run(
            [args.accel, "memory-plan", *source, "--scratchpad", str(1 << 40), "--methods",
             "lru", "--json"], check=True, capture_output=True, text=True).stdout
        base = minimum(json.loads(with_graph))
        for factor in factors:
            scratchpad = int(base * factor)
            print("bench_memory_plan: %s, scratchpad %d" % (name, scratchpad), file=sys.stderr,
                  flush=True)
            try:
                doc = run(args.accel, source, scratchpad, args.time_limit)
            except subprocess.CalledProcessError as e:
                print("| %s | - | %d | %s |" % (name, scratchpad, e.stderr.strip()))
                continue
            plans = {p["method"]: p for p in doc["plans"]}
            nc = {m: p["offchip_read_bytes"] + p["offchip_write_bytes"] - p["compulsory_bytes"]
                  for m, p in plans.items()}
            best = min(nc["lru"], nc["belady"])
            reduction = 1 - nc["ilp"] / best if best > 0 else None
            if reduction is not None:
                reductions.append(reduction)
            if nc["ilp"] > 0:
                gaps.append(nc["divide-and-conquer"] / nc["ilp"] - 1)
            cells = ["%d (%.2f%s)" % (nc[m], plans[m]["solve_seconds"],
                                      ", opt" if plans[m]["optimal"] else "") for m in METHODS]
            print("| %s | %d | %d | %s | %s |" % (
                name, len(doc["graph"]["ops"]), scratchpad, " | ".join(cells),
                "-" if reduction is None else "%.0f%%" % (100 * reduction)), flush=True)
    if reductions:
        print("\nilp removes %.0f%% of the better baseline's non-compulsory traffic on average "
              "(%d cases with baseline traffic)" % (100 * statistics.mean(reductions),
                                                    len(reductions)))
    if gaps:
        print("divide-and-conquer is %.0f%% above the ilp on average (%d cases with ilp "
              "traffic)" % (100 * statistics.mean(gaps), len(gaps)))


if __name__ == "__main__":
    main()
