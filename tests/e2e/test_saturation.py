"""The load side at saturation (issue 13): new users' first requests timed from their write, stages that
say how many users they really held, "all at once" that is all at once, bursts that fire together.
Real simulator and locust processes on 127.0.0.1; the simulator's truth log is the referee.

Timing bounds hold on a loaded 2-core machine; the figures each run measured are printed (``-s``)."""

from __future__ import annotations

import os
import statistics

from tests.e2e.helpers import assert_no_traceback, ollama_locust, only_run_dir, read_csv, read_truth, run


def step_run(tmp_path, sim, *args, timeout=150, name="step"):
    out = tmp_path / f"runs-{name}"
    result = run(ollama_locust("step", "--host", sim.url, "--out", str(out), "--no-report", "--drain-timeout", "5", *args),
                 tmp_path, timeout=timeout, name=name)
    assert_no_traceback(result)
    assert result.code == 0, result.text[-3000:]
    run_dir = only_run_dir(out)
    return run_dir, read_csv(os.path.join(run_dir, "stages.csv")), read_csv(os.path.join(run_dir, "requests.csv"))


def matched(records, truth_path):
    truth = {t["client_request_id"]: t for t in read_truth(truth_path) if t.get("client_request_id")}
    pairs = [(r, truth[r["request_id"]]) for r in records if r["outcome"] == "ok"]
    assert pairs and all(t["outcome"] == "ok" for _, t in pairs)
    return pairs


def concurrency(truth_rows, at: float) -> int:
    """Requests inside the simulator (read, not yet finished) at unix time ``at``."""
    return sum(1 for t in truth_rows if t["arrival"] <= at < (t["last_byte_sent"] or float("inf")))


