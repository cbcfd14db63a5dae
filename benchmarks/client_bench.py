"""Client benchmark: streamed tokens consumed per load-generator CPU-second, and TTFT error vs the truth log.

    python benchmarks/client_bench.py                       # both variants, instant profile, then 1000 paced users
    python benchmarks/client_bench.py --users 50 --seconds 10 --skip-paced

Runs the simulator in its own process (pinned to one CPU when there are two or more) and each load
variant in its own process (pinned to another CPU), one after the other against the same simulator:

* ``locust``: N Locust users of this project (``scenarios.users.LLMUser`` + the Ollama chat client,
  every request reported through ``report_request``: Locust's stats, the TTFT entry, the record sink);
* ``httpx-baseline``: the way a typical seed script does it: asyncio, one ``httpx.AsyncClient``, a
  semaphore of N, ``client.stream`` + ``aiter_lines`` + ``json.loads`` per line.

CPU is the load process's own user+system time (``resource.getrusage``) over the measured window;
tokens are the content chunks of the replies consumed in it. TTFT error = |client TTFT - the
simulator's (first_token_sent - arrival)|, matched by X-Request-ID. The paced run: 1000 concurrent
users on one load process against a profile with 20 tokens/s per stream, all slots in parallel.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

QUESTION = "Why is the sky blue?"


# --- the load variants (each runs in its own process) ------------------------------------------------

def run_locust(url: str, users: int, seconds: float, warmup: float, out: str, think: float = 0.0) -> None:
    from gevent import monkey

    monkey.patch_all()
    import resource

    import gevent
    from locust import task
    from locust.env import Environment

    import random

    from ollama_locust.scenarios.prompts import load_prompts
    from ollama_locust.scenarios.users import LLMUser

    questions = [p.text for p in load_prompts().school if p.length == "short"]

    class Sink:
        def __init__(self):
            self.rows = []
            self.measuring = False

        def add(self, record):
            if self.measuring and record["outcome"] == "ok":
                self.rows.append((record["request_id"], record["ttft_ms"], record["output_tokens"], record["start_time"]))

    class BenchUser(LLMUser):
        def wait_time(self):
            return random.uniform(0, think) if think else 0

        @task
        def ask_one(self):
            self.ask([{"role": "user", "content": random.choice(questions) if think else QUESTION}])

    env = Environment(user_classes=[BenchUser], host=url)
    env.parsed_options = argparse.Namespace(api="ollama-chat", think_time="0", request_timeout=120.0,
                                            first_token_timeout=120.0)
    sink = Sink()
    env.llm_records = sink
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=users / 5 if think else users)
    gevent.sleep(warmup)
    sink.measuring = True
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    gevent.sleep(seconds)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    sink.measuring = False
    runner.quit()
    _write(out, sink.rows, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime), t1 - t0)


def run_httpx(url: str, users: int, seconds: float, warmup: float, out: str) -> None:
    import asyncio
    import resource

    import httpx

    rows = []
    state = {"measuring": False, "stop": False}
    counter = iter(range(1, 1 << 62))

    async def one(client, sem):
        async with sem:
            rid = f"httpx-{os.getpid()}-{next(counter)}"
            payload = {"model": "llama3.2", "messages": [{"role": "user", "content": QUESTION}], "stream": True}
            start, start_wall = time.perf_counter(), time.time()
            ttft = None
            tokens = 0
            async with client.stream("POST", "/api/chat", json=payload, headers={"X-Request-ID": rid}) as response:
                async for line in response.aiter_lines():
                    if not line:
                        continue
                    chunk = json.loads(line)
                    content = chunk.get("message", {}).get("content")
                    if content:
                        tokens += 1
                        if ttft is None:
                            ttft = (time.perf_counter() - start) * 1000
                    if chunk.get("done"):
                        tokens = chunk.get("eval_count", tokens)
                        break
            if state["measuring"] and ttft is not None:
                rows.append((rid, ttft, tokens, start_wall))

    async def worker(client, sem):
        while not state["stop"]:
            await one(client, sem)

    async def main():
        limits = httpx.Limits(max_connections=users, max_keepalive_connections=users)
        async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(120.0), limits=limits) as client:
            sem = asyncio.Semaphore(users)
            tasks = [asyncio.create_task(worker(client, sem)) for _ in range(users)]
            await asyncio.sleep(warmup)
            state["measuring"] = True
            t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            await asyncio.sleep(seconds)
            r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            state["measuring"] = False
            state["stop"] = True
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime), t1 - t0

    cpu, wall = asyncio.run(main())
    _write(out, rows, cpu, wall)


def _write(out: str, rows, cpu: float, wall: float) -> None:
    with open(out, "w") as handle:
        json.dump({"rows": rows, "cpu_s": cpu, "wall_s": wall}, handle)


# --- the driver ---------------------------------------------------------------------------------------

def _pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def _truth(path: str) -> dict:
    rows = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                if row.get("client_request_id") and row.get("first_token_sent"):
                    rows[row["client_request_id"]] = (row["arrival"], row["first_token_sent"])
    return rows


def measure(variant: str, url: str, users: int, seconds: float, warmup: float, truth_path: str, cpu: int | None,
            think: float = 0.0) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = handle.name
    cmd = [sys.executable, os.path.abspath(__file__), "--run", variant, "--url", url, "--users", str(users),
           "--seconds", str(seconds), "--warmup", str(warmup), "--out", out, "--think", str(think)]
    preexec = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    proc = subprocess.run(cmd, preexec_fn=preexec, capture_output=True, text=True,
                          timeout=seconds + warmup + 120)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed: {proc.stderr[-2000:]}")
    with open(out) as handle:
        data = json.load(handle)
    os.unlink(out)
    time.sleep(0.5)  # the simulator writes its truth log after each request
    truth = _truth(truth_path)
    errors, send_lag, read_lag = [], [], []
    for rid, ttft, _, start in data["rows"]:
        if rid in truth:
            arrival, first_sent = truth[rid]
            errors.append(abs(ttft - (first_sent - arrival) * 1000))
            send_lag.append((arrival - start) * 1000)  # client send -> simulator parsed the request
            read_lag.append((start + ttft / 1000 - first_sent) * 1000)  # simulator wrote -> client saw it
    tokens = sum(row[2] for row in data["rows"])
    return {
        "variant": variant, "users": users, "requests": len(data["rows"]), "tokens": tokens,
        "wall_s": round(data["wall_s"], 2), "cpu_s": round(data["cpu_s"], 2),
        "tokens_per_cpu_s": round(tokens / data["cpu_s"]) if data["cpu_s"] else None,
        "tokens_per_s": round(tokens / data["wall_s"]),
        "ttft_err_p50_ms": round(_pct(errors, 50), 3), "ttft_err_p99_ms": round(_pct(errors, 99), 3),
        "matched": len(errors),
        "send_lag_p50_ms": round(_pct(send_lag, 50), 3), "send_lag_p99_ms": round(_pct(send_lag, 99), 3),
        "read_lag_p50_ms": round(_pct(read_lag, 50), 3), "read_lag_p99_ms": round(_pct(read_lag, 99), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--paced-users", type=int, default=1000)
    parser.add_argument("--paced-tps", type=float, default=20.0)
    parser.add_argument("--skip-paced", action="store_true")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--think", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        if args.run == "locust":
            run_locust(args.url, args.users, args.seconds, args.warmup, args.out, args.think)
        else:
            run_httpx(args.url, args.users, args.seconds, args.warmup, args.out)
        return 0

    from ollama_locust.simulator import start_process

    cpus = sorted(os.sched_getaffinity(0))
    sim_cpu, load_cpu = (cpus[-1], cpus[0]) if len(cpus) >= 2 else (None, None)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        truth = os.path.join(tmp, "truth.jsonl")
        argv = ["--profile", "instant", "--num-parallel", str(max(args.users, 1)), "--truth-log", truth]
        with start_process(argv, cpu=sim_cpu) as sim:
            for variant in ("locust", "httpx-baseline"):
                results.append(measure(variant, sim.url, args.users, args.seconds, args.warmup, truth, load_cpu))
                print(json.dumps(results[-1]), flush=True)
        if not args.skip_paced:
            truth = os.path.join(tmp, "truth-paced.jsonl")
            argv = ["--profile", "instant", "--decode-tps", str(args.paced_tps), "--beta", "0",
                    "--num-parallel", str(args.paced_users), "--truth-log", truth]
            with start_process(argv, cpu=sim_cpu) as sim:
                paced = measure("locust", sim.url, args.paced_users, args.seconds, max(args.warmup, 10.0), truth, load_cpu,
                                think=1.0)
                paced["variant"] = f"locust-paced-{args.paced_tps:g}tps"
                results.append(paced)
                print(json.dumps(paced), flush=True)
    ours, base = results[0], results[1]
    if ours["tokens_per_cpu_s"] and base["tokens_per_cpu_s"]:
        print(f"ratio locust/httpx tokens per CPU-s: {ours['tokens_per_cpu_s'] / base['tokens_per_cpu_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
