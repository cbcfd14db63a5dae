"""The conclusion, written from the numbers: baseline, degradation, failure point, capacity, advice."""

from __future__ import annotations

import math
import os

from ollama_locust import contract

from ._analysis import CHANGE_SLO, Analysis, enough, excluded
from ._concurrency import MIN_OK_REQUESTS, SERIALISED, SHARED, THRESHOLDS, at_a_time, run_mode
from ._step_metrics import SIM_SETTINGS, format_seconds, format_settings, format_value, is_number
from ._steps import Step

QUEUE_DOMINATES = 0.5  # queue wait share of a typical request above which NUM_PARALLEL is the lever
COLD_START_MS = 1000.0  # warm-up load_duration above which OLLAMA_KEEP_ALIVE is advised
COLLAPSE = 0.5  # per-request tokens/s at or below this share of the baseline ...
FLAT_TOTAL = 1.25  # ... while total tokens/s grew less than this factor: the hardware is saturated


def users_text(step: Step) -> str:
    if step.is_rate:
        return f"{step.rate:g} req/s"
    if not is_number(step.users):
        return "the whole run"
    n = int(step.users)
    return f"{n} user" if n == 1 else f"{n} users"


def _count(value) -> int:
    return int(value) if is_number(value) else 0


CLOCK_UNCERTAINTY_FLOOR_MS = 50.0  # without a settle window, a worker's clock is named past this uncertainty


def _pct_change(new: float, old: float) -> str:
    if not (is_number(new) and is_number(old)) or old == 0:
        return ""
    change = (new - old) / old * 100
    return f"{change:+.0f} %".replace("-", "−")


def queue_share(step: Step) -> float | None:
    split = step.time_split
    if not split:
        return None
    total = sum(split[k] for k in ("queue_wait_ms", "load_ms", "prompt_eval_ms", "eval_ms", "outside_ms"))
    return split["queue_wait_ms"] / total if total > 0 else None


def _num_parallel(run: dict):
    sim = run.get("simulator") if isinstance(run.get("simulator"), dict) else {}
    return sim.get("num_parallel")


def _rate(value: float) -> str:
    """tokens/s in a sentence: whole numbers from 10 up."""
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _lever(run: dict) -> str:
    np_now = _num_parallel(run)
    if run.get("api") in ("openai", "gateway"):
        return ("Raising the server's parallel slots (OLLAMA_NUM_PARALLEL on Ollama; if memory allows) or fewer "
                "concurrent users shortens the wait.")
    now = f"now {np_now}; " if np_now is not None else ""
    return f"Raising OLLAMA_NUM_PARALLEL ({now}if memory allows) or fewer concurrent users shortens the wait."


def _verdict_users(v: dict) -> str:
    if is_number(v.get("rate")):
        return f"{v['rate']:g} req/s"
    return f"{int(v['users'])} users" if is_number(v.get("users")) else "the busiest step"


def serialised_sentence(v: dict, base: Step, run: dict) -> str:
    k = at_a_time(v)
    how = " the server answers one at a time." if k == 1 else \
        f" the server answers about {k} at a time and the others wait their turn." if k else ""
    users = _verdict_users(v)
    return (f"**Requests wait for each other:**{how} At {users} a request waits "
            f"{format_seconds(v['ttft_p50_ms'])} before its first token ({format_seconds(v['baseline_ttft_p50_ms'])} "
            f"with {users_text(base)}), with on average {_ahead_text(v)} when it "
            f"was sent, while each answer still streams at {_rate(v['tokens_per_s_request'])} tokens/s (baseline "
            f"{_rate(v['baseline_tokens_per_s_request'])}). {_lever(run)}")


def _ahead_text(v: dict) -> str:
    """The requests ahead at send: 'in the server', split into slot holders and queued where the server says."""
    ahead, holding = v["requests_ahead"], v.get("holding_at_send")
    if is_number(holding):
        holding = min(holding, ahead)
        return (f"{ahead:.1f} other requests in the server ({holding:.1f} holding a slot, "
                f"{ahead - holding:.1f} queued for one, from the server's queue wait)")
    return f"{ahead:.1f} other requests in the server (sent, not yet answered)"


