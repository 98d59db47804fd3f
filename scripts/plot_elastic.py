"""Plots bench_elastic's quality figures: validation loss against parameters of the
MatFormer granularities, the Mix'n'Match submodels and the dense models trained alone.

    /usr/bin/python3 scripts/plot_elastic.py bench-out/elastic/bench.txt -o loss.png
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", help="bench_elastic output (its JSON lines are read)")
    parser.add_argument("-o", "--output", required=True, help="PNG to write")
    args = parser.parse_args()
    points = {"granularity": [], "mix_n_match": [], "dense": []}
    try:
        with open(args.bench) as f:
            for line in f:
                if not line.startswith("{"):
                    continue
                record = json.loads(line)
                if record.get("bench") == "elastic" and record.get("case") in points:
                    points[record["case"]].append((record["parameters"] / 1e6, record["value"]))
    except OSError as e:
        sys.exit(f"error: {args.bench}: {e.strerror}")
    if not points["granularity"]:
        sys.exit(f"error: {args.bench}: no bench_elastic quality lines")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"dense": ("s", "dense, trained alone"), "granularity": ("o", "MatFormer granularity"),
              "mix_n_match": ("x", "Mix'n'Match submodel")}
    for case, (marker, label) in styles.items():
        if points[case]:
            xs, ys = zip(*sorted(points[case]))
            ax.plot(xs, ys, marker=marker, linestyle="-" if case != "mix_n_match" else "",
                    label=label)
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("validation loss (nats per byte)")
    ax.set_title("fortunes-lm-mat: loss against size")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