def test_new_users_first_requests_are_timed_from_their_write(tmp_path, sim_process):
    """1 -> 256 users all at once (instant profile, 200 tokens/s per stream, a slot each): every request's
    clock starts when its bytes are written, so its first request is as exact as the rest."""
    truth = tmp_path / "truth.jsonl"
    sim = sim_process("--profile", "instant", "--decode-tps", "100", "--num-parallel", "256", "--truth-log", str(truth))
    _, stages, records = step_run(tmp_path, sim, "--users", "1,256", "--step-time", "5s", "--think-time", "0.5,1.5",
                                  "--num-predict", "20")
    pairs = matched(records, truth)
    # one connection per user, opened before its first request and kept: connect_ms on exactly those
    first = [(r, t) for r, t in pairs if r["connect_ms"]]
    assert len(first) == 256 and len({r["request_id"] for r, _ in first}) == 256
    assert all(0 <= float(r["connect_ms"]) < 5000 for r, _ in first)
    send, read_first, read_last, ttft_err, e2e_err = [], [], [], [], []
    for record, row in pairs:
        start = float(record["start_time"])
        send.append((row["arrival"] - start) * 1000)  # client write -> the simulator read it
        read_first.append(float(record["ttft_ms"]) - (row["first_token_sent"] - start) * 1000)
        read_last.append(float(record["e2e_ms"]) - (row["last_byte_sent"] - start) * 1000)
        ttft_err.append(float(record["ttft_ms"]) - (row["first_token_sent"] - row["arrival"]) * 1000)
        e2e_err.append(float(record["e2e_ms"]) - (row["last_byte_sent"] - row["arrival"]) * 1000)
    # start_time is the write: never after the simulator read the request (1 ms for the two clocks)
    assert min(send) > -1.0, min(send)
    # the last byte is dated by its kernel receive stamp: within 5 ms of the simulator's send. Bounds for a
    # loaded 2-core machine: there the load process waits on the CPU run queue (seen: 3.4 s in a 14 s run,
    # /proc/PID/schedstat), and the simulator itself may be taken off the CPU between a write and its stamp
    assert sum(1 for x in read_last if abs(x) < 5.0) >= 0.9 * len(read_last), sorted(read_last)[-5:]
    # the first token too, typically; one read late (hub busy or off the CPU) dates queued packets late
    assert statistics.median(abs(x) for x in read_first) < 2.0
    kept = [s for (r, _), s in zip(pairs, send) if not r["connect_ms"]]
    new = [s for (r, _), s in zip(pairs, send) if r["connect_ms"]]
    assert statistics.median(kept) < 10.0
    # a request already waiting when the simulator accepted its connection late is dated by the kernel's
    # receive stamp (simulator/http.py): p50 0.0 ms on a quiet machine, where the late read gave 18-31 ms
    assert statistics.median(new) < 5.0, sorted(new)[len(new) // 2:][:5]
    within = sum(1 for a, b in zip(ttft_err, e2e_err) if abs(a) < 5 and abs(b) < 5)
    stage_start = float(stages[1]["start_time"])
    worst = sorted(((max(abs(a), abs(b)), a, b, float(r["start_time"]) - stage_start, bool(r["connect_ms"]))
                    for (r, _), a, b in zip(pairs, ttft_err, e2e_err)), reverse=True)[:5]
    print("\nworst (error, TTFT err, E2E err ms, written s into stage 1, new connection): "
          + "; ".join(f"{e:.1f} {a:+.1f} {b:+.1f} {at:.3f} {fresh}" for e, a, b, at, fresh in worst))
    print(f"\n1->256: {len(pairs)} requests; TTFT and E2E within 5 ms of the truth log: {within}"
          f" ({within / len(pairs):.1%}); send lag (simulator read - client write) new connections p50"
          f" {statistics.median(new):.1f} max {max(new):.1f} ms, kept-alive p50 {statistics.median(kept):.1f}"
          f" max {max(kept):.1f} ms; first-token read lag max {max(read_first):.1f} ms;"
          f" last-byte read lag max {max(read_last):.1f} ms; stage 1 reached {stages[1]['reached_s']} s")


def test_a_new_users_first_request_is_as_exact_as_the_rest(tmp_path, sim_process):
    """The paced default profile (gpu-llama3-8b), 1, 2, 4, 8 users: no flood, so the simulator reads at once;
    each new user's first request (a new connection) is timed like the kept-alive ones."""
    truth = tmp_path / "truth.jsonl"
    sim = sim_process("--profile", "gpu-llama3-8b", "--truth-log", str(truth))
    _, _, records = step_run(tmp_path, sim, "--users", "1,2,4,8", "--step-time", "4s", "--think-time", "0",
                             "--num-predict", "30")
    pairs = matched(records, truth)
    first = [(r, t) for r, t in pairs if r["connect_ms"]]
    assert len(first) == 8

    def error(record, row):  # ms: the larger of the TTFT and the E2E difference to the truth log
        ttft = float(record["ttft_ms"]) - (row["first_token_sent"] - row["arrival"]) * 1000
        e2e = float(record["e2e_ms"]) - (row["last_byte_sent"] - row["arrival"]) * 1000
        return max(abs(ttft), abs(e2e))

    firsts = sorted(error(r, t) for r, t in first)
    rest = sorted(error(r, t) for r, t in pairs if not r["connect_ms"])
    # Before issue 13 the clock started before the connect: every first request 20-30 ms off. Now within
    # 5 ms like the rest; on a loaded 2-core machine a process taken off the CPU for tens of ms (seen: the
    # load process waited 3.4 s on the run queue in a 14 s run) dates one read late, so two may be off.
    assert sum(1 for x in firsts if x < 5) >= len(firsts) - 2, firsts
    print(f"\npaced 1,2,4,8: first requests off by at most {firsts[-1]:.1f} ms (median {statistics.median(firsts):.1f});"
          f" the other {len(rest)} at most {rest[-1]:.1f} ms (median {statistics.median(rest):.1f})")


def held(stages, index):
    stage = stages[index]
    return float(stage["users_mean"]), int(stage["users_max"]), stage["reached_s"]


def test_all_at_once_1024_users_and_what_each_stage_held(tmp_path, sim_process):
    """1 -> 1024 users (no think time, 2 s replies, a slot each): Locust starts them in one go; stages.csv
    says when they ran and how many it held, checked against the simulator's own concurrency."""
    truth = tmp_path / "truth.jsonl"
    sim = sim_process("--profile", "instant", "--decode-tps", "10", "--num-parallel", "1024", "--truth-log", str(truth))
    figures = []
    for workers in ("0", "2"):
        truth.write_text("")
        _, stages, records = step_run(tmp_path, sim, "--users", "1,1024", "--step-time", "6s", "--think-time", "0",
                                      "--num-predict", "20", "--workers", workers, name=f"w{workers}")
        rows = [t for t in read_truth(truth) if t.get("client_request_id")]
        assert [int(s["users"]) for s in stages] == [1, 1024]
        mean0, max0, reached0 = held(stages, 0)
        assert max0 == 1 and reached0 != "" and 0.5 <= mean0 <= 1.0
        mean1, max1, reached1 = held(stages, 1)
        assert max1 == 1024 and reached1 != ""
        reached = float(reached1)
        assert reached < 4.0, reached  # generous: 0.03-1.3 s measured on the loaded machine (docs/load-model.md)
        start, end = float(stages[1]["start_time"]), float(stages[1]["end_time"])
        # time-weighted: at most the target, and at least what was running from the moment it was reached
        assert 1024 * (1 - reached / (end - start)) - 1 <= mean1 <= 1024
        # the simulator saw the users: never more requests inside it than users running, and nearly all of
        # them once they had started (each user asks again as soon as its 2 s answer ends)
        samples = [(x * 0.05, concurrency(rows, start + x * 0.05)) for x in range(1, int((end - start) / 0.05))]
        assert max(n for _, n in samples) <= max1
        t90 = next((x for x, n in samples if n >= 0.9 * 1024), None)
        assert t90 is not None, max(n for _, n in samples)
        figures.append(f"workers {workers}: reached {reached:.3f} s, mean {mean1:.1f} users; the simulator held"
                       f" 90 % of them {t90:.2f} s into the stage")
        assert len(records) > 1024
    print("\n1->1024 all at once: " + "; ".join(figures))


def test_burst_shape_fires_every_bursty_user_on_every_worker(tmp_path, sim_process):
    """--shape burst on --workers 2: at each burst stage the master signals every worker once the users run;
    the simulator reads the whole group's requests within 50 ms."""
    truth = tmp_path / "truth.jsonl"
    sim = sim_process("--profile", "instant", "--decode-tps", "200", "--num-parallel", "16", "--truth-log", str(truth))
    _, stages, records = step_run(tmp_path, sim, "--shape", "burst", "--user-class", "BurstyUser", "--users", "4,8",
                                  "--step-time", "2s", "--burst-period", "4", "--num-predict", "20", "--workers", "2")
    assert [(s["kind"], int(s["users"])) for s in stages] == [("hold", 4), ("burst", 12), ("hold", 4), ("burst", 12)]
    assert len({r["worker"] for r in records}) == 2
    rows = sorted((t["arrival"], t["client_request_id"]) for t in read_truth(truth) if t.get("client_request_id"))
    by_id = {r["request_id"]: r for r in records}
    spreads = []
    for burst in (stages[1], stages[3]):
        start, end = float(burst["start_time"]), float(burst["end_time"])
        group = [(at, by_id[rid]["worker"]) for at, rid in rows if start <= at < end]
        assert len(group) == 12, group  # every BurstyUser asked once, none in the hold stages
        assert len({w for _, w in group}) == 2
        spread = (group[-1][0] - group[0][0]) * 1000
        assert spread < 50, spread
        written = sorted(float(by_id[rid]["start_time"]) for at, rid in rows if start <= at < end)
        spreads.append((spread, (written[-1] - written[0]) * 1000))
    assert not [at for at, _ in rows if any(float(s["start_time"]) <= at < float(s["end_time"])
                                            for s in (stages[0], stages[2]))]
    print(f"\nbursts on 2 workers: 12 arrivals within {spreads[0][0]:.1f} ms and {spreads[1][0]:.1f} ms"
          f" (written within {spreads[0][1]:.1f} / {spreads[1][1]:.1f} ms);"
          f" fired {stages[1]['reached_s']} s / {stages[3]['reached_s']} s into the burst stage")
