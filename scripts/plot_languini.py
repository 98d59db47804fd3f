"""Fits Languini's scaling trends to train_lm --compute-budget runs: per architecture, the
power law loss = a * C^-b (+ c, with four or more budgets) of validation loss against
compute C in seconds of this machine; prints the fits and where they cross, plots both.

    /usr/bin/python3 scripts/plot_languini.py RUN.jsonl... -o docs/images/languini.png

Each RUN.jsonl is a train_lm --metrics-out file; its final record gives the architecture
(config.model), compute_s and val_loss.
"""
import argparse
import json
import math
import sys

import numpy as np


def read_points(paths):
    points = {}  # model name -> [(compute seconds, validation loss, tokens seen)]
    for path in paths:
        try:
            with open(path) as f:
                finals = [json.loads(l) for l in f if '"final"' in l]
        except OSError as e:
            sys.exit(f"plot_languini: {path}: {e.strerror}")
        if not finals:
            sys.exit(f"plot_languini: {path}: no final record (did the run finish?)")
        r = finals[-1]
        if "compute_s" not in r:
            sys.exit(f"plot_languini: {path}: no compute_s (not a --compute-budget run)")
        points.setdefault(r["config"]["model"], []).append(
            (r["compute_s"], r["val_loss"], r["tokens_seen"]))
    return {m: sorted(p) for m, p in points.items()}


def fit_power_law(compute, loss):
    """(a, b, c) of loss = a * C^-b + c, least squares in log space; c = 0 with fewer than
    four points (three parameters would fit three points exactly), else the c in
    [0, min loss) that fits best on a grid."""
    x = np.log(np.asarray(compute))
    y = np.asarray(loss)
    offsets = [0.0] if len(y) < 4 else np.linspace(0, 0.98 * y.min(), 99)
    best = None
    for c in offsets:
        slope, intercept = np.polyfit(x, np.log(y - c), 1)
        residual = np.sum((np.exp(intercept + slope * x) + c - y) ** 2)
        if best is None or residual < best[0]:
            best = (residual, math.exp(intercept), -slope, c)
    return best[1:]


def law(fit, c):
    a, b, offset = fit
    return a * np.power(c, -b) + offset


def crossing(f, g, lo=1e-1, hi=1e9):
    """The compute where the two fits are equal, on a log grid from lo to hi seconds; None
    when one stays below the other there."""
    grid = np.logspace(math.log10(lo), math.log10(hi), 4000)
    d = law(f, grid) - law(g, grid)
    sign = np.sign(d)
    changes = np.nonzero(sign[1:] != sign[:-1])[0]
    if len(changes) == 0:
        return None
    i = changes[0]
    # Linear in log C between the two grid points around the change.
    t = d[i] / (d[i] - d[i + 1])
    return float(math.exp(math.log(grid[i]) + t * (math.log(grid[i + 1]) - math.log(grid[i]))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="train_lm --metrics-out files")
    parser.add_argument("-o", "--output", help="PNG to write")
    args = parser.parse_args()
    points = read_points(args.runs)
    fits = {}
    for model, p in points.items():
        compute, loss, tokens = zip(*p)
        if len(p) < 2:
            print(f"{model}: one budget only, no fit")
            continue
        fits[model] = fit_power_law(compute, loss)
        a, b, c = fits[model]
        print(f"{model}: loss = {a:.4g} * C^-{b:.4g} + {c:.4g}  ({len(p)} budgets)")
        for cs, l, t in p:
            print(f"  {cs:9.1f} s  {t:>12,} tokens  val loss {l:.4f}  fit {law(fits[model], cs):.4f}")
    models = sorted(fits)
    x = None
    if len(models) == 2:
        x = crossing(fits[models[0]], fits[models[1]])
        if x is None:
            lower = models[0] if law(fits[models[0]], 1e3) < law(fits[models[1]], 1e3) else models[1]
            print(f"the fits do not cross between 0.1 s and 1e9 s: {lower} stays lower")
        else:
            print(f"the fits cross at {x:.4g} s of compute ({x / 3600:.3g} hours), loss "
                  f"{law(fits[models[0]], x):.4f}")
    if args.output:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        all_compute = [cs for p in points.values() for cs, _, _ in p]
        right = max(max(all_compute) * 10, x * 2 if x else 0)
        grid = np.logspace(math.log10(min(all_compute) / 2), math.log10(right), 200)
        for model, p in sorted(points.items()):
            compute, loss, _ = zip(*p)
            dots = ax.plot(compute, loss, "o", label=f"{model} runs")[0]
            if model in fits:
                a, b, c = fits[model]
                ax.plot(grid, law(fits[model], grid), "-", color=dots.get_color(),
                        label=f"{model}: {a:.3g} C^-{b:.3g} + {c:.3g}")
        if x is not None and x <= right:
            ax.axvline(x, color="gray", linestyle=":", label=f"fits cross at {x:.3g} s")
        ax.set_xscale("log")
        ax.set_xlabel("compute (seconds of training steps on this machine)")
        ax.set_ylabel("validation loss (nats per byte)")
        ax.set_title("Languini: loss at equal compute (provisional, loaded machine)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.output, dpi=120)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
