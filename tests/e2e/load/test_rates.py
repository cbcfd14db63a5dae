"""Open-loop arrivals (--shape rate, issue 18) end to end: real `ollama-locust step` runs (one process and
--workers 2) against the simulator, its truth log the referee of the rates, the inter-arrival CV, the dropped
arrivals and the queue growth the report finds.

Rates and lengths are chosen so that each run is bounded (about 30 s of load) and holds on a loaded 2-core
machine: the `instant` profile with short replies keeps the server's cost low; a Poisson CV is judged over
at least 1500 arrivals (its standard error there is about 0.03, so 0.9-1.1 is over 3 of them), and the Poisson
streams are seeded (--arrival-seed) so that the schedule is known and every one of its arrivals is checked.
"""

from __future__ import annotations

import json
import math
import os

import pytest

from ollama_locust import contract
from ollama_locust.scenarios.arrivals import arrival_times, gaps_cv, stream_seed
from tests.e2e.helpers import assert_no_traceback, ollama_locust, only_run_dir, read_csv, read_truth, run
from tests.e2e.webui.conftest import locust_cluster  # noqa: F401  (the fixture: a master with workers and its web UI)

INSTANT = ["--profile", "instant", "--decode-tps", "400", "--prefill-tps", "20000", "--num-parallel", "16"]
LOAD = ["--num-predict", "10", "--drain-timeout", "5"]
ACHIEVED = 0.02  # achieved within 2 % of offered, for a constant stream (a Poisson count varies by sqrt(n))


def rate_run(tmp_path, sim_process, name, sim_args, *args, timeout=150):
    truth_path = tmp_path / f"{name}.jsonl"
    sim = sim_process(*sim_args, "--truth-log", str(truth_path))
    out = tmp_path / name
    result = run(ollama_locust("step", "--host", sim.url, "--out", str(out), "--label", name, *LOAD, *args),
                 tmp_path, timeout=timeout, name=name)
    assert_no_traceback(result)
    assert result.code == 0, result.text[-3000:]
    run_dir = only_run_dir(out)
    records = read_csv(os.path.join(run_dir, contract.REQUESTS_FILE))
    ids = {r["request_id"] for r in records}
    truth = [t for t in read_truth(truth_path) if t.get("client_request_id") in ids]
    stages = read_csv(os.path.join(run_dir, contract.STAGES_FILE))
    with open(os.path.join(run_dir, contract.RESULTS_JSON), encoding="utf-8") as handle:
        results = json.load(handle)
    return run_dir, records, truth, stages, results, result


def per_stage(truth, stages):
    """Per stage: (offered rate, window s, the truth log's arrival times inside the stage)."""
    rows = []
    for stage in stages:
        lo, hi = float(stage["start_time"]), float(stage["end_time"])
        rows.append((float(stage["rate"]), hi - lo, sorted(t["arrival"] for t in truth if lo <= t["arrival"] < hi)))
    return rows


def report_rows(results):
    return {step["rate"]: step for step in results["steps"]}


def check_report_matches_truth(results, rows):
    """The report's Achieved is what the server saw arrive (the truth log), within 0.5 %."""
    steps = report_rows(results)
    for rate, width, times in rows:
        step = steps[rate]
        print(f"  {rate:g} req/s: send lag p99 {step['send_lag_p99_ms']:.1f} ms")
        assert 0 <= step["send_lag_p99_ms"] < 1000, step  # measured: see the printed figure
        assert step["dropped"] == 0, step
        assert step["achieved_rate"] == _approx(len(times) / width, 0.005), (step["achieved_rate"], len(times), width)


SEED = 7  # --arrival-seed: the Poisson streams are known in advance (1642 arrivals in 32 s at 50 req/s, 1680 over 2 workers)


def scheduled(rate, width, count, stage=0):
    """The arrivals the --arrival-seed SEED schedule holds in the first ``width`` s of a stage over ``count``
    processes (arrivals.arrival_times with the seeds the load side uses)."""
    import random

    out = []
    for index in range(count):
        for t in arrival_times(rate, "poisson", 0.0, index, count, random.Random(stream_seed(SEED, stage, index))):
            if t >= width:
                break
            out.append(t)
    return sorted(out)


def check_schedule_sent(rate, width, times, count):
    """Every arrival of the seeded schedule reached the server (the truth log), none more: at most one differs at
    each end of the window (a schedule begun a moment after the stage, an arrival at its very end)."""
    plan = scheduled(rate, width, count)
    print(f"  schedule: {len(plan)} arrivals in {width:.2f} s; the truth log {len(times)}")
    assert abs(len(times) - len(plan)) <= 2, (len(times), len(plan))


def _approx(value, rel):
    import pytest

    return pytest.approx(value, rel=rel)


