"""The figures (PNG, matplotlib's headless Agg backend), drawn from the same STEP_METRICS as the table."""

from __future__ import annotations

import os

from ._analysis import Analysis
from ._step_metrics import STEP_METRICS, is_number
from ._steps import TIME_PARTS

# file name, title, metric plot group, one panel per metric (units or scales differ)
FIGURES = (
    ("latency.png", "Latency against users", "latency", False),
    ("throughput.png", "Throughput against users", "throughput", True),
)
TIME_SPLIT_FILE = ("time_split.png", "Where the time goes (median per step)")


def _figure(**kwargs):
    """A figure on matplotlib's Agg canvas, without pyplot (no global figure state; ~1 s less to import)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _unit(metric) -> str:
    return "s" if metric.unit == "ms" else metric.unit


def draw(a: Analysis, out_dir: str) -> list[tuple[str, str]]:
    """Write the PNGs; return [(file name, title)] of those written (a figure with no data is skipped)."""
    steps = [s for s in a.steps if is_number(s.load)]
    x_label = "offered rate (requests/s)" if a.rate_run else "concurrent users"
    if not steps:
        return []
    written = []
    for name, title, group, panels in FIGURES:
        series = []
        for m in (m for m in STEP_METRICS if m.plot == group):
            pts = [(s.load, s.metrics.get(m.key)) for s in steps if is_number(s.metrics.get(m.key))]
            if pts:
                series.append((m, pts))
        if not series:
            continue
        n = len(series) if panels else 1
        fig = _figure(figsize=(4 * n if panels else 7, 4), dpi=100)
        axes = fig.subplots(1, n, squeeze=False)
        tops = [0.0] * n  # the highest point of each panel: headroom above it, so a flat line is not the frame
        for i, (m, pts) in enumerate(series):
            ax = axes[0][i if panels else 0]
            xs, ys = zip(*pts)
            scale = 1000.0 if m.unit == "ms" else 1.0
            ax.plot(xs, [y / scale for y in ys], marker="o", label=m.label)
            tops[i if panels else 0] = max(tops[i if panels else 0], max(ys) / scale)
            ax.set_ylabel(_unit(m))
            if panels:
                ax.set_title(m.label, fontsize=10)
        for ax, top in zip(axes[0], tops):
            ax.set_xlabel(x_label)
            ax.set_ylim(bottom=0, top=top * 1.12 if top > 0 else 1.0)
            ax.grid(alpha=0.3)
            if not panels:
                ax.legend(fontsize=8, loc="upper left")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, name))
        written.append((name, title))
    split_steps = [s for s in steps if s.time_split]
    if split_steps:
        name, title = TIME_SPLIT_FILE
        fig = _figure(figsize=(7, 4), dpi=100)
        ax = fig.subplots()
        labels = [s.users_label for s in split_steps]
        bottom = [0.0] * len(split_steps)
        for key, label, _ in TIME_PARTS:
            values = [s.time_split[key] / 1000.0 for s in split_steps]
            ax.bar(labels, values, bottom=bottom, label=label)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_xlabel(x_label)
        ax.set_ylabel("s (median of each part)")
        ax.set_title(title)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, name))
        written.append((name, title))
    return written
