"""Do requests wait for each other (serialised) or share the server? Run folders built from records."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from ollama_locust.reports import analyse, compare_runs, write_report
from ollama_locust.reports._concurrency import MIN_OK_REQUESTS, overlap_measures
from ollama_locust.reports._step_metrics import format_seconds
from tests.reports.conftest import closed_loop, record, stage_rows

USERS = [1, 2, 4, 8]
WAIT = "Requests wait for each other"
SHARE = "Requests share the server"


def _folder(make_run, users=USERS, run=None, steps=None, **kw):
    records = []
    for stage, n in enumerate(users):
        records += closed_loop(stage, n, **{**kw, **((steps or {}).get(stage, {}))})
    run = {"label": "t", "api": "ollama-chat", **(run or {})}
    return make_run(records, stage_rows(users, duration=kw.get("step_s", 100.0)), run=run), records


def _report(path):
    report = write_report(path, plots=False)
    conclusion = report.data["conclusion"]
    return report, conclusion, "\n\n".join(conclusion["text"])


def _brute(records, stage):
    """(mean requests ahead, mean time left on them in ms) over the stage's requests, the slow way (O(n²))."""
    spans = [(r["start_time"], r["start_time"] + r["e2e_ms"] / 1000.0) for r in records]
    ahead, left = [], []
    for i, r in enumerate(records):
        if r["stage"] != stage:
            continue
        sent = spans[i][0]
        running = [e for j, (s, e) in enumerate(spans) if j != i and s <= sent < e]
        ahead.append(len(running))
        left.append(max([e - sent for e in running], default=0.0) * 1000.0)
    return float(np.mean(ahead)), float(np.mean(left))


def _brute_ahead(records, stage):
    return _brute(records, stage)[0]


def test_serialised_run_says_requests_wait_with_the_measured_numbers(make_run):
    path, records = _folder(make_run, run={"simulator": {"profile": "cpu", "num_parallel": 1}})
    report, conclusion, text = _report(path)
    top = [r for r in records if r["stage"] == 3]
    ttft = np.percentile([r["ttft_ms"] for r in top], 50)
    base_ttft = np.percentile([r["ttft_ms"] for r in records if r["stage"] == 0], 50)
    ahead = _brute_ahead(records, 3)
    assert ttft == pytest.approx(7100.0, abs=1)  # 7 requests ahead × 1 s each + 0.1 s prefill
    expected = (f"**Requests wait for each other:** the server answers one at a time. At 8 users a request waits "
                f"{format_seconds(ttft)} before its first token ({format_seconds(base_ttft)} with 1 user), with on "
                f"average {ahead:.1f} other requests in the server (sent, not yet answered) when it was sent, while each answer still streams "
                f"at 110 tokens/s (baseline 110). Raising OLLAMA_NUM_PARALLEL (now 1; if memory allows) or fewer "
                f"concurrent users shortens the wait.")
    assert expected in text
    assert SHARE not in text
    assert conclusion["concurrency_mode"] == "serialised"
    verdict = conclusion["concurrency"]["serialised"]
    assert verdict["users"] == 8
    assert verdict["requests_ahead"] == pytest.approx(ahead)
    assert verdict["ttft_p50_ms"] == pytest.approx(ttft)
    assert verdict["tokens_per_s_request"] == pytest.approx(99 / 0.9)
    assert verdict["streams_alongside"] == pytest.approx(0.0, abs=1e-6)  # one answer at a time
    assert [s["mode"] for s in conclusion["concurrency"]["steps"]] == ["serialised"] * 3
    # The time split makes the wait visible: most of a request's time passes before its first token.
    steps = report.data["steps"]
    assert [s["concurrency_mode"] for s in steps] == [None, "serialised", "serialised", "serialised"]
    assert steps[3]["client_split"]["ttft_share"] == pytest.approx(7.1 / 8.0, abs=0.01)
    row = next(line for line in report.markdown.splitlines() if line.startswith("| 8 | 87 | 7.10 s |"))
    assert row.startswith("| 8 | 87 | 7.10 s | 0.90 s | 88.7 % | 6.7 | ")  # median TTFT, streaming, share, ahead
    # no answer streams alongside; no server durations, so no slot split; 8 in flight; everyone but the first waited
    assert row.endswith(" | 0.0 | – | 8.0 | 86 of 87 (TTFT) | requests wait for each other |")
    assert "- at 8 users, 89 % of a request's time passes before its first token" in report.markdown
    assert "requests wait for each other" in steps[3]["notes"]
    # results.json is plain JSON (no NaN) and carries the verdict.
    data = json.load(open(os.path.join(path, "results.json")))
    assert data["conclusion"]["concurrency_mode"] == "serialised"
    assert data["conclusion"]["concurrency"]["thresholds"]["speed_kept"] == 0.7


