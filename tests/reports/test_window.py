"""The window arithmetic on hand-made records: tokens by arrival, requests by completion, stages by span."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ollama_locust.reports import analyse
from ollama_locust.reports._window import arrivals, assign_stages, count_in, parse_cell
from ollama_locust.scenarios import request_metrics
from tests.reports.conftest import T0, record, stage_rows


def _arr(*rows):
    """rows of (start, ttft_ms, e2e_ms, tokens, cell)."""
    start, ttft, e2e, tokens, cells = zip(*rows)
    f = lambda v: np.array([math.nan if x is None else x for x in v], dtype=float)  # noqa: E731
    return arrivals(f(start), f(ttft), f(e2e), f(tokens), np.array(cells, dtype=object))


def test_a_request_straddling_two_steps_is_split_by_its_buckets():
    # 10 chunks in each of 4 buckets of 100 ms, server said 80 tokens: 20 tokens per bucket.
    a = _arr((100.0, 0.0, 400.0, 80, "100:10,10,10,10"))
    assert a.in_window(100.0, 100.2) == pytest.approx(40.0)
    assert a.in_window(100.2, 101.0) == pytest.approx(40.0)
    # a window edge in the middle of a bucket splits it linearly
    assert a.in_window(100.0, 100.25) == pytest.approx(50.0)
    assert a.in_window(100.0, 100.25) + a.in_window(100.25, 200.0) == pytest.approx(80.0)


def test_buckets_are_clipped_to_first_token_and_last_byte():
    # first token at 150 ms, last byte at 220 ms: bucket 1 is [150, 200), bucket 2 is [200, 220)
    a = _arr((0.0, 150.0, 220.0, 20, "100:0,10,10"))
    assert a.in_window(0.0, 0.2) == pytest.approx(10.0)
    assert a.in_window(0.2, 0.21) == pytest.approx(5.0)


def test_a_single_token_counts_once_where_it_arrived():
    a = _arr((50.0, 30.0, 30.0, 1, "100:1"))
    assert a.in_window(50.0, 50.03) == 0.0  # arrived at 50.030: the window is [lo, hi)
    assert a.in_window(50.03, 51.0) == pytest.approx(1.0)
    assert a.in_window(0.0, 100.0) == pytest.approx(1.0)


def test_a_request_outliving_the_run_counts_only_what_arrived_before_the_end():
    # 10 s reply at 10 tokens/s from t=95; the run ends at 100: 5 s of it is inside
    cell = request_metrics.token_arrivals([1] * 100)  # one chunk per 100 ms
    assert cell == "100:" + ",".join(["1"] * 100)
    a = _arr((95.0, 0.0, 10000.0, 100, cell))
    assert a.in_window(90.0, 100.0) == pytest.approx(50.0)
    assert count_in(np.array([105.0]), 90.0, 100.0) == 0  # it completes after the run: in no window
    assert count_in(np.array([90.0, 95.0, 100.0]), 90.0, 100.0) == 2  # [lo, hi)


def test_no_arrivals_spreads_evenly_and_stream_false_lands_at_the_end():
    a = _arr((0.0, 1000.0, 3000.0, 100, ""), (0.0, None, 3000.0, 50, None))
    assert a.estimated == 2
    assert a.in_window(0.0, 2.0) == pytest.approx(50.0)  # half of the streamed one, none of the other
    assert a.in_window(2.0, 4.0) == pytest.approx(100.0)


def test_long_replies_get_wider_buckets():
    cell = request_metrics.token_arrivals([1] * 1000)
    width, counts = parse_cell(cell)
    assert width == 400 and len(counts) == 250 and sum(counts) == 1000
    assert parse_cell("x:1,2") is None and parse_cell("100:") is None and parse_cell(None) is None


def test_stage_lookup_ends_at_the_last_stage_end():
    starts, ends = np.array([0.0, 10.0]), np.array([10.0, 20.0])
    pos = assign_stages(np.array([-1.0, 0.0, 9.99, 10.0, 19.9, 20.0, 25.0, math.nan]), starts, ends)
    assert pos.tolist() == [-1, 0, 0, 1, 1, -2, -2, -1]
    # no end recorded for the last stage: it runs on
    assert assign_stages(np.array([25.0]), starts, np.array([10.0, math.nan])).tolist() == [1]


def test_report_windows_restamps_and_drain(make_run):
    # stage 0 [T0, T0+10), stage 1 [T0+10, T0+20); 2 s requests, one chunk per 100 ms, 20 tokens each
    cell = request_metrics.token_arrivals([1] * 20)
    recs = []
    for i in range(30):  # stage 0: starts every 1/3 s, all stamped stage 0
        recs.append(record(0, 1, 2000.0, ttft_ms=0.0, tokens=20, start=T0 + i / 3, token_arrivals=cell))
    for i in range(30):  # stage 1, but the last 6 start after the end: stamped 1 by the load side
        recs.append(record(1, 2, 2000.0, ttft_ms=0.0, tokens=20, start=T0 + 10 + i / 2.5, token_arrivals=cell))
    path = make_run(recs, stage_rows([1, 2], duration=10.0))
    a = analyse(path)
    s0, s1 = a.steps
    assert s0.metrics["requests"] == 30 and s1.metrics["requests"] == 25
    assert a.drain == {"requests": 5, "outcomes": {"ok": 5}}
    # tokens arrived in [T0, T0+10): requests starting up to T0+8 fully, the rest partly
    starts0 = T0 + np.arange(30) / 3
    inside0 = np.clip(np.minimum(starts0 + 2, T0 + 10) - starts0, 0, None) * 10
    assert s0.metrics["tokens_per_s_total"] == pytest.approx(inside0.sum() / 10.0)
    ends = np.concatenate([starts0, T0 + 10 + np.arange(30) / 2.5]) + 2
    assert s0.metrics["completed"] == ((ends >= T0) & (ends < T0 + 10)).sum()
    assert s1.metrics["completed"] == ((ends >= T0 + 10) & (ends < T0 + 20)).sum()
    assert s1.metrics["req_per_s"] == pytest.approx(s1.metrics["completed"] / 10.0)
    # stage 1's window gets stage 0's tail, not its drain's tokens (they arrive after T0+20)
    inside1 = (np.clip(np.minimum(ends - 2 + 2, T0 + 20) - np.maximum(ends - 2, T0 + 10), 0, None) * 10).sum()
    assert s1.metrics["tokens_per_s_total"] == pytest.approx(inside1 / 10.0)


def test_the_live_tab_and_the_report_count_tokens_by_one_rule():
    """ollama_locust.stats.token_spans (the live tab, record by record) and reports._window.arrivals (the
    report, vectorised) credit the same tokens to any window."""
    import random

    import numpy as np

    from ollama_locust import stats
    from ollama_locust.reports._window import arrivals

    rng = random.Random(7)
    rows = []
    for _ in range(300):
        ttft, e2e = rng.uniform(5, 400), rng.uniform(500, 4000)
        buckets = int(e2e // 100) + 1
        cell = rng.choice([None, "100:" + ",".join(str(rng.randint(0, 3)) for _ in range(buckets)), "bad", "100:0,0"])
        rows.append((1000.0 + rng.uniform(0, 20), ttft if rng.random() > 0.1 else float("nan"), e2e,
                     float(rng.randint(0, 300)), cell))
    arrived = arrivals(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), np.array([r[2] for r in rows]),
                       np.array([r[3] for r in rows]), np.array([r[4] for r in rows], dtype=object))
    for lo, hi in ((1000.0, 1005.0), (1003.3, 1011.7), (1010.0, 1030.0)):
        live = sum(stats.tokens_between(stats.token_spans(*r), lo, hi) for r in rows)
        assert abs(arrived.in_window(lo, hi) - live) < 1e-6 * max(1.0, live)
