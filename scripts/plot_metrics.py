"""Plots the loss curve of one or more strata metrics files (JSON lines) into a PNG.

    /usr/bin/python3 scripts/plot_metrics.py out/train_fmnist.jsonl -o out/train_fmnist_loss.png
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    steps, losses, final = [], [], None
    with open(path) as f:
        for number, line in enumerate(f, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"error: {path}:{number}: not JSON ({e})")
            if record.get("event") == "final":
                final = record
            elif "loss" in record and "step" in record:
                steps.append(record["step"])
                losses.append(record["loss"])
    return steps, losses, final


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", nargs="+", help="JSON-lines files written with --metrics-out")
    parser.add_argument("-o", "--output", required=True, help="PNG to write")
    args = parser.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4))
    for path in args.metrics:
        if not os.path.exists(path):
            sys.exit(f"error: {path}: no such file")
        steps, losses, final = read(path)
        label = os.path.basename(path)
        if final and "test_accuracy" in final:
            label += f" (test accuracy {100 * final['test_accuracy']:.2f}%)"
        ax.plot(steps, losses, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean over ranks)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = args.output + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
