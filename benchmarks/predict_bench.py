"""Benchmark of `ollama-locust predict`: wall time of a 4-step x 60 s plan at 10, 50 and 200 users.

    python benchmarks/predict_bench.py                  # the three plans, the gpu and cpu profiles
    python benchmarks/predict_bench.py --users 50 --think-time 0

Each plan is 4 steps (a quarter, a half, three quarters and all of the top user count), 60 s each,
StudentUser, predicted against a fitted server (a probe.json built from a simulator profile). Timed: the
virtual-time run alone (``simulate``), the whole command without the band (``--band 0``: run + report +
plots) and with the default band (10 more runs and reports). Goal: <= 10 s up to 50 users on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def probe_for(profile_name: str, num_parallel: int) -> dict:
    from ollama_locust.simulator.profiles import PROBE_FORMAT, PROFILES

    p = PROFILES[profile_name]
    return {"format": PROBE_FORMAT, "target": {"host": "bench", "model": "llama3.2:latest", "api": "ollama-chat"},
            "server": {"decode_tps": p.decode_tps, "prefill_tps": p.prefill_tps, "beta": p.beta, "load_time": p.load_time,
                       "num_parallel": num_parallel, "reply_tokens": p.reply_tokens, "overhead_s": 0.001},
            "reply_tokens": {"StudentUser": list(range(72, 109, 3))}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="10,50,200", help="top user counts, comma separated")
    parser.add_argument("--profiles", default="gpu-llama3-8b:4,cpu2-qwen2.5-1.5b:2", help="PROFILE:NUM_PARALLEL, ...")
    parser.add_argument("--think-time", default="0")
    args = parser.parse_args()
    from ollama_locust.scenarios import plans, predict, user_model, virtual_run

    print("| profile | NUM_PARALLEL | top users | requests | virtual run (s) | command, --band 0 (s) | command, band 10 (s) |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.profiles.split(","):
        name, slots = spec.split(":")
        data = probe_for(name, int(slots))
        for top in (int(u) for u in args.users.split(",")):
            users = sorted({max(1, top * k // 4) for k in (1, 2, 3, 4)})
            fit = virtual_run.fit_from_probe(data)
            think = user_model.parse_think_time(args.think_time)
            started = time.perf_counter()
            result = virtual_run.simulate(fit, plans.step_plan(users, 60.0), think=think)
            run_s = time.perf_counter() - started
            whole = []
            for band in ("0", "10"):
                with tempfile.TemporaryDirectory() as tmp:
                    path = os.path.join(tmp, "probe.json")
                    with open(path, "w") as f:
                        json.dump(data, f)
                    started = time.perf_counter()
                    with open(os.devnull, "w") as devnull:
                        stdout, sys.stdout = sys.stdout, devnull
                        try:
                            code = predict.main([path, "--users", ",".join(map(str, users)), "--step-time", "60s",
                                                 "--think-time", args.think_time, "--band", band,
                                                 "--run-dir", os.path.join(tmp, "run")])
                        finally:
                            sys.stdout = stdout
                    whole.append(time.perf_counter() - started)
                assert code == 0
            print(f"| {name} | {slots} | {top} | {len(result.records)} | {run_s:.2f} | {whole[0]:.2f} | {whole[1]:.2f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
