"""The figures (PNG, matplotlib's headless Agg backend), drawn from the same METRICS as the table."""

from __future__ import annotations

import os

from ._analysis import Analysis
from ._metrics import METRICS, is_number
from ._steps import TIME_PARTS

# file name, title, metric plot group
FIGURES = (
    ("latency.png", "Latency against users", "latency"),
    ("throughput.png", "Throughput against users", "throughput"),
)
TIME_SPLIT_FILE = ("time_split.png", "Where the time goes (median per step)")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def draw(a: Analysis, out_dir: str) -> list[tuple[str, str]]:
    """Write the PNGs; return [(file name, title)] of those written (a figure with no data is skipped)."""
    steps = [s for s in a.steps if is_number(s.users)]
    if not steps:
        return []
    plt = _pyplot()
    written = []
    for name, title, group in FIGURES:
        metrics = [m for m in METRICS if m.plot == group]
        series = [(m, [(s.users, s.metrics.get(m.key)) for s in steps if is_number(s.metrics.get(m.key))])
                  for m in metrics]
        series = [(m, pts) for m, pts in series if pts]
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        axes = {series[0][0].unit: ax}
        for m, pts in series:
            axis = axes.get(m.unit)
            if axis is None:
                axis = axes[m.unit] = ax.twinx()
            xs, ys = zip(*pts)
            scale = 1000.0 if m.unit == "ms" else 1.0
            style = "--" if axis is not ax else "-"
            axis.plot(xs, [y / scale for y in ys], style, marker="o", label=f"{m.label} ({'s' if m.unit == 'ms' else m.unit})")
            axis.set_ylabel(", ".join(f"{'s' if u == 'ms' else u}" for u in [m.unit]))
            axis.set_ylim(bottom=0)
        ax.set_xlabel("concurrent users")
        ax.set_title(title)
        handles, labels = [], []
        for axis in axes.values():
            h, l = axis.get_legend_handles_labels()
            handles += h
            labels += l
        ax.legend(handles, labels, loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, name))
        plt.close(fig)
        written.append((name, title))
    split_steps = [s for s in steps if s.time_split]
    if split_steps:
        name, title = TIME_SPLIT_FILE
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        labels = [s.users_label for s in split_steps]
        bottom = [0.0] * len(split_steps)
        for key, label, _ in TIME_PARTS:
            values = [s.time_split[key] / 1000.0 for s in split_steps]
            ax.bar(labels, values, bottom=bottom, label=label)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_xlabel("concurrent users")
        ax.set_ylabel("s (median of each part)")
        ax.set_title(title)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, name))
        plt.close(fig)
        written.append((name, title))
    return written
