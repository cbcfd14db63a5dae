"""Do requests wait for each other (serialised) or share the server? Measured from the records.

Two signatures, both judged per step against the baseline (the lowest step with a successful request):

- **serialised** — the server works on one request at a time (Ollama with OLLAMA_NUM_PARALLEL=1,
  llama-cpp-python's server, a slot pool that is full): a request sent while others are running waits
  until they are done — its wait before the first token grows by the time the requests ahead of it still
  need (about one baseline request per request ahead), while each answer, once it starts, still streams at
  about the baseline speed;
- **shared** — the server works on the requests together (batching, several slots): the first token
  still comes early, but each answer streams more slowly.

Contention is *measured* from the records, not taken from the nominal user count: for every request, the
requests (any outcome, any step) still in flight at the moment it was sent, and how long until they had all
finished — from the records' ``[start_time, start_time + e2e]`` intervals. Users with think time overlap
less than their number suggests; a step where requests rarely overlap is not judged at all. The overlap of
the *streaming* intervals ``[start + ttft, start + e2e]`` measures how many answers stream at once: one at
a time, or a few.

Everything here is in one place: the per-request overlap measures (:func:`overlap_measures`), the rule
(:func:`concurrency_mode`) and its thresholds (the constants below). The conclusion, the time split,
results.json and ``compare`` only read the verdicts.
"""

from __future__ import annotations

import numpy as np

from ._step_metrics import is_number

SERIALISED = "serialised"
SHARED = "shared"

MIN_OK_REQUESTS = 5  # successful requests with TTFT and tokens/s needed in the step AND in the baseline
BASELINE_MAX_AHEAD = 0.5  # the baseline must have run (nearly) alone: mean requests ahead at send at most this
MIN_AHEAD = 0.5  # a step is judged only when, on average, at least this many requests were ahead at send
WAIT_SHARE = 0.5  # serialised: mean extra TTFT ≥ this × the mean time left on the requests ahead at send
SPEED_KEPT = 0.7  # serialised: per-request tokens/s ≥ this × baseline; shared: below it
ONE_AT_A_TIME = 0.5  # fewer other answers streaming alongside than this (mean): "one at a time"

THRESHOLDS = {
    "min_ok_requests": MIN_OK_REQUESTS, "baseline_max_ahead": BASELINE_MAX_AHEAD, "min_ahead": MIN_AHEAD,
    "wait_share": WAIT_SHARE, "speed_kept": SPEED_KEPT, "one_at_a_time": ONE_AT_A_TIME,
}