def test_poisson_one_process_rate_and_cv_on_the_truth_log(tmp_path, sim_process):
    _, records, truth, stages, results, _ = rate_run(tmp_path, sim_process, "poisson1", INSTANT,
                                                     "--rates", "50", "--step-time", "32s", "--arrival", "poisson",
                                                     "--arrival-seed", str(SEED))
    rows = per_stage(truth, stages)
    (rate, width, times), = rows
    cv = gaps_cv(times)
    achieved = len(times) / width
    print(f"poisson 1 process: {len(times)} arrivals in {width:.2f} s, achieved {achieved:.2f} of {rate:g} req/s, CV {cv:.3f}")
    check_schedule_sent(rate, width, times, 1)
    assert len(times) >= 1500
    assert 0.9 <= cv <= 1.1
    # a Poisson count has a standard deviation of sqrt(n): within 4 of them of the offered count
    assert abs(len(times) - rate * width) <= 4 * math.sqrt(rate * width), (len(times), rate * width)
    check_report_matches_truth(results, rows)
    assert all(r["outcome"] == contract.OK for r in records)


def test_constant_two_workers_no_gaps_no_doubles(tmp_path, sim_process):
    _, records, truth, stages, results, _ = rate_run(
        tmp_path, sim_process, "constant2", INSTANT, "--rates", "10,30", "--step-time", "16s",
        "--arrival", "constant", "--workers", "2")
    rows = per_stage(truth, stages)
    for rate, width, times in rows:
        achieved = len(times) / width
        cv = gaps_cv(times)
        print(f"constant, 2 workers, {rate:g} req/s: {len(times)} arrivals in {width:.2f} s, achieved {achieved:.2f}, CV {cv:.3f}")
        assert abs(achieved - rate) <= ACHIEVED * rate, (achieved, rate)
        assert cv < 0.15, cv  # evenly spaced across both workers (measured 0.01-0.03 here)
    assert sum(len(times) for _, _, times in rows) >= 500
    workers = {}
    for record in records:
        workers[record["worker"]] = workers.get(record["worker"], 0) + 1
    assert len(workers) == 2 and max(workers.values()) - min(workers.values()) <= 4, workers  # each took every 2nd
    assert len({t["client_request_id"] for t in truth}) == len(truth)  # nothing sent twice
    check_report_matches_truth(results, rows)


def test_poisson_two_workers_superpose(tmp_path, sim_process):
    _, records, truth, stages, results, _ = rate_run(
        tmp_path, sim_process, "poisson2", INSTANT, "--rates", "50", "--step-time", "32s", "--arrival", "poisson",
        "--workers", "2", "--arrival-seed", str(SEED))
    rows = per_stage(truth, stages)
    (rate, width, times), = rows
    cv = gaps_cv(times)
    print(f"poisson 2 workers: {len(times)} arrivals in {width:.2f} s, achieved {len(times) / width:.2f} of {rate:g}, CV {cv:.3f}")
    check_schedule_sent(rate, width, times, 2)
    assert len(times) >= 1500 and 0.9 <= cv <= 1.1
    assert abs(len(times) - rate * width) <= 4 * math.sqrt(rate * width)
    assert len({r["worker"] for r in records}) == 2
    check_report_matches_truth(results, rows)


SLOW_SERVER = ["--profile", "gpu-llama3-8b", "--load-time", "0", "--num-parallel", "1"]  # ~0.3 s per 20-token reply


def test_queue_growth_found_and_turned_into_a_rate_limit(tmp_path, sim_process):
    run_dir, records, truth, stages, results, result = rate_run(
        tmp_path, sim_process, "growth", SLOW_SERVER, "--rates", "1,8", "--step-time", "12s",
        "--arrival", "constant", "--num-predict", "20")
    steps = report_rows(results)
    conclusion = results["conclusion"]
    print("growth:", {r: s["queue_trend"] for r, s in steps.items()}, conclusion["rate_limit"])
    assert steps[1.0]["queue_trend"]["growing"] is False
    assert steps[8.0]["queue_trend"]["growing"] is True  # one slot, ~3 answers/s, 8 arrive: the wait climbs
    assert conclusion["queue_growth_rate"] == 8.0
    assert conclusion["rate_limit"]["rate_per_s"] == 1.0 and conclusion["rate_limit"]["burst"] >= 1
    text = open(os.path.join(run_dir, contract.RESULTS_MD), encoding="utf-8").read()
    assert "| Offered rate (req/s) | Achieved (req/s) | Dropped | In flight p50 | In flight p95 | Send lag p99 |" in text
    assert "The queue grows without bound from 8 req/s" in text
    assert "Rate-limit the gateway at 1 requests/s" in text and "limit_req_zone" in text


def test_max_in_flight_drops_are_recorded_never_sent(tmp_path, sim_process):
    run_dir, records, truth, stages, results, _ = rate_run(
        tmp_path, sim_process, "drops", SLOW_SERVER, "--rates", "8", "--step-time", "8s", "--arrival", "constant",
        "--num-predict", "20", "--max-in-flight", "3")
    dropped = [r for r in records if r["outcome"] == contract.DROPPED]
    sent = {t["client_request_id"] for t in truth}
    print(f"drops: {len(dropped)} of {len(records)} arrivals dropped; truth log {len(truth)}")
    assert dropped and not any(r["request_id"] in sent for r in dropped)
    assert all(r["error"].startswith("not sent") and r["start_time"] for r in dropped)
    step = results["steps"][0]
    assert step["dropped"] == len([r for r in dropped if r["stage"] == "0"]) > 0
    assert step["success_rate"] == 1.0  # dropped arrivals are not failures of the server
    text = open(os.path.join(run_dir, contract.RESULTS_MD), encoding="utf-8").read()
    assert "dropped by the generator (--max-in-flight reached" in text and "The generator dropped arrivals" in text


