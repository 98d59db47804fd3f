"""Op-by-op table of two chrome traces of training steps: strata against PyTorch.

Reads a trace of build/bench/bench_lm_step --profile (LibTorch's profiler) and one of
bench/lm_peer.py --profile (torch.profiler), both of the same number of steps, and prints
each op's self time per step in each (ms; an op's self time is its time less that of the
ops it calls), the largest first, with the totals. Both profilers see the same
ATen ops (RecordFunction), so the rows line up.

    /usr/bin/python3 bench/profile_ops.py /tmp/strata_bf16.json /tmp/torch_bf16.json --steps 3
"""
import argparse
import collections
import json
import sys


def self_times(path):
    """Self time in ms of each op name over the whole trace."""
    with open(path) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    by_thread = collections.defaultdict(list)
    for e in events:
        # Ops only: torch.profiler also writes Python, annotation and trace-span events.
        if e.get("ph") != "X" or e.get("cat", "cpu_op") not in ("cpu_op", "Operator"):
            continue
        by_thread[e.get("tid")].append((float(e["ts"]), float(e["dur"]), e["name"]))
    totals = collections.Counter()
    for spans in by_thread.values():
        spans.sort(key=lambda s: (s[0], -s[1]))
        stack = []  # (end, name, index into child time)
        child = []
        for ts, dur, name in spans:
            while stack and stack[-1][0] <= ts:
                end, top, i = stack.pop()
                totals[top] -= child[i]
            if stack:
                child[stack[-1][2]] += dur
            totals[name] += dur
            child.append(0.0)
            stack.append((ts + dur, name, len(child) - 1))
        for end, top, i in stack:
            totals[top] -= child[i]
    return {name: us / 1000 for name, us in totals.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("strata")
    parser.add_argument("pytorch")
    parser.add_argument("--steps", type=int, default=3, help="steps each trace holds")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    a, b = self_times(args.strata), self_times(args.pytorch)
    names = sorted(set(a) | set(b), key=lambda n: -max(a.get(n, 0), b.get(n, 0)))
    print(f"| op | strata ms/step | PyTorch ms/step |\n|---|---|---|")
    for n in names[:args.top]:
        print(f"| `{n}` | {a.get(n, 0) / args.steps:.1f} | {b.get(n, 0) / args.steps:.1f} |")
    print(f"| all ops | {sum(a.values()) / args.steps:.1f} | {sum(b.values()) / args.steps:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
