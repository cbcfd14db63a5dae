"""compare: several runs side by side, per step (user count), with the change in % vs the first run."""

from __future__ import annotations

import os

from ._analysis import CONCURRENCY_NOTE, Analysis, analyse
from ._concurrency import run_mode
from ._errors import ReportError
from ._markdown import table
from ._step_metrics import RATE_METRICS, STEP_METRICS, SIM_SETTINGS, format_settings, format_value, is_number

COMPARED = tuple(m for m in STEP_METRICS if m.compare)


def _change(new, old) -> str:
    if not (is_number(new) and is_number(old)) or old == 0:
        return ""
    change = (new - old) / old * 100
    return f" ({change:+.0f} %)".replace("-", "−")


def _labels(analyses: list[Analysis]) -> list[str]:
    plain = [a.label for a in analyses]
    labels = [f"{label} ({os.path.basename(os.path.normpath(a.folder.path))})" if plain.count(label) > 1 else label
              for label, a in zip(plain, analyses)]
    if len(set(labels)) < len(labels):  # the same folder twice
        labels = [f"{label} #{i + 1}" for i, label in enumerate(labels)]
    return labels


def _by_users(a: Analysis) -> dict:
    """(users, n-th occurrence) -> step, so a plan that revisits a user count lines up run by run; a rate
    step is keyed by its offered rate (req/s)."""
    seen: dict = {}
    out = {}
    for step in a.steps:
        users = step.rate if step.is_rate else int(step.users) if is_number(step.users) else None
        k = seen.get(users, 0)
        seen[users] = k + 1
        out[(users, k)] = step
    return out


def compare_markdown(analyses: list[Analysis]) -> str:
    labels = _labels(analyses)
    maps = [_by_users(a) for a in analyses]
    keys = []
    for mapping in maps:
        for key in mapping:
            if key not in keys:
                keys.append(key)
    keys.sort(key=lambda k: (k[0] is None, k[0] if k[0] is not None else 0, k[1]))
    rate_runs = [a.rate_run for a in analyses]
    header = ["Offered rate (req/s)" if all(rate_runs) else "Concurrent users or rate (req/s)" if any(rate_runs)
              else "Concurrent users"]
    compared = (tuple(m for m in RATE_METRICS if m.compare and m.key != "offered_rate") if any(rate_runs) else ()) + COMPARED
    for m in compared:
        header += [f"{m.label} {label}" for label in labels]
    rows = []
    for key in keys:
        users, k = key
        row = [("?" if users is None else f"{users:g}") + (f" (#{k + 1})" if k else "")]
        for m in compared:
            first = maps[0].get(key)
            first_value = first.metrics.get(m.key) if first else None
            for i, mapping in enumerate(maps):
                step = mapping.get(key)
                value = step.metrics.get(m.key) if step else None
                cell = format_value(m.unit, value) if step else "not run"
                if i and step is not None:
                    cell += _change(value, first_value)
                row.append(cell)
        rows.append(row)
    lines = [f"# Comparison: {' vs '.join(labels)}", "", table(header, rows), ""]
    lines.append("Changes in % are against the first run (" + labels[0] + "). "
                 + "; ".join(f"{m.label}: {m.how}" for m in compared) + ".")
    lines.append("")
    for label, a in zip(labels, analyses):
        facts = [f"`{a.folder.path}`", f"source {a.source}"]
        sim = a.run.get("simulator")
        if isinstance(sim, dict):
            facts.append("simulator " + format_settings(sim, SIM_SETTINGS))
        _, by_mode = run_mode(a.steps)
        for mode, steps in by_mode.items():
            users = ", ".join(s.users_label for s in steps)
            facts.append(f"{CONCURRENCY_NOTE[mode]} ({mode}) at {users} {'req/s' if a.rate_run else 'users'}")
        if a.run.get("interrupted"):
            facts.append("interrupted")
        if a.source != "requests.csv":
            facts.append("percentiles are Locust's rounded ones")
        lines.append(f"- **{label}**: " + ", ".join(facts))
        lines += [f"  - gap: {g}" for g in a.gaps]
    return "\n".join(lines) + "\n"


def compare_runs(run_dirs: list[str], *, out: str | None = None) -> str:
    """The comparison markdown of ``run_dirs`` (the first is the reference); written to ``out`` if given."""
    if len(run_dirs) < 1:
        raise ReportError("give at least one run folder to compare (two or more to see changes)")
    text = compare_markdown([analyse(path) for path in run_dirs])
    if out:
        try:
            with open(out, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as err:
            raise ReportError(f"cannot write {out} ({err.strerror or err}); choose another --out path") from err
    return text