def _waits_text(v: dict) -> str:
    """Whether anybody waits to start, from the queue wait (or the TTFT) — never assumed."""
    waited, n, source = v.get("waited"), v.get("n"), v.get("waited_from")
    if isinstance(waited, int) and n:
        if waited == 0:
            return f"nobody waits to start (no {source} above 0.1 s)"
        return f"{waited} of {n} requests waited over 0.1 s to start ({source})"
    return "the wait before the first token stays short"


def shared_sentence(v: dict, base: Step) -> str:
    users = _verdict_users(v)
    along = v.get("streams_alongside")
    together = f"; about {1 + along:.0f} answers stream at once" if is_number(along) and along >= 0.5 else ""
    total, btotal = v.get("tokens_per_s_total"), v.get("baseline_tokens_per_s_total")
    sum_text = f", {_rate(total)} tokens/s in total ({total / btotal:.1f}× baseline)" \
        if is_number(total) and is_number(btotal) and btotal > 0 else ""
    return (f"**Requests share the server:** at {users} each answer streams at "
            f"{_rate(v['tokens_per_s_request'])} tokens/s (baseline {_rate(v['baseline_tokens_per_s_request'])}) "
            f"while the first token still comes in {format_seconds(v['ttft_p50_ms'])} "
            f"({format_seconds(v['baseline_ttft_p50_ms'])} with {users_text(base)}){together}{sum_text}. "
            f"The server works on the requests together, so each answer takes longer; {_waits_text(v)}.")


def _busiest(steps: list[Step]) -> Step:
    """The step with the most users among those with enough requests and that held their users (else any)."""
    good = [s for s in steps if enough(s) and not excluded(s)] or steps
    return max(good, key=lambda s: s.load if is_number(s.load) else -1)


def concurrency_finding(a: Analysis) -> tuple[list[str], dict]:
    """The paragraphs on serialisation/sharing and results.json's ``concurrency_mode`` / ``concurrency``.

    The busiest step with a verdict is named for each mode; the run's mode is "serialised" when any step
    was serialised, else "shared" when any step was shared, else None (also when there was too little
    data to tell: then nothing is said).
    """
    text: list[str] = []
    mode, by_mode = run_mode(a.steps)
    found = {m: _busiest(steps).concurrency for m, steps in by_mode.items()}
    if SERIALISED in found:
        text.append(serialised_sentence(found[SERIALISED], a.baseline, a.run))
    if SHARED in found:
        text.append(shared_sentence(found[SHARED], a.baseline))
    if not found and a.baseline is not None and len(a.steps) > 1:
        split = a.baseline.client_split or {}
        n = split.get("n_with_rate", 0)
        if n < MIN_OK_REQUESTS:
            text.append(f"**Whether requests wait for each other** cannot be judged: the baseline has n = {n} "
                        f"successful requests with a TTFT and tokens/s (need {MIN_OK_REQUESTS}; hold steps longer: "
                        "--step-time 60s).")
    info = {"mode": mode, SERIALISED: found.get(SERIALISED), SHARED: found.get(SHARED),
            "steps": [{"stage": s.stage, "users": s.users if is_number(s.users) else None,
                       "mode": s.concurrency["mode"]} for s in a.steps if s.concurrency],
            "thresholds": THRESHOLDS}
    return text, info


