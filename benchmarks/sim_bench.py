"""Benchmark of the simulator: concurrent streams held, tokens/s served, token-send jitter vs the plan.

    python benchmarks/sim_bench.py            # all cases, about a minute, 127.0.0.1 only
    python benchmarks/sim_bench.py --quick    # smaller cases

The simulator runs as its own process pinned to CPU 0 (``start_process(cpu=0)``); the load comes from a
second process pinned to CPU 1 (raw asyncio sockets on uvloop, counting NDJSON token lines). Jitter is
measured inside the server: for every token, the time it was written minus the time the decode plan
said (``/_sim/stats``, 0.1 ms buckets). Server CPU is read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request

from ollama_locust.simulator import start_process  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
SETTLE = 0.5  # seconds after the last stream started before the held phase is measured


# -- the load process -----------------------------------------------------------------------------
class _Stream(asyncio.Protocol):
    PAT = b'"done":false'

    def __init__(self, request: bytes, st: dict, done: asyncio.Future):
        self.request, self.st, self.done = request, st, done
        self.carry = b""
        self.started = False

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data):
        st = self.st
        if not self.started:
            self.started = True
            st["active"] += 1
            st["peak"] = max(st["peak"], st["active"])
        x = self.carry + data
        st["tokens"] += x.count(self.PAT)
        self.carry = data[-(len(self.PAT) - 1):]
        if b'"done":true' in x:
            st["active"] -= 1
            st["ok"] += 1
            self.transport.close()

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(None)


async def _client(host: str, port: int, streams: int, num_predict: int) -> dict:
    loop = asyncio.get_running_loop()
    st = {"active": 0, "peak": 0, "tokens": 0, "ok": 0}
    body = json.dumps({"model": "llama3.2", "prompt": "a recipe with rice",
                       "options": {"num_predict": num_predict}}).encode()
    req = (b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    t0 = time.monotonic()
    futs = []
    for i in range(0, streams, 100):
        batch = []
        for _ in range(min(100, streams - i)):
            f = loop.create_future()
            futs.append(f)
            batch.append(loop.create_connection(lambda f=f: _Stream(req, st, f), host, port))
        await asyncio.gather(*batch)
    opened = time.monotonic() - t0
    await asyncio.gather(*futs)
    elapsed = time.monotonic() - t0
    return {**st, "opened_s": opened, "elapsed_s": elapsed}


def client_main(url: str, streams: int, num_predict: int) -> None:
    import uvloop
    host, port = url.split("//")[1].rsplit(":", 1)
    res = uvloop.run(_client(host, int(port), streams, num_predict))
    print(json.dumps(res), flush=True)


# -- the orchestrator -------------------------------------------------------------------------------
def _get(url: str, method: str = "GET") -> dict:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def run_case(name: str, sim_args: list[str], streams: int, num_predict: int) -> dict:
    with start_process(sim_args, cpu=0) as sim:
        urllib.request.urlopen(urllib.request.Request(
            sim.url + "/api/generate", data=json.dumps({"model": "llama3.2", "prompt": "warm", "stream": False,
                                                         "options": {"num_predict": 1}}).encode()), timeout=30).read()
        _get(sim.url + "/_sim/stats/reset", "POST")
        cpu0 = _cpu_seconds(sim.pid)
        pin = (lambda: os.sched_setaffinity(0, {1})) if os.cpu_count() and os.cpu_count() > 1 else None
        client = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--client", sim.url, str(streams),
                                   str(num_predict)], stdout=subprocess.PIPE, text=True, preexec_fn=pin)
        peak_gen = peak_conn = 0
        ramp = None  # the send statistics of the ramp (streams opening), before all were held
        while client.poll() is None:
            s = _get(sim.url + "/_sim/stats")
            peak_gen = max(peak_gen, s["generating"])
            peak_conn = max(peak_conn, s["connections"])
            if s["generating"] >= streams:
                # All streams held. The steps that overlapped the ramp (requests read and set up between
                # a step's writes) are over after SETTLE s; measure from there to the end, and poll no
                # more: a stats request served mid-step would show up as jitter itself.
                time.sleep(SETTLE)
                ramp = _get(sim.url + "/_sim/stats")
                _get(sim.url + "/_sim/stats/reset", "POST")
                client.wait()
                break
            time.sleep(0.05)
        out = json.loads(client.stdout.read())
        stats = _get(sim.url + "/_sim/stats")
        cpu = _cpu_seconds(sim.pid) - cpu0
    lat, jit, step = stats["lateness_ms"], stats["jitter_ms"], stats["step_start_lateness_ms"]
    return {"case": name, "streams": streams, "held": min(peak_gen, out["peak"]), "conns": peak_conn,
            "completed": out["ok"], "tokens": out["tokens"], "elapsed_s": out["elapsed_s"],
            "tok_per_s": out["tokens"] / out["elapsed_s"], "server_cpu": cpu / out["elapsed_s"],
            "jitter_p50_ms": jit["p50"], "jitter_p99_ms": jit["p99"], "jitter_max_ms": jit["max"],
            "late_p50_ms": lat["p50"], "late_p99_ms": lat["p99"], "late_max_ms": lat["max"],
            "step_p99_ms": step["p99"], "step_max_ms": step["max"]}


def cases(quick: bool) -> list[tuple[str, list[str], int, int]]:
    paced = ["--profile", "gpu-llama3-8b", "--beta", "0", "--prefill-tps", "1000000", "--load-time", "0"]
    scale = 4 if quick else 1
    return [
        ("instant", ["--profile", "instant", "--num-parallel", "4000"], 2000 // scale, 120),
        ("paced 10 tok/s/stream", [*paced, "--decode-tps", "10", "--num-parallel", "4000"], 2000 // scale, 80),
        ("paced 20 tok/s/stream", [*paced, "--decode-tps", "20", "--num-parallel", "4000"], 1000 // scale, 120),
        ("gpu-llama3-8b as is (β 0.3)", ["--profile", "gpu-llama3-8b", "--load-time", "0", "--prefill-tps", "1000000",
                                         "--num-parallel", "64"], 64, 120),
    ]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--client"]:
        client_main(argv[1], int(argv[2]), int(argv[3]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a quarter of the streams")
    p.add_argument("--json", help="also write the rows to this file")
    p.add_argument("--only", metavar="TEXT", help="run only the cases whose name contains TEXT")
    args = p.parse_args(argv)
    rows = []
    hdr = (f"{'case':<30} {'streams':>7} {'held':>5} {'done':>5} {'tokens/s':>9} {'server CPU':>10} "
           f"{'jitter p50':>10} {'p99':>7} {'max':>7} {'late p50':>9} {'p99':>7} {'max':>7} {'step p99':>9}")
    print(hdr)
    for name, sim_args, streams, n in cases(args.quick):
        if args.only and args.only not in name:
            continue
        r = run_case(name, sim_args, streams, n)
        rows.append(r)
        print(f"{r['case']:<30} {r['streams']:>7} {r['held']:>5} {r['completed']:>5} {r['tok_per_s']:>9.0f} "
              f"{r['server_cpu'] * 100:>9.0f}% {r['jitter_p50_ms']:>8.1f}ms {r['jitter_p99_ms']:>5.1f}ms "
              f"{r['jitter_max_ms']:>5.1f}ms {r['late_p50_ms']:>7.1f}ms {r['late_p99_ms']:>5.1f}ms "
              f"{r['late_max_ms']:>5.1f}ms {r['step_p99_ms']:>7.1f}ms",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
