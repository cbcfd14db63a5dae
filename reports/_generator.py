"""Was the load generator itself the bottleneck of a step? (issue 17) From ``generator.csv``: each load
process's one-second samples of its CPU use and its gevent hub's lateness (written by the master).

A step is judged by the samples whose second lies inside the step's window, per load process: its CPU
use and its hub's p99 lateness in a quarter of those seconds or more (the 75th percentile over the
seconds, so one stray spike does not count). When any process was past ``ollama_locust.stats``'
generator limits (a core's worth of CPU, a hub late at p99), the step's numbers are the generator's
lateness as much as the server's: the step is marked and left out of the verdicts. A folder without ``generator.csv`` (an older run, Locust's CSVs) is not judged.
"""

from __future__ import annotations

import math
import os

from ollama_locust import contract, stats

SUSTAINED_QUANTILE = 0.75  # a process is judged by its worst quarter of the step's seconds
SATURATED_NOTE = "the load generator was saturated: the numbers of this step are not the server's"


def read_generator(path: str, gaps: list[str]):
    """generator.csv as a DataFrame, or None when the run has none."""
    file = os.path.join(path, contract.GENERATOR_FILE)
    if not os.path.exists(file):
        return None
    import pandas as pd

    try:
        frame = pd.read_csv(file, on_bad_lines="skip")
    except (OSError, ValueError) as error:
        gaps.append(f"{contract.GENERATOR_FILE} could not be read ({error}): the load generator's health is not judged")
        return None
    for column in ("time", "interval_s", "cpu", "lag_p99_ms"):
        if column not in frame.columns:
            gaps.append(f"{contract.GENERATOR_FILE} lacks its {column} column: the load generator's health is not judged")
            return None
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame.dropna(subset=["time"])


def step_health(frame, start: float, end: float) -> dict | None:
    """The worst second of any load process inside [start, end]: cpu, lag p99, the processes, the reasons."""
    if frame is None or not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        return None
    begins = frame["time"] - frame["interval_s"].fillna(0.0)
    inside = frame[(begins >= start) & (frame["time"] <= end)]
    if len(inside) == 0:
        return None
    per_process = inside.groupby("worker")[["cpu", "lag_p99_ms"]].quantile(SUSTAINED_QUANTILE)
    cpu = float(per_process["cpu"].max()) if per_process["cpu"].notna().any() else None
    lag = float(per_process["lag_p99_ms"].max()) if per_process["lag_p99_ms"].notna().any() else None
    return {"cpu": cpu, "lag_p99_ms": lag, "processes": int(len(per_process)),
            "samples": int(len(inside)), "reasons": stats.generator_breaches(cpu, lag)}
