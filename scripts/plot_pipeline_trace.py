"""Renders a pipeline Chrome trace (bench_pipeline --trace-out) as a PNG timeline.

One row per (rank, row) of the trace: each stage's compute, then the rank's "comm" row
(a receive's box is the time the rank waited for it) and "step" row; colors by kind.

    /usr/bin/python3 scripts/plot_pipeline_trace.py out/trace.json out/trace.png
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"forward": "tab:blue", "backward": "tab:orange", "B": "tab:red", "W": "tab:green",
          "recv": "lightgray", "send": "dimgray", "step": "tab:purple"}


def kind(event):
    name = event["name"]
    if name in COLORS:
        return name
    if name.startswith("recv"):
        return "recv"
    if name.startswith("send"):
        return "send"
    return "step"


def plot_trace(trace_path, png_path, title=None):
    with open(trace_path) as f:
        events = json.load(f)["traceEvents"]
    processes = {e["pid"]: e["args"]["name"] for e in events
                 if e.get("ph") == "M" and e["name"] == "process_name"}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
               if e.get("ph") == "M" and e["name"] == "thread_name"}
    boxes = [e for e in events if e.get("ph") == "X"]
    if not boxes:
        sys.exit(f"error: {trace_path}: no events to plot")
    origin = min(e["ts"] for e in boxes)
    rows = sorted({(e["pid"], e["tid"]) for e in boxes})

    fig, ax = plt.subplots(figsize=(12, 0.45 * len(rows) + 1.2))
    for y, row in enumerate(rows):
        by_kind = {}
        for e in boxes:
            if (e["pid"], e["tid"]) == row:
                by_kind.setdefault(kind(e), []).append(
                    ((e["ts"] - origin) / 1000, max(e["dur"] / 1000, 0.01)))
        for k, spans in by_kind.items():
            ax.broken_barh(spans, (y - 0.4, 0.8), facecolors=COLORS[k], edgecolor="none")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{processes.get(p, p)} / {threads.get((p, t), t)}" for p, t in rows])
    ax.invert_yaxis()
    ax.set_xlabel("ms since the step began")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLORS.values()]
    ax.legend(handles, COLORS.keys(), loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_title(title or trace_path)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace")
    parser.add_argument("png")
    parser.add_argument("--title")
    args = parser.parse_args()
    plot_trace(args.trace, args.png, args.title)


if __name__ == "__main__":
    sys.exit(main())