def test_web_ui_rate_set_and_edited_each_rate_a_stage(tmp_path, sim_process, locust_cluster):
    """The web UI: a test started from the form with a rate (``rate`` field, --shape none), then the LLM tab's
    Rate field (POST /llm/rate) changes it while it runs: each rate is a stage of its own, with its arrivals."""
    import time
    import urllib.parse
    import urllib.request

    from tests.e2e.webui.helpers import get_json, wait_for

    truth_path = tmp_path / "webui.jsonl"
    sim = sim_process(*INSTANT, "--truth-log", str(truth_path))
    cluster = locust_cluster(workers=2, extra=["--host", sim.url, "--arrival", "constant", *LOAD])

    def post(path, **form):
        data = urllib.parse.urlencode(form).encode()
        with urllib.request.urlopen(urllib.request.Request(cluster.url + path, data=data), timeout=30) as response:
            return json.loads(response.read())

    assert post("swarm", user_count=1, spawn_rate=1, host=sim.url, rate=4)["success"]
    time.sleep(6)
    assert post("llm/rate", rate=10) == {"success": True, "rate": 10.0, "plan": False}
    time.sleep(6)
    assert get_json(cluster.url + "llm/rate")["rate"] == 10.0
    bad = urllib.request.Request(cluster.url + "llm/rate", data=b"rate=-1")
    try:
        urllib.request.urlopen(bad, timeout=10)
        raise AssertionError("a negative rate was taken")
    except urllib.error.HTTPError as error:
        assert error.code == 400
    post("stop")
    wait_for(lambda: get_json(cluster.url + "stats/requests")["state"] == "stopped", 30, "the stop")
    time.sleep(2)  # the last records reach the master
    stages = read_csv(os.path.join(cluster.run_dir, contract.STAGES_FILE))
    assert [(s["kind"], float(s["rate"])) for s in stages] == [("rate", 4.0), ("rate", 10.0)], stages
    records = read_csv(os.path.join(cluster.run_dir, contract.REQUESTS_FILE))
    ids = {r["request_id"] for r in records}
    truth = [t for t in read_truth(truth_path) if t.get("client_request_id") in ids]
    for rate, width, times in per_stage(truth, stages):
        print(f"web UI, 2 workers, {rate:g} req/s: {len(times)} arrivals in {width:.2f} s")
        assert abs(len(times) / width - rate) <= 0.1 * rate + 1.0 / width, (rate, len(times), width)
    assert "Traceback" not in cluster.logs()


def test_bad_rate_input_one_line_exit_2(tmp_path):
    """Bad --rates and a class that cannot run open loop: one line, exit 2, before any load (no target needed)."""
    for args, said in ((["--rates", "1,0"], "--rates: rates must be numbers > 0"),
                       (["--rates", "1", "--user-class", "BurstyUser"], "BurstyUser cannot take part in open-loop arrivals")):
        result = run(ollama_locust("step", "--host", "http://127.0.0.1:9", "--skip-preflight", "--out", str(tmp_path / "runs"),
                                   *args), tmp_path, timeout=60, name="bad")
        assert result.code == contract.EXIT_BAD_INPUT, result.text[-2000:]
        assert said in result.err, result.err
        assert_no_traceback(result)


@pytest.mark.parametrize("workers", [0, 2])
def test_ctrl_c_cuts_the_requests_in_flight_short_and_records_them(tmp_path, sim_process, workers):
    """Ctrl-C during a rate step: the open-loop requests in flight are cut short and recorded (not lost), exit 130.
    20 req/s into one slot that answers ~6/s: a queue is in flight when the signal comes."""
    import signal
    import subprocess
    import time

    sim = sim_process(*SLOW_SERVER)
    out = tmp_path / "runs"
    with open(tmp_path / "int.out", "w") as stdout, open(tmp_path / "int.err", "w") as stderr:
        proc = subprocess.Popen(ollama_locust("step", "--host", sim.url, "--rates", "20", "--step-time", "60s",
                                              "--num-predict", "60", "--out", str(out), "--workers", str(workers), *LOAD),
                                stdout=stdout, stderr=stderr, cwd=tmp_path)
        try:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and "in flight)" not in (tmp_path / "int.out").read_text():
                time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = (tmp_path / "int.out").read_text() + (tmp_path / "int.err").read_text()
    assert code == contract.EXIT_INTERRUPTED, text[-3000:]
    assert "Traceback" not in text
    records = read_csv(os.path.join(only_run_dir(out), contract.REQUESTS_FILE))
    cut = [r for r in records if r["outcome"] == contract.CUT_SHORT]
    print(f"ctrl-c, {workers} workers: {len(cut)} of {len(records)} requests cut short")
    assert cut, records[-3:]