def overlap_measures(start_s: np.ndarray, e2e_ms: np.ndarray, ttft_ms: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per record: (requests ahead, time left on them in ms, answers streaming alongside); ``nan`` where not
    measurable (a record without start or E2E takes no part in any of them).

    *requests ahead* = other records in flight when this one was sent (started at or before, not yet ended).
    *time left* = from sending until every record sent before it had finished (0 when none was running):
    exactly what a first-come-first-served server that answers one at a time makes it wait.
    *answers streaming alongside* = the mean number of other records streaming (between their first token and
    their end) while this one streamed, weighted by time. Vectorised over sorted copies: O(n log n).
    """
    start = np.asarray(start_s, dtype="float64")
    e2e = np.asarray(e2e_ms, dtype="float64")
    ttft = np.asarray(ttft_ms, dtype="float64")
    ahead = np.full(len(start), np.nan)
    left = np.full(len(start), np.nan)
    along = np.full(len(start), np.nan)
    valid = np.isfinite(start) & np.isfinite(e2e) & (e2e >= 0)
    if not valid.any():
        return ahead, left, along
    t0 = float(np.min(start[valid]))  # relative times keep the cumulative sums below exact
    s = start - t0
    end = s + e2e / 1000.0
    idx = np.flatnonzero(valid)
    order = idx[np.argsort(s[idx], kind="stable")]  # queries in sorted order: searchsorted runs much faster
    starts, ends = s[order], np.sort(end[valid])
    running = np.searchsorted(starts, starts, side="right") - np.searchsorted(ends, starts, side="right")
    ahead[order] = running - (end[order] > starts)  # not itself
    latest = np.maximum.accumulate(end[order])  # the latest end among the records sent so far, in start order
    before = np.concatenate(([-np.inf], latest[:-1]))
    left[order] = np.clip(before - starts, 0.0, None) * 1000.0

    streaming = valid & np.isfinite(ttft) & (ttft >= 0) & (e2e > ttft)
    if streaming.any():
        first = s + np.where(streaming, ttft, 0.0) / 1000.0
        a, b = np.sort(first[streaming]), np.sort(end[streaming])
        ca, cb = np.concatenate(([0.0], np.cumsum(a))), np.concatenate(([0.0], np.cumsum(b)))

        def busy_time(x):  # ∫ (number of records streaming) dt from the start up to each x (sorted)
            ka, kb = np.searchsorted(a, x, side="right"), np.searchsorted(b, x, side="right")
            return (x * ka - ca[ka]) - (x * kb - cb[kb])

        j = np.flatnonzero(streaming)
        by_first, by_end = j[np.argsort(first[j], kind="stable")], j[np.argsort(end[j], kind="stable")]
        at_first, at_end = np.empty(len(s)), np.empty(len(s))
        at_first[by_first] = busy_time(first[by_first])
        at_end[by_end] = busy_time(end[by_end])
        along[j] = np.round(np.clip((at_end[j] - at_first[j]) / (end[j] - first[j]) - 1.0, 0.0, None), 6)
    return ahead, left, along


def holding_at_send(start_s: np.ndarray, hold_s: np.ndarray, end_s: np.ndarray) -> np.ndarray:
    """Per record: how many *other* records held a slot when it was sent — their ``[hold, end)`` interval
    contains its send time (``hold`` = start + queue wait, where the server reports it). ``nan`` where the record has no start; records without a hold or end take no part."""
    start = np.asarray(start_s, dtype="float64")
    hold, end = np.asarray(hold_s, dtype="float64"), np.asarray(end_s, dtype="float64")
    out = np.full(len(start), np.nan)
    valid = np.isfinite(hold) & np.isfinite(end) & (end >= hold)
    query = np.isfinite(start)
    if not query.any() or not valid.any():
        return out
    holds, ends = np.sort(hold[valid]), np.sort(end[valid])
    q = start[query]
    count = np.searchsorted(holds, q, side="right") - np.searchsorted(ends, q, side="right")
    own = valid[query] & (hold[query] <= q) & (end[query] > q)
    out[query] = count - own
    return out


def _enough(split: dict | None, metrics: dict) -> bool:
    return bool(split) and split.get("n_with_rate", 0) >= MIN_OK_REQUESTS \
        and all(is_number(metrics.get(k)) for k in ("ttft_p50_ms", "tokens_per_s_request", "p50_ms"))


def concurrency_mode(step, baseline) -> dict | None:
    """The step's verdict against the baseline: ``{"mode": "serialised" | "shared", ...numbers}`` or None.

    None (say nothing) unless all of these hold:
      - the step and the baseline each have ≥ MIN_OK_REQUESTS successful requests with TTFT and tokens/s;
      - the baseline ran (nearly) alone: its mean requests ahead at send ≤ BASELINE_MAX_AHEAD;
      - the step had contention: its mean requests ahead at send (``ahead``) ≥ MIN_AHEAD.
    Then, over the step's successful requests, with ``wait`` = mean TTFT − baseline TTFT p50 (the extra wait
    before the first token), ``left`` = mean time left on the requests ahead at send (what a server that
    answers one at a time makes a request wait) and ``speed`` = tokens/s p50 / baseline tokens/s p50:
      - **serialised** when wait ≥ WAIT_SHARE × left and speed ≥ SPEED_KEPT: requests wait for the ones
        ahead of them (at least half of the one-at-a-time wait — a full slot pool of a few slots waits
        less than that one-at-a-time wait but still more than half of it), and answers still stream at
        ≥ 70 % of the baseline speed;
      - **shared** when wait < WAIT_SHARE × left and speed < SPEED_KEPT: the first token still comes early,
        but answers stream slower;
      - otherwise (waits *and* slower streams, or neither) None.
    """
    if baseline is None or step is baseline:
        return None
    split, bsplit = step.client_split, baseline.client_split
    m, bm = step.metrics, baseline.metrics
    if not (_enough(split, m) and _enough(bsplit, bm)):
        return None
    ahead, base_ahead = split.get("requests_ahead"), bsplit.get("requests_ahead")
    left, ttft_mean = split.get("ahead_left_ms"), split.get("ttft_mean_ms")
    if not all(is_number(v) for v in (ahead, base_ahead, left, ttft_mean)):
        return None
    if base_ahead > BASELINE_MAX_AHEAD or ahead < MIN_AHEAD:
        return None
    base_tps = bm["tokens_per_s_request"]
    if base_tps <= 0:
        return None
    wait = ttft_mean - bm["ttft_p50_ms"]
    bound = WAIT_SHARE * left
    speed = m["tokens_per_s_request"] / base_tps
    if wait >= bound and speed >= SPEED_KEPT:
        mode = SERIALISED
    elif wait < bound and speed < SPEED_KEPT:
        mode = SHARED
    else:
        return None
    along = split.get("streams_alongside")
    return {
        "mode": mode, "users": step.users if is_number(step.users) else None,
        "rate": step.rate if is_number(step.rate) else None,
        "requests_ahead": ahead, "ahead_left_ms": left, "streams_alongside": along if is_number(along) else None,
        "ttft_p50_ms": m["ttft_p50_ms"], "ttft_mean_ms": ttft_mean, "baseline_ttft_p50_ms": bm["ttft_p50_ms"],
        "extra_wait_ms": wait, "wait_bound_ms": bound,
        "tokens_per_s_request": m["tokens_per_s_request"], "baseline_tokens_per_s_request": base_tps,
        "speed_ratio": speed, "tokens_per_s_total": m.get("tokens_per_s_total"),
        "holding_at_send": split.get("holding_at_send") if is_number(split.get("holding_at_send")) else None,
        "waited": split.get("waited"), "waited_from": split.get("waited_from"), "n": split.get("n"),
        "ttft_p95_ms": m.get("ttft_p95_ms"), "baseline_ttft_p95_ms": bm.get("ttft_p95_ms"),
        "baseline_tokens_per_s_total": bm.get("tokens_per_s_total"),
        "baseline_users": baseline.users if is_number(baseline.users) else None,
    }


def at_a_time(verdict: dict) -> int | None:
    """How many answers the server streamed at once (1 = one at a time), from the measured overlap."""
    along = verdict.get("streams_alongside")
    if not is_number(along):
        return None
    return 1 if along < ONE_AT_A_TIME else int(round(1 + along))


def run_mode(steps) -> tuple[str | None, dict]:
    """The run's mode and, per mode, its steps with that verdict (in order).

    "serialised" when any step was serialised, else "shared" when any step was shared, else None.
    """
    by_mode = {mode: [s for s in steps if s.concurrency and s.concurrency["mode"] == mode]
               for mode in (SERIALISED, SHARED)}
    by_mode = {mode: found for mode, found in by_mode.items() if found}
    mode = SERIALISED if SERIALISED in by_mode else SHARED if SHARED in by_mode else None
    return mode, by_mode
