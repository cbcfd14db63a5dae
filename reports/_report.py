"""write_report: a run folder -> results.md, results.json and the PNGs, written into the folder."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ollama_locust import contract

from ._analysis import Analysis, analyse
from ._conclusion import conclude
from ._errors import ReportError
from ._markdown import render, results_table
from ._step_metrics import RATE_METRICS, STEP_METRICS, clean
from ._steps import CLIENT_SPLIT, TIME_PARTS

@dataclass
class Report:
    """What ``write_report`` wrote: the markdown, the table alone, the results.json data, the files."""

    run_dir: str
    markdown: str
    table_markdown: str
    data: dict
    files: list[str] = field(default_factory=list)


def deep_clean(value):
    """``clean`` through dicts and lists."""
    if isinstance(value, dict):
        return {k: deep_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [deep_clean(v) for v in value]
    return clean(value)


def _step_json(step) -> dict:
    return {
        "stage": step.stage, "users": clean(step.users), "rate": clean(step.rate), "kind": step.kind,
        "start_time": clean(step.start), "end_time": clean(step.end), "settle_s": clean(step.settle_s),
        "duration_s": clean(step.window_s),
        **{m.key: clean(step.metrics.get(m.key)) for m in STEP_METRICS},
        **({m.key: clean(step.metrics.get(m.key)) for m in RATE_METRICS} if step.is_rate else {}),
        "queue_trend": deep_clean(step.queue_trend),
        "outcomes": step.outcomes, "http_statuses": {o: {str(k): v for k, v in c.items()} for o, c in step.statuses.items()},
        "settled_requests": step.settled,
        "users_max": clean(step.users_max), "reached_s": clean(step.reached_s),
        "not_held": step.not_held or None, "ttft_n": step.ttft_n,
        "invalid_cut": step.invalid_cut, "all_replies": deep_clean(step.all_replies),
        "top_errors": [{"error": t, "count": n} for t, n in step.top_errors],
        "time_split_ms": {k: clean(v) for k, v in step.time_split.items()} if step.time_split else None,
        "client_split": deep_clean(step.client_split),
        "concurrency_mode": step.concurrency["mode"] if step.concurrency else None,
        "concurrency": deep_clean(step.concurrency),
        "generator": deep_clean(step.generator),  # the load processes' worst quarter of seconds (docs/generator.md)
        "notes": step.notes,
    }


def to_json(a: Analysis, conclusion: dict, plots: list[tuple[str, str]]) -> dict:
    return {
        "label": a.label,
        contract.RUN_PREDICTED: bool(a.run.get(contract.RUN_PREDICTED)),  # true: predicted in virtual time, not measured
        "source": a.source,
        "percentiles": a.percentile_text,
        "metrics": [{"key": m.key, "label": m.label, "unit": m.unit, "how": m.how}
                    for m in STEP_METRICS + (RATE_METRICS if a.rate_run else ())],
        "time_parts": [{"key": k, "label": label, "how": how} for k, label, how in TIME_PARTS],
        "client_split_parts": [{"key": k, "label": label, "how": how} for k, label, how in CLIENT_SPLIT],
        "slo": {"p95_ms": a.slo.p95_ms, "ttft_p95_ms": a.slo.ttft_p95_ms, "min_success": a.slo.min_success,
                "default_objective": a.slo.default, "source": a.slo.source},
        "steps": [_step_json(s) for s in a.steps],
        "drain": a.drain,
        "user_classes": [{"stage": r["stage"], "users": clean(r["users"]), "rate": clean(r.get("rate")), "user_class": r["user_class"],
                          **{k: clean(v) for k, v in r["metrics"].items()}} for r in a.class_rows],
        "server_durations": a.server_durations or "present",
        "conclusion": deep_clean(conclusion),
        "plots": [name for name, _ in plots],
        "gaps": a.gaps,
        "run": a.run,
    }


def _remove_stale(run_dir: str, keep: list[str]) -> None:
    from ._plots import FIGURES, TIME_SPLIT_FILE

    for name in [f[0] for f in FIGURES] + [TIME_SPLIT_FILE[0]]:
        path = os.path.join(run_dir, name)
        if name not in keep and os.path.exists(path):
            os.remove(path)


def write_report(run_dir: str, *, slo_p95_ms: float | None = None, min_success: float | None = None,
                 slo_ttft_p95_ms: float | None = None,
                 plots: bool = True) -> Report:
    """Analyse ``run_dir`` and write results.md, results.json and (unless ``plots=False``) the PNGs."""
    a = analyse(run_dir, slo_p95_ms=slo_p95_ms, min_success=min_success, slo_ttft_p95_ms=slo_ttft_p95_ms)
    conclusion = conclude(a)
    try:
        drawn = []
        if plots:
            from ._plots import draw

            drawn = draw(a, run_dir)
        _remove_stale(run_dir, [name for name, _ in drawn])
        markdown = render(a, conclusion, drawn)
        data = to_json(a, conclusion, drawn)
        files = []
        path = os.path.join(run_dir, contract.RESULTS_MD)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(markdown)
        files.append(path)
        path = os.path.join(run_dir, contract.RESULTS_JSON)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False, default=str, allow_nan=False)
            fh.write("\n")
        files.append(path)
    except OSError as err:
        raise ReportError(f"cannot write the report into {run_dir} ({err.strerror or err}); "
                          "copy the run folder somewhere writable and report on the copy") from err
    files += [os.path.join(run_dir, name) for name, _ in drawn]
    return Report(run_dir=run_dir, markdown=markdown, table_markdown=results_table(a), data=data, files=files)