def generator_sentences(a: Analysis) -> list[str]:
    """The load generator's own limits (issue 17): which steps it could not keep up in, and the fix; and
    the workers whose clock offset is too uncertain for the stage windows."""
    text = []
    saturated = [s for s in a.steps if s.generator and s.generator["reasons"]]
    if saturated:
        where = ", ".join(users_text(s) for s in saturated)
        why = saturated[-1].generator["reasons"]
        text.append(f"**The load generator could not keep up** at {where} ({'; '.join(why)}): the latencies of "
                    "those steps include the load process's own lateness, so they are left out of the verdicts. "
                    "Spread the users over more processes (`--workers N`, or more machines) and run again.")
    settle_ms = max(1000.0 * float(a.run.get("settle_s") or 0.0), CLOCK_UNCERTAINTY_FLOOR_MS)
    unsure = sorted(worker for worker, clock in (a.run.get("clock_offsets") or {}).items()
                    if isinstance(clock, dict) and is_number(clock.get("uncertainty_ms"))
                    and clock["uncertainty_ms"] > settle_ms)
    if unsure:
        text.append(f"**Worker clocks:** the offset of {', '.join(unsure)} is known only to ±{settle_ms:.0f} ms or worse: "
                    "requests near a step change may sit in the neighbouring step (give the steps a --settle window).")
    return text


CONTEXT_ERROR = r"context (?:size|length|window)|exceeds? the (?:available )?context|context_length_exceeded"
LENGTH_SHARE = 0.9  # share of ok answers ended by the length limit, with no --num-predict, that names the trap


def context_limit_sentence(a: Analysis) -> str | None:
    """The trap of a model that never stops: with no ``--num-predict`` its answers run to the context size
    (done_reason ``length`` on nearly every ok request) and the next turns fail with "exceeds the
    available context size". None when the records show neither."""
    frame = a.folder.requests
    if frame is None or "outcome" not in frame or not len(frame):
        return None
    options = a.run.get("options") if isinstance(a.run.get("options"), dict) else {}
    limited = bool(options.get("num_predict"))
    outcome = frame["outcome"].astype(str)
    errors = frame["error"].astype(object).fillna("").astype(str) if "error" in frame else outcome.map(lambda _: "")
    context_errors = int(((outcome != contract.OK) & errors.str.contains(CONTEXT_ERROR, case=False, regex=True)).sum())
    ok = outcome == contract.OK
    reasons = frame["done_reason"].astype(object).fillna("").astype(str) if "done_reason" in frame else None
    cut = int((ok & (reasons == "length")).sum()) if reasons is not None else 0
    n_ok = int(ok.sum())
    ran_out = not limited and n_ok and cut >= LENGTH_SHARE * n_ok
    if not ran_out and not context_errors:
        return None
    parts = []
    if ran_out:
        parts.append(f"{cut} of {n_ok} answers ended at the length limit with no --num-predict")
    if context_errors:
        parts.append(f"{context_errors} requests failed because the conversation exceeded the context size")
    advice = ("set --num-predict or a stop" if not limited else
              "shorten the conversations or give the server a larger context (-c / num_ctx)")
    return f"**Answers hit the context size:** {'; '.join(parts)}: {advice}."