def test_batched_run_says_requests_share_the_server(make_run):
    path, records = _folder(make_run, slots=64, beta=0.3)
    report, conclusion, text = _report(path)
    assert WAIT not in text
    top = [r for r in records if r["stage"] == 3]
    tps = np.percentile([r["tokens_per_s"] for r in top], 50)
    assert tps == pytest.approx(99 / (0.9 * 3.1), rel=0.01)  # 7 other streams, 30 % slower each
    assert (f"**Requests share the server:** at 8 users each answer streams at {tps:.0f} tokens/s (baseline 110) "
            "while the first token still comes in 0.10 s (0.10 s with 1 user); about 8 answers stream at once") in text
    assert conclusion["concurrency_mode"] == "shared"
    assert conclusion["concurrency"]["serialised"] is None
    assert conclusion["concurrency"]["shared"]["users"] == 8
    # 2 users: each answer keeps 77 % of the baseline speed — neither verdict.
    assert [s["concurrency_mode"] for s in report.data["steps"]] == [None, None, "shared", "shared"]


def test_flat_run_says_neither(make_run):
    path, _ = _folder(make_run, slots=64)
    report, conclusion, text = _report(path)
    assert WAIT not in text and SHARE not in text
    assert conclusion["concurrency_mode"] is None
    assert conclusion["concurrency"]["steps"] == []
    assert report.data["steps"][3]["client_split"]["requests_ahead"] == pytest.approx(7, abs=0.1)


def test_too_few_requests_say_nothing(make_run):
    # The serialised server again, but only 4 requests per step: below MIN_OK_REQUESTS.
    path, _ = _folder(make_run, max_requests=MIN_OK_REQUESTS - 1)
    _, conclusion, text = _report(path)
    assert WAIT not in text and SHARE not in text
    assert conclusion["concurrency_mode"] is None
    # ... and a baseline with too few requests: the busy steps alone do not make a verdict either.
    path, _ = _folder(make_run, steps={0: {"max_requests": 3}})
    _, conclusion, text = _report(path)
    assert WAIT not in text and conclusion["concurrency_mode"] is None


def test_think_time_users_that_rarely_overlap_are_not_serialised(make_run):
    # 4 users thinking ~60 s between 1 s requests: they rarely overlap. The first token comes later at
    # 4 users for another reason (longer prompts: 2 s prefill) — more than (4-1) × 0.5 × the baseline
    # E2E, so a rule on the nominal user count would call it serialised; the measured overlap does not.
    path, _ = _folder(make_run, users=[1, 4], think_s=60.0, step_s=600.0,
                      steps={1: {"ttft_s": 2.0, "stream_s": 0.9}})
    report, conclusion, text = _report(path)
    split = report.data["steps"][1]["client_split"]
    assert split["requests_ahead"] < 0.5
    assert report.data["steps"][1]["ttft_p50_ms"] - report.data["steps"][0]["ttft_p50_ms"] > 1.5 * 1000
    assert WAIT not in text and SHARE not in text
    assert conclusion["concurrency_mode"] is None


