"""The table from Locust's own CSVs alone (``locust --headless --csv PREFIX [--csv-full-history]``).

``*_stats_history.csv`` holds one "Aggregated" row per second with the running user count, running
totals (request and failure counts, average, max) and Locust's percentiles — rounded to about two
significant digits (``locust.stats.bucket_response_time``), over a ~10 s window with
``--csv-full-history``, since the start without it. A step is a run of consecutive rows with the
same "User Count"; its requests, failures and average come from the differences of the running
totals; its p50/p95 are Locust's at the step's last row. Locust counts a request when it *completes*, so
Requests, Completed and Req/s here are completions inside the step's rows (the windowed rule's Req/s, to
the history's one-second resolution); "started in the step" cannot be told apart, and Tokens/s is not
in Locust's CSVs.
"""

from __future__ import annotations

import math
import os

from ._load import RunFolder, read_csv_complete
from ._step_metrics import STEP_METRICS, is_number
from ._steps import Step

WINDOWED = ("Locust's rounded percentiles (about two significant digits) over its ~10 s window at the end "
            "of each step (--csv-full-history), not exact ones: no requests.csv in this folder")
CUMULATIVE = ("Locust's rounded percentiles (about two significant digits), cumulative since the start of "
              "the test (no --csv-full-history), not exact per-step ones: no requests.csv in this folder")
WHOLE_RUN = ("Locust's rounded percentiles over the whole test (no *_stats_history.csv, so no steps), "
             "not exact ones: no requests.csv in this folder")


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _empty_metrics() -> dict:
    return {m.key: math.nan for m in STEP_METRICS}


def locust_steps(folder: RunFolder) -> tuple[list[Step], str]:
    gaps = folder.gaps
    gaps.append("no requests.csv: TTFT, tokens/s, server durations and outcome classes are not available; "
                "latencies and success rate include every Locust entry (failures too)")
    if folder.locust_history:
        history = read_csv_complete(folder.locust_history, os.path.basename(folder.locust_history), gaps,
                                    dtype=str, keep_default_na=False)
        if history is not None and {"User Count", "Name", "Total Request Count"} <= set(history.columns):
            steps, full = _from_history(history)
            if any("ttft" in n.lower() for n in history["Name"].unique()):
                gaps.append("Locust's Aggregated rows include the TTFT entries, so they count twice per request")
            if steps:
                return steps, WINDOWED if full else CUMULATIVE
        gaps.append(f"{os.path.basename(folder.locust_history)} has no usable Aggregated rows")
    if folder.locust_stats:
        stats = read_csv_complete(folder.locust_stats, os.path.basename(folder.locust_stats), gaps,
                                  dtype=str, keep_default_na=False)
        if stats is not None and "Name" in stats.columns:
            agg = stats[stats["Name"] == "Aggregated"]
            if len(agg):
                return [_from_stats_row(agg.iloc[-1].to_dict())], WHOLE_RUN
    gaps.append("Locust's CSVs hold no requests")
    return [], WHOLE_RUN


def _from_history(history) -> tuple[list[Step], bool]:
    full = bool((history["Name"] != "Aggregated").any())
    agg = history[history["Name"] == "Aggregated"].to_dict("records")
    steps: list[Step] = []
    prev = {"count": 0.0, "fail": 0.0, "avg": 0.0, "max": 0.0, "time": math.nan}
    i = 0
    while i < len(agg):
        users = _num(agg[i]["User Count"])
        j = i
        while j + 1 < len(agg) and _num(agg[j + 1]["User Count"]) == users:
            j += 1
        first, last = agg[i], agg[j]
        count, fail = _num(last["Total Request Count"]), _num(last["Total Failure Count"])
        avg, top = _num(last["Total Average Response Time"]), _num(last["Total Max Response Time"])
        t_last = _num(last["Timestamp"])
        t_start = prev["time"] if is_number(prev["time"]) else _num(first["Timestamp"])
        n, nf = count - prev["count"], fail - prev["fail"]
        if n > 0 or users > 0:
            step = Step(stage=len(steps), users=users, kind="locust", start=t_start, end=t_last)
            step.window_s = t_last - t_start if is_number(t_last) and is_number(t_start) else math.nan
            m = _empty_metrics()
            m["requests"] = max(n, 0.0)
            m["n"], m["completed"] = max(n, 0.0), max(n - nf, 0.0)  # Locust counts a request when it completes
            m["success_rate"] = (n - nf) / n if n > 0 else math.nan
            if n > 0 and is_number(avg):
                m["avg_ms"] = (avg * count - prev["avg"] * prev["count"]) / n
                m["p50_ms"], m["p95_ms"] = _num(last.get("50%")), _num(last.get("95%"))
                m["max_ms"] = top if is_number(top) and top > prev["max"] else math.nan
                if not is_number(m["max_ms"]):
                    step.notes.append("max: Locust keeps only the running maximum, not raised in this step")
            if step.window_s and step.window_s > 0:
                m["req_per_s"] = (n - nf) / step.window_s
            step.metrics = m
            step.outcomes = {"ok": int(n - nf), "failed": int(nf)} if n > 0 else {}
            if nf > 0:
                step.notes.append(f"{int(nf)} failures (Locust)")
            steps.append(step)
        prev = {"count": count, "fail": fail, "avg": avg if is_number(avg) else 0.0,
                "max": max(prev["max"], top) if is_number(top) else prev["max"], "time": t_last}
        i = j + 1
    return steps, full


def _from_stats_row(row: dict) -> Step:
    step = Step(stage=0, users=math.nan, kind="locust")
    m = _empty_metrics()
    n, nf = _num(row.get("Request Count")), _num(row.get("Failure Count"))
    m["requests"] = n
    m["n"], m["completed"] = n, n - nf
    m["success_rate"] = (n - nf) / n if n > 0 else math.nan
    m["avg_ms"] = _num(row.get("Average Response Time"))
    m["p50_ms"], m["p95_ms"], m["max_ms"] = _num(row.get("50%")), _num(row.get("95%")), _num(row.get("Max Response Time"))
    rps, fps = _num(row.get("Requests/s")), _num(row.get("Failures/s"))
    m["req_per_s"] = rps - (fps if is_number(fps) else 0.0)
    step.metrics = m
    step.outcomes = {"ok": int(n - nf), "failed": int(nf)} if n > 0 else {}
    if nf > 0:
        step.notes.append(f"{int(nf)} failures (Locust)")
    step.notes.append("whole run: user counts unknown without the history CSV")
    return step