def conclude(a: Analysis) -> dict:
    """{"text": [markdown paragraphs/bullets], "recommendations": [...], and the key figures}."""
    run, steps, base, slo = a.run, a.steps, a.baseline, a.slo
    text: list[str] = []
    recs: list[str] = []
    out: dict = {"baseline_users": None, "failure_point_users": None, "largest_users_meeting_slo": None,
                 "concurrency_mode": None, "concurrency": None}

    sim = run.get("simulator")
    engine = sim.get("engine") if isinstance(sim, dict) else None
    if sim and engine not in (None, "sim"):
        model = os.path.basename(str(sim.get("model_file") or "")) or "a model file"
        detail = format_settings(sim, ("num_parallel", "max_queue"))
        text.append(f"**The target was the embedded simulator with a real {engine} engine** ({model}"
                    f"{', ' + detail if detail else ''}): the tokens and their timing are real inference on "
                    "this machine, the API and the queueing in front of it are the simulator's model of Ollama.")
    elif sim:
        detail = format_settings(sim, SIM_SETTINGS) if isinstance(sim, dict) else ""
        text.append(f"**The target was the embedded simulator**{f' ({detail})' if detail else ''}: these numbers "
                    "describe the simulator's model of Ollama, not a real server.")
    if run.get("interrupted"):
        planned = run.get("steps") or []
        ran = [s.users_label for s in steps if is_number(s.load)]
        plan = f" (planned {', '.join(map(str, planned))} users; ran {', '.join(map(str, ran))})" if planned else ""
        if a.rate_run:
            plan = f" (ran {', '.join(ran)} req/s)"
        text.append(f"**The run was interrupted** before its plan ended{plan}: the last step is partial.")
    stopped = run.get("stopped_on_failure")
    options = run.get("options") if isinstance(run.get("options"), dict) else {}
    if isinstance(stopped, dict) and options.get("stop_on_failure", True):
        step = next((s for s in steps if s.stage == stopped.get("stage")), None)
        where = f" at {users_text(step)}" if step is not None and is_number(step.users) else f" (stage {stopped.get('stage')})"
        table = a.verdicts.get(step.stage) if step is not None else None
        after = (f"; over all of the step's requests (the table): {table}" if table else
                 "; over all of the step's requests (the table) it meets the thresholds" if table is None and step
                 else "")
        text.append(f"**Stepping stopped on failure**{where} (--stop-on-failure): when it stopped, the requests "
                    f"finished so far gave {stopped.get('reason')}{after}; the higher user counts of the plan were "
                    "not run.")
    missing = run.get("missing_workers") or []
    if missing:
        text.append(f"**Workers stopped reporting** during the run ({', '.join(map(str, missing))}): requests they "
                    "sent after that are missing, so later steps undercount.")
    text.extend(generator_sentences(a))

    if base is None:
        text.append("No step had a successful request: there is no baseline, and no latency to judge. "
                    "Check the target and model (the error breakdown above says what failed).")
        out["text"], out["recommendations"] = text, recs
        return out

    bm = base.metrics
    out["baseline_users"] = base.users if is_number(base.users) and not base.is_rate else None
    tok = bm.get("tokens_per_s_request")
    tok_text = f", {format_value('tok/s', tok)} tokens/s per request" if is_number(tok) else ""
    ttft = bm.get("ttft_p50_ms")
    ttft_text = f", TTFT p50 {format_seconds(ttft)}" if is_number(ttft) else ""
    text.append(f"**Baseline ({users_text(base)}):** p50 {format_value('ms', bm.get('p50_ms'))}, "
                f"p95 {format_value('ms', bm.get('p95_ms'))}{ttft_text}{tok_text}, "
                f"success {format_value('ratio', bm.get('success_rate'))}.")

    lines = []
    for step in steps:
        if step is base or not step.metrics.get("requests"):
            continue
        m = step.metrics
        parts = []
        if is_number(m.get("p95_ms")) and is_number(bm.get("p95_ms")) and bm["p95_ms"] > 0:
            if enough(step) and enough(base):
                parts.append(f"p95 {format_seconds(m['p95_ms'])} ({m['p95_ms'] / bm['p95_ms']:.1f}× baseline)")
            else:
                small = min(_count(step.metrics.get("n")), _count(bm.get("n")))
                parts.append(f"p95 {format_seconds(m['p95_ms'])}* (n = {small}: too few requests to compare)")
        elif m.get("success_rate") == 0:
            parts.append("no successful request")
        if is_number(m.get("tokens_per_s_request")) and is_number(tok):
            parts.append(f"{format_value('tok/s', m['tokens_per_s_request'])} tokens/s per request "
                         f"({_pct_change(m['tokens_per_s_request'], tok)})")
        total, btotal = m.get("tokens_per_s_total"), bm.get("tokens_per_s_total")
        if is_number(total) and is_number(btotal) and btotal > 0:
            parts.append(f"{format_value('tok/s', total)} tokens/s in total ({total / btotal:.1f}× baseline)")
        parts.append(f"success {format_value('ratio', m.get('success_rate'))}")
        lines.append(f"- {users_text(step)}: " + ", ".join(parts))
    if lines:
        text.append("**Degradation per step:**\n" + "\n".join(lines))
    finding, info = concurrency_finding(a)
    text.extend(finding)
    context = context_limit_sentence(a)
    if context:
        text.append(context)
    out["concurrency_mode"], out["concurrency"] = info["mode"], info

    # Failure point and capacity.
    rule = slo.rule
    if slo.default:
        rule += f"; the default objective for {'streamed' if slo.ttft_p95_ms is not None else 'non-streamed'} replies, {CHANGE_SLO}"
    failing = next((s for s in steps if a.verdicts.get(s.stage)), None)
    before = steps[: steps.index(failing)] if failing else steps
    passing = [s for s in before if a.verdicts.get(s.stage) is None and s.metrics.get("requests")]
    best = max(passing, key=lambda s: s.load if is_number(s.load) else -1) if passing else None
    left_out = [s for s in steps if excluded(s)]
    if failing:
        out["failure_point_users"] = failing.users if is_number(failing.users) and not failing.is_rate else None
        text.append(f"**Failure point:** {users_text(failing)} ({a.verdicts[failing.stage]}).")
    else:
        text.append(f"**No step failed** the thresholds ({rule}).")
    only = "" if slo.latency_rule else \
        " — judged on success rate only: no latency objective (pass --slo-ttft-p95 MS or --slo-p95 MS)"
    if left_out:
        only += "; not judged: " + ", ".join(f"{users_text(s)} ({excluded(s)})" for s in left_out)
    if best is not None:
        out["largest_users_meeting_slo"] = best.users if is_number(best.users) and not best.is_rate else None
        caveat = ""
        if slo.latency_rule and not enough(best):
            caveat = (f"; its latency was not judged: n = {_count(best.metrics.get('n'))}, too few requests "
                      "(hold steps longer: --step-time 60s)")
        what = "rate" if a.rate_run else "user count"
        text.append(f"**Largest {what} meeting the SLO** ({rule}): {users_text(best)}{caveat}{only}.")
    else:
        text.append(f"**No step met the SLO** ({rule}){only}.")
    text.extend(invalid_sentences(a))
    if a.rate_run:
        rate_text, rate_recs = rate_findings(a, best, out)
        text.extend(rate_text)
        recs.extend(rate_recs)

    # Recommendations.
    top = _busiest([s for s in steps if s.metrics.get("requests")] or steps)
    if failing and best is not None and is_number(best.users) and not a.rate_run:
        flight = (best.client_split or {}).get("in_flight_p95")
        if is_number(flight):
            limit = max(1, int(flight))
            recs.append(f"Rate-limit the gateway at {limit} concurrent request{'s' if limit != 1 else ''} (the in-flight p95 measured at "
                        f"{users_text(best)}, the largest step that met the SLO); queue or refuse the rest rather "
                        "than letting everyone slow down.")
        else:
            recs.append(f"Rate-limit the gateway at no more than {int(best.users)} concurrent requests (the user "
                        "count of the largest step that met the SLO; its in-flight count was not measured); queue "
                        "or refuse the rest rather than letting everyone slow down.")
    if best is None:
        bp95, brate = bm.get("p95_ms"), bm.get("success_rate")
        bttft = bm.get("ttft_p95_ms")
        if slo.p95_ms is not None and is_number(bp95) and bp95 > slo.p95_ms:
            recs.append(f"Even {users_text(base)} is slower than the SLO (p95 {format_seconds(bp95)}): use a "
                        "smaller model or faster hardware (a GPU).")
        elif slo.ttft_p95_ms is not None and is_number(bttft) and bttft > slo.ttft_p95_ms:
            recs.append(f"Even {users_text(base)} is slower than the SLO (TTFT p95 {format_seconds(bttft)}): use a "
                        "smaller model, shorter prompts or faster hardware (a GPU).")
        elif is_number(brate) and brate < slo.min_success:
            recs.append(f"Even {users_text(base)} fails {format_value('ratio', 1 - brate)} of its requests: fix "
                        "those failures first (see the error breakdown), then test again.")
    tm, ttop = top.metrics.get("tokens_per_s_request"), top.metrics.get("tokens_per_s_total")
    saturated = (top is not base and is_number(tm) and is_number(tok) and tm <= COLLAPSE * tok
                 and is_number(ttop) and is_number(bm.get("tokens_per_s_total"))
                 and ttop < FLAT_TOTAL * bm["tokens_per_s_total"])
    share_step = failing if failing and queue_share(failing) is not None else top
    share = queue_share(share_step)
    if saturated:
        recs.append(f"The hardware is saturated: at {users_text(top)} each request generates "
                    f"{format_value('tok/s', tm)} tokens/s ({_pct_change(tm, tok)} vs baseline) while the total "
                    f"stays at {format_value('tok/s', ttop)} tokens/s — more parallelism will not help; use a "
                    "smaller model or a GPU.")
    elif share is not None and share >= QUEUE_DOMINATES:
        np_now = _num_parallel(run)
        now = f" (now {np_now})" if np_now is not None else ""
        recs.append(f"Raise OLLAMA_NUM_PARALLEL{now}: at {users_text(share_step)}, {share * 100:.0f} % of a typical "
                    "request's time is queueing for a free slot. Each slot costs KV-cache memory (num_ctx × "
                    "NUM_PARALLEL); re-run with the new value and compare.")
    warm = run.get("warmup") if isinstance(run.get("warmup"), dict) else {}
    if is_number(warm.get("load_ms")) and warm["load_ms"] >= COLD_START_MS:
        recs.append(f"Cold start of {format_seconds(warm['load_ms'])} (the warm-up request's model load): set "
                    "OLLAMA_KEEP_ALIVE (e.g. 24h, or -1) so the model stays loaded between users.")
    rejected = sum(s.outcomes.get(contract.REJECTED, 0) for s in steps)
    if rejected:
        recs.append(f"{rejected} requests were rejected (429/503 'busy'): Ollama's scheduler queue "
                    "(OLLAMA_MAX_QUEUE, during a model load) or the gateway refused them; clients should retry "
                    "with back-off.")
    timeouts = sum(s.outcomes.get(contract.TIMEOUT, 0) for s in steps)
    if timeouts:
        recs.append(f"{timeouts} requests timed out waiting: the queue grew longer than the clients' patience; "
                    "limit concurrency before the server rather than after it.")
    if not failing and not recs:
        recs.append(f"The target carried the highest step tested ({users_text(top)}) within the thresholds: "
                    "test higher user counts to find its limit.")
    if recs:
        text.append("**Recommendation:**\n" + "\n".join(f"- {r}" for r in recs))
    out["text"], out["recommendations"] = text, recs
    return out


