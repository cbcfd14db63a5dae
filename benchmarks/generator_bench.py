"""How many streaming users one load process holds before it flags itself (issue 17, item 4).

    python benchmarks/generator_bench.py                          # paced (100 tokens/s per stream) and instant
    python benchmarks/generator_bench.py --steps 100,400 --step-time 8s --profiles paced

One `locust --headless` process pinned to one core runs a step test against the simulator, pinned to the
other core (on a machine with two or more), with `--think-time 0`; the report's generator verdict
(docs/generator.md) says at which step the load process could no longer keep up. Prints, per profile,
each step's users actually running, the process's CPU and hub lateness (its worst quarter of seconds),
the tokens/s it received, and the largest step it held without flagging itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from ollama_locust.simulator import start_process

PROFILES = {
    "paced": ["--profile", "instant", "--decode-tps", "100", "--prefill-tps", "5000", "--num-parallel", "100000"],
    "instant": ["--profile", "instant", "--num-parallel", "100000"],
}


def run_profile(name: str, steps: str, step_time: str, num_predict: int, load_cpu, sim_cpu) -> list[dict]:
    sim_args = [*PROFILES[name], "--max-queue", "100000"]
    pin = ["taskset", "-c", str(load_cpu)] if load_cpu is not None else []
    with tempfile.TemporaryDirectory(prefix="generator-bench-") as folder, start_process(sim_args) as sim:
        if sim_cpu is not None:
            os.sched_setaffinity(sim.pid, {sim_cpu})
        run_dir = os.path.join(folder, "run")
        subprocess.run([*pin, sys.executable, "-m", "locust", "-f", _locustfile(), "--headless", "--host", sim.url,
                        "--model", "llama3.2", "--shape", "step", "--steps", steps, "--step-time", step_time,
                        "--think-time", "0", "--num-predict", str(num_predict), "--drain-timeout", "3",
                        "--run-dir", run_dir, "--skip-warmup"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600, check=False)
        subprocess.run([sys.executable, "-m", "ollama_locust", "report", run_dir, "--no-plots", "--quiet"],
                       check=True, timeout=600)
        with open(os.path.join(run_dir, "results.json"), encoding="utf-8") as handle:
            data = json.load(handle)
    rows = []
    for step in data["steps"]:
        health = step.get("generator") or {}
        rows.append({"users": step["users"], "held": step.get("users_held"), "cpu": health.get("cpu"),
                     "lag_p99_ms": health.get("lag_p99_ms"), "flagged": bool(health.get("reasons")),
                     "tokens_per_s_total": step.get("tokens_per_s_total")})
    return rows


def _locustfile() -> str:
    import importlib.util

    return importlib.util.find_spec("ollama_locust.scenarios.locustfile").origin


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", default="paced,instant")
    parser.add_argument("--steps", default="50,100,200,400,800,1600")
    parser.add_argument("--step-time", default="10s")
    parser.add_argument("--num-predict", type=int, default=200)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    load_cpu, sim_cpu = (cpus[0], cpus[-1]) if len(cpus) >= 2 else (None, None)
    for name in args.profiles.split(","):
        rows = run_profile(name, args.steps, args.step_time, args.num_predict, load_cpu, sim_cpu)
        print(f"\n{name}: one load process on CPU {load_cpu}, the simulator on CPU {sim_cpu}")
        print("| users | held | cpu | hub p99 ms | tokens/s | flagged |")
        print("|---|---|---|---|---|---|")
        for row in rows:
            fmt = lambda v, spec: "–" if v is None else format(v, spec)  # noqa: E731
            print(f"| {row['users']} | {fmt(row['held'], '.0f')} | {fmt(row['cpu'], '.2f')} | "
                  f"{fmt(row['lag_p99_ms'], '.1f')} | {fmt(row['tokens_per_s_total'], '.0f')} | {row['flagged']} |")
        held = [row for row in rows if not row["flagged"]]
        best = held[-1] if held and held[-1] is rows[len(held) - 1] else None
        print(f"largest step held without flagging itself: {best['users'] if best else 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
