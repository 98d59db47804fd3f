"""The cost of the training essentials: train_fmnist's --clip-grad-norm and --accumulate
on fmnist-mlp, 2 ranks x 1 thread (mpirun), 256 samples per optimizer step.

Per data-parallel mode (--zero 0, i.e. DDP, and --zero 1) measures the global samples/s of
  plain       --batch 256
  clip        --batch 256 --clip-grad-norm 1   (one more all-reduce and a pass over the gradients)
  accumulate  --batch 64 --accumulate 4        (the same 256 samples in 4 micro-steps)
interleaving them so that machine noise hits all alike, and reports medians and each
one's ratio to plain of the same mode. Prints a table, then one JSON object per figure
(docs/benchmarks.md).

    /usr/bin/python3 bench/bench_essentials.py --runs 5 --steps 80
"""
import json
import sys

from bench_data_parallel import fmnist_parser, interleaved_medians, strata_run

CASES = {"plain": ["--batch", "256"],
         "clip": ["--batch", "256", "--clip-grad-norm", "1"],
         "accumulate": ["--batch", "64", "--accumulate", "4"]}


def main():
    parser = fmnist_parser(__doc__)
    parser.add_argument("--zero", default="0,1", help="ZeRO stages to measure, comma-separated")
    args = parser.parse_args()

    records = []
    print(f"{'mode':<10}" + "".join(f"{c:>12}" for c in CASES) +
          f"   (samples/s, medians of {args.runs}; ratio to plain below)", flush=True)
    for zero in args.zero.split(","):
        m = interleaved_medians(
            CASES, args.runs,
            lambda case: strata_run(args.binary, "mlp", 2, args.steps, CASES[case] + ["--zero", zero]),
            f"--zero {zero}")
        print(f"zero {zero:<5}" + "".join(f"{m[c]:>12.0f}" for c in CASES), flush=True)
        print(f"{'':<10}" + "".join(f"{m[c] / m['plain']:>12.2f}" for c in CASES), flush=True)
        records += [{"bench": "essentials", "case": f"fmnist-mlp --zero {zero} {c} 2x1",
                     "value": m[c], "unit": "samples/s", "baseline": m["plain"],
                     "ratio": m[c] / m["plain"], "runs": args.runs} for c in CASES]
    for r in records:
        print(json.dumps(r))


if __name__ == "__main__":
    sys.exit(main())