def _nginx_rate(rate: float) -> str:
    """A rate as nginx's limit_req_zone takes it: whole requests per second, else per minute."""
    return f"{rate:g}r/s" if rate >= 1 and float(rate).is_integer() else f"{max(1, round(rate * 60))}r/m"


def rate_findings(a: Analysis, best: Step | None, out: dict) -> tuple[list[str], list[str]]:
    """A rate run's findings: the rate at which the queue starts to grow without bound, the arrivals the
    generator dropped, and the gateway rate limit (requests/s and a burst size) that follows."""
    text, recs = [], []
    rates = [s for s in a.steps if s.is_rate and s.metrics.get("requests")]
    # a step with dropped arrivals still shows its queue (it grew to --max-in-flight); a saturated generator does not
    growing = next((s for s in rates if s.queue_trend and s.queue_trend["growing"]
                    and not (s.generator and s.generator["reasons"])), None)
    out["largest_rate_meeting_slo"] = best.rate if best is not None and best.is_rate else None
    failing = next((s for s in rates if a.verdicts.get(s.stage)), None)
    out["failure_point_rate"] = failing.rate if failing is not None else None
    out["queue_growth_rate"] = growing.rate if growing is not None else None
    out["rate_limit"] = None
    if growing is not None:
        trend, m = growing.queue_trend, growing.metrics
        first, _, last = trend["thirds_ms"]
        text.append(f"**The queue grows without bound from {users_text(growing)}:** within that step the {trend['source']} "
                    f"rose third over third from {format_seconds(first)} to {format_seconds(last)}, while the server "
                    f"completed {format_value('req/s', m.get('req_per_s'))} of {format_value('req/s', m.get('achieved_rate'))} "
                    "req/s sent: requests arrive faster than it answers, so every later visitor waits longer, "
                    "however long the step lasts.")
    elif rates:
        text.append(f"**The queue stayed bounded** at every rate tested (up to {users_text(rates[-1])}): no step's "
                    "wait rose third over third while the server fell behind; test higher rates to find where it grows.")
    dropped = [(s, s.outcomes.get(contract.DROPPED, 0)) for s in rates if s.outcomes.get(contract.DROPPED, 0)]
    if dropped:
        limit = (a.run.get("options") or {}).get("max_in_flight") if isinstance(a.run.get("options"), dict) else None
        where = ", ".join(f"{n} at {users_text(s)}" for s, n in dropped)
        text.append(f"**The generator dropped arrivals** ({where}): --max-in-flight"
                    f"{f' {limit}' if limit else ''} requests were already running, so those were never sent — the "
                    "server was offered less than the step's rate (Achieved); raise --max-in-flight to offer it all.")
    limit_step = best
    if limit_step is not None and growing is not None and limit_step.rate >= growing.rate:
        below = [s for s in rates if s.rate < growing.rate and a.verdicts.get(s.stage) is None]
        limit_step = max(below, key=lambda s: s.rate) if below else None
    if limit_step is not None and limit_step.is_rate:
        flight = limit_step.metrics.get("in_flight_p95")
        burst = max(1, math.ceil(flight)) if is_number(flight) else 1
        rate = limit_step.rate
        out["rate_limit"] = {"rate_per_s": rate, "burst": burst, "from_stage": limit_step.stage}
        why = "the largest rate tested that met the SLO" + (" with a bounded queue" if growing is not None else "")
        recs.append(f"Rate-limit the gateway at {rate:g} requests/s with a burst of {burst} ({why}; the burst is "
                    f"the in-flight p95 measured there), and refuse or queue the rest: nginx "
                    f"`limit_req_zone $server_name zone=llm:1m rate={_nginx_rate(rate)};` and "
                    f"`limit_req zone=llm burst={burst};`.")
    elif rates:
        recs.append("No rate tested met the SLO with a bounded queue: test lower rates (--rates) to find one the "
                    "server carries, or make the server faster (a smaller model, more OLLAMA_NUM_PARALLEL slots).")
    return text, recs