def test_think_time_users_that_do_collide_are_serialised(make_run):
    # 4 users thinking ~3 s on a one-at-a-time server: about one request ahead at send, and the wait
    # (~0.7 s) is below a nominal (4-1) × 0.5 × 1 s but matches the measured time left on the requests ahead.
    path, records = _folder(make_run, users=[1, 4], think_s=3.0)
    report, conclusion, text = _report(path)
    verdict = conclusion["concurrency"]["serialised"]
    assert verdict is not None and verdict["users"] == 4
    ahead, left = _brute(records, 1)
    assert verdict["requests_ahead"] == pytest.approx(ahead)
    assert verdict["ahead_left_ms"] == pytest.approx(left)
    assert 0.5 <= verdict["requests_ahead"] < 1.5
    # A request waits what the ones ahead of it still needed — less than a nominal (4-1) × 0.5 × 1 s.
    assert verdict["extra_wait_ms"] == pytest.approx(left, rel=0.05)
    assert verdict["extra_wait_ms"] < 0.5 * 3 * 1000.0
    assert "At 4 users a request waits" in text


def test_a_full_slot_pool_waits_a_few_at_a_time(make_run):
    # Two slots, eight users: requests wait for a free slot, two answers stream at once.
    path, _ = _folder(make_run, slots=2)
    _, conclusion, text = _report(path)
    assert "**Requests wait for each other:** the server answers about 2 at a time and the others wait their turn." \
        in text
    assert conclusion["concurrency"]["serialised"]["users"] == 8


def test_openai_api_names_the_setting_generally_and_compare_shows_the_verdict(make_run):
    one, _ = _folder(make_run, users=[1, 4], run={"api": "openai", "label": "one"})
    many, _ = _folder(make_run, users=[1, 4], slots=8, beta=0.3, run={"label": "many"})
    _, _, text = _report(one)
    assert "Raising the server's parallel slots (OLLAMA_NUM_PARALLEL on Ollama; if memory allows)" in text
    table = compare_runs([one, many])
    assert "requests wait for each other (serialised) at 4 users" in table
    assert "requests share the server (shared) at 4 users" in table


def test_no_ttft_no_verdict_and_no_client_split(make_run):
    # stream:false style records (no TTFT): nothing to judge, nothing claimed.
    records = [record(s, u, 1000.0 * u, start=1_790_000_000.0 + s * 100 + i * 1.0 * u, tokens=100)
               for s, u in enumerate([1, 4]) for i in range(20)]
    path = make_run(records, stage_rows([1, 4]))
    report, conclusion, text = _report(path)
    assert conclusion["concurrency_mode"] is None
    assert all(s["client_split"] is None for s in report.data["steps"])
    assert "Requests with TTFT" not in report.markdown


def test_overlap_measures_against_brute_force():
    rng = np.random.default_rng(7)
    n = 400
    start = 1_790_000_000.0 + rng.uniform(0, 60, n)
    start[10] = start[11]  # sent at the same instant: each counts the other
    e2e = rng.uniform(10, 5000, n)
    ttft = e2e * rng.uniform(0, 1, n)
    e2e[::23], ttft[::17] = np.nan, np.nan
    ahead, left, along = overlap_measures(start, e2e, ttft)
    s, e, f = start, start + e2e / 1000, start + ttft / 1000
    order = list(np.argsort(s, kind="stable"))
    for i in range(n):
        if np.isnan(e2e[i]):
            assert np.isnan(ahead[i]) and np.isnan(left[i]) and np.isnan(along[i])
            continue
        others = np.isfinite(e2e) & (np.arange(n) != i) & (s <= s[i]) & (e > s[i])
        assert ahead[i] == others.sum()
        sent_before = [j for j in order[: order.index(i)] if np.isfinite(e2e[j])]
        assert left[i] == pytest.approx(max([(e[j] - s[i]) * 1000 for j in sent_before] + [0.0]), abs=1e-3)
        if np.isnan(ttft[i]):
            assert np.isnan(along[i])
            continue
        streaming = np.isfinite(e2e) & np.isfinite(ttft) & (np.arange(n) != i)
        overlap = np.clip(np.minimum(e[streaming], e[i]) - np.maximum(f[streaming], f[i]), 0, None).sum()
        assert along[i] == pytest.approx(overlap / (e[i] - f[i]), abs=1e-5)
    assert ahead[10] >= 1 and ahead[11] >= 1


def test_the_verdict_survives_analyse_alone(make_run):
    path, _ = _folder(make_run, users=[1, 4])
    a = analyse(path)
    assert [s.concurrency["mode"] if s.concurrency else None for s in a.steps] == [None, "serialised"]
