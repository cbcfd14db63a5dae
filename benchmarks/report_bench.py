"""Benchmark of the post-processor: N request records -> the full report (table, conclusion, plots).

    python benchmarks/report_bench.py                 # 1,000,000 records, 8 steps
    python benchmarks/report_bench.py --records 100000 --keep

Generates a run folder in a temp directory (requests.csv with every schema column, stages.csv,
run.json) shaped like a NUM_PARALLEL=1 server under steps of 1..50 users: latency grows with queueing,
a few rejections/timeouts/invalid answers at the top, settle-window records, four user classes.
Only ``reports.write_report`` is timed. Goal: <= 10 s for 1,000,000 records on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

STEPS = (1, 2, 4, 8, 12, 16, 24, 32)
CLASSES = ("StudentUser", "RecipeUser", "BurstyUser", "GatewayUser")


def generate(run_dir: str, records: int, seed: int = 7) -> None:
    import numpy as np
    import pandas as pd

    from ollama_locust import contract

    rng = np.random.default_rng(seed)
    n_steps = len(STEPS)
    step_time = 600.0
    stage = np.sort(rng.integers(0, n_steps, records))
    users = np.array(STEPS)[stage]
    t0 = 1_790_000_000.0
    start = t0 + stage * step_time + rng.uniform(0, step_time, records)
    settle = (start - (t0 + stage * step_time)) < 10.0
    load = rng.lognormal(np.log(3.0), 0.4, records)
    prompt = rng.lognormal(np.log(120.0), 0.3, records)
    tokens = rng.integers(40, 400, records)
    per_token = 20.0 * (1 + 0.15 * (np.minimum(users, 4) - 1)) * rng.lognormal(0, 0.1, records)
    evals = tokens * per_token
    queue = rng.exponential(1.0, records) * (users - 1) * 900.0
    total = load + prompt + evals + queue
    outside = rng.uniform(1, 8, records)
    e2e = total + outside
    ttft = queue + load + prompt + per_token + outside
    tps = (tokens - 1) / ((e2e - ttft) / 1000.0)
    p_fail = np.where(users >= 16, 0.03, 0.0005)
    roll = rng.uniform(0, 1, records)
    outcome = np.full(records, "ok", dtype=object)
    outcome[roll < p_fail] = "rejected"
    outcome[roll < p_fail * 0.5] = "timeout"
    outcome[roll < p_fail * 0.2] = "invalid"
    outcome[roll < p_fail * 0.05] = "stream_error"
    outcome[(stage == n_steps - 1) & (start > t0 + n_steps * step_time - 2.0)] = "cut_short"
    failed = outcome != "ok"
    status = np.where(outcome == "rejected", 503, np.where(outcome == "stream_error", 200, 200))
    error = np.full(records, "", dtype=object)
    error[outcome == "rejected"] = "server busy, please try again.  maximum pending requests exceeded"
    error[outcome == "timeout"] = "no first token within 120 s"
    error[outcome == "invalid"] = "invalid recipe JSON: Expecting ',' delimiter"
    error[outcome == "stream_error"] = "connection closed before done"
    worker = np.array(["w1", "w2", "w3", "w4"])[rng.integers(0, 4, records)]

    def blank(values, mask, fmt="%.3f"):
        out = np.char.mod(fmt, values).astype(object)
        out[mask] = ""
        return out

    frame = pd.DataFrame({
        "request_id": np.char.add(worker.astype(str), np.char.mod("-%d", np.arange(records))),
        "worker": worker,
        "user_class": np.array(CLASSES)[rng.integers(0, len(CLASSES), records)],
        "api": "ollama-chat",
        "model": "llama3.2:3b",
        "stage": stage,
        "stage_users": users,
        "settle": np.where(settle, "True", "False"),
        "start_time": np.char.mod("%.6f", start),
        "outcome": outcome,
        "http_status": status,
        "ttft_ms": blank(ttft, outcome == "rejected"),
        "e2e_ms": np.char.mod("%.3f", np.where(outcome == "rejected", outside, e2e)),
        "itl_ms": blank(per_token, failed),
        "output_tokens": np.where(failed, 0, tokens),
        "tokens_estimated": "False",
        "prompt_tokens": 26,
        "tokens_per_s": blank(tps, failed),
        "load_ms": blank(load, failed),
        "prompt_eval_ms": blank(prompt, failed),
        "eval_ms": blank(evals, failed),
        "server_total_ms": blank(total, failed),
        "queue_wait_ms": blank(queue, failed),
        "done_reason": np.where(failed, "", "stop"),
        "error": error,
        "latency": np.char.mod("%.4f", e2e / 1000.0),
        "status": status,
        "tokens": tokens,
        "total_duration": blank(total / 1000.0, failed, "%.4f"),
    }, columns=list(contract.COLUMN_NAMES))
    frame.to_csv(os.path.join(run_dir, contract.REQUESTS_FILE), index=False)
    pd.DataFrame({
        "stage": range(n_steps), "users": STEPS,
        "start_time": [t0 + i * step_time for i in range(n_steps)],
        "end_time": [t0 + (i + 1) * step_time for i in range(n_steps)],
        "settle_s": 10.0, "kind": "step",
    }).to_csv(os.path.join(run_dir, contract.STAGES_FILE), index=False)
    with open(os.path.join(run_dir, contract.RUN_FILE), "w") as fh:
        json.dump({"label": "bench", "host": "http://127.0.0.1:11434", "model": "llama3.2:3b", "api": "ollama-chat",
                   "steps": list(STEPS), "slo": {"p95_ms": 30000.0, "min_success": 0.95},
                   "warmup": {"outcome": "ok", "e2e_ms": 7000.0, "load_ms": 6300.0, "error": ""},
                   "simulator": None, "interrupted": False, "missing_workers": []}, fh)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the generated run folder and print its path")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args()
    run_dir = tempfile.mkdtemp(prefix="report-bench-")
    try:
        t = time.perf_counter()
        generate(run_dir, args.records)
        size = os.path.getsize(os.path.join(run_dir, "requests.csv")) / 1e6
        print(f"generated {args.records:,} records ({size:.0f} MB) in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        from ollama_locust.reports import write_report

        report = write_report(run_dir, plots=not args.no_plots)
        elapsed = time.perf_counter() - t
        print(report.table_markdown)
        print(f"\nfull report (read, table, conclusion, plots, write) of {args.records:,} records: {elapsed:.2f} s")
        if args.keep:
            print(f"run folder kept: {run_dir}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