def invalid_sentences(a: Analysis) -> list[str]:
    """What was invalid, when replies were measured but failed the scenario's check (outcome ``invalid``)."""
    out = []
    for step in a.steps:
        n = step.outcomes.get(contract.INVALID, 0)
        if not n:
            continue
        judged = step.metrics.get("requests", 0) - sum(step.outcomes.get(o, 0) for o in contract.NOT_JUDGED)
        what = step.outcome_errors.get(contract.INVALID, "") or "the reply failed the scenario's check"
        cut = step.invalid_cut
        limit = (a.run.get("options") or {}).get("num_predict") if isinstance(a.run.get("options"), dict) else None
        at = f"--num-predict {limit}" if is_number(limit) and limit > 0 else "the length limit (done_reason length)"
        cut_text = f": {cut} cut at {at}" if cut else ""
        line = f"**Invalid replies at {users_text(step)}:** {n} of {int(judged)} replies were invalid ({what}){cut_text}."
        every = step.all_replies
        if every and step.outcomes.get(contract.OK, 0) == 0:
            line += (f" Their timing (all replies): p50 {format_seconds(every['p50_ms'])}, p95 "
                     f"{format_seconds(every['p95_ms'])}, n = {every['n']} — the server answered; the answers were "
                     "not what the scenario asked for.")
        out.append(line)
    return out
