"""The conclusion, written from the numbers: baseline, degradation, failure point, capacity, advice."""

from __future__ import annotations

import os

from ollama_locust import contract

from ._analysis import Analysis
from ._concurrency import SERIALISED, SHARED, THRESHOLDS, at_a_time, run_mode
from ._step_metrics import SIM_SETTINGS, format_seconds, format_settings, format_value, is_number
from ._steps import Step

QUEUE_DOMINATES = 0.5  # queue wait share of a typical request above which NUM_PARALLEL is the lever
COLD_START_MS = 1000.0  # warm-up load_duration above which OLLAMA_KEEP_ALIVE is advised
COLLAPSE = 0.5  # per-request tokens/s at or below this share of the baseline ...
FLAT_TOTAL = 1.25  # ... while total tokens/s grew less than this factor: the hardware is saturated


def users_text(step: Step) -> str:
    if not is_number(step.users):
        return "the whole run"
    n = int(step.users)
    return f"{n} user" if n == 1 else f"{n} users"


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
    return f"{int(v['users'])} users" if is_number(v.get("users")) else "the busiest step"


def serialised_sentence(v: dict, base: Step, run: dict) -> str:
    k = at_a_time(v)
    how = " the server answers one at a time." if k == 1 else \
        f" the server answers about {k} at a time and the others wait their turn." if k else ""
    users = _verdict_users(v)
    return (f"**Requests wait for each other:**{how} At {users} a request waits "
            f"{format_seconds(v['ttft_p50_ms'])} before its first token ({format_seconds(v['baseline_ttft_p50_ms'])} "
            f"with {users_text(base)}), with on average {v['requests_ahead']:.1f} requests already running when it "
            f"was sent, while each answer still streams at {_rate(v['tokens_per_s_request'])} tokens/s (baseline "
            f"{_rate(v['baseline_tokens_per_s_request'])}). {_lever(run)}")


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
            "The server works on the requests together, so each answer takes longer, but nobody waits to start.")


def concurrency_finding(a: Analysis) -> tuple[list[str], dict]:
    """The paragraphs on serialisation/sharing and results.json's ``concurrency_mode`` / ``concurrency``.

    The busiest step with a verdict is named for each mode; the run's mode is "serialised" when any step
    was serialised, else "shared" when any step was shared, else None (also when there was too little
    data to tell: then nothing is said).
    """
    text: list[str] = []
    mode, by_mode = run_mode(a.steps)
    found = {m: max(steps, key=lambda s: s.users if is_number(s.users) else -1).concurrency
             for m, steps in by_mode.items()}
    if SERIALISED in found:
        text.append(serialised_sentence(found[SERIALISED], a.baseline, a.run))
    if SHARED in found:
        text.append(shared_sentence(found[SHARED], a.baseline))
    info = {"mode": mode, SERIALISED: found.get(SERIALISED), SHARED: found.get(SHARED),
            "steps": [{"stage": s.stage, "users": s.users if is_number(s.users) else None,
                       "mode": s.concurrency["mode"]} for s in a.steps if s.concurrency],
            "thresholds": THRESHOLDS}
    return text, info


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
        ran = [int(s.users) for s in steps if is_number(s.users)]
        plan = f" (planned {', '.join(map(str, planned))} users; ran {', '.join(map(str, ran))})" if planned else ""
        text.append(f"**The run was interrupted** before its plan ended{plan}: the last step is partial.")
    stopped = run.get("stopped_on_failure")
    if isinstance(stopped, dict):
        at = next((s.users for s in steps if s.stage == stopped.get("stage") and is_number(s.users)), None)
        where = f" at {int(at)} users" if at is not None else f" (stage {stopped.get('stage')})"
        text.append(f"**Stepping stopped on failure**{where}: {stopped.get('reason')}; "
                    "the higher user counts of the plan were not run (--stop-on-failure).")
    missing = run.get("missing_workers") or []
    if missing:
        text.append(f"**Workers stopped reporting** during the run ({', '.join(map(str, missing))}): requests they "
                    "sent after that are missing, so later steps undercount.")

    if base is None:
        text.append("No step had a successful request: there is no baseline, and no latency to judge. "
                    "Check the target and model (the error breakdown above says what failed).")
        out["text"], out["recommendations"] = text, recs
        return out

    bm = base.metrics
    out["baseline_users"] = base.users if is_number(base.users) else None
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
            parts.append(f"p95 {format_seconds(m['p95_ms'])} ({m['p95_ms'] / bm['p95_ms']:.1f}× baseline)")
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
    p95_rule = f"p95 ≤ {format_seconds(slo.p95_ms)}" if slo.p95_ms is not None else None
    rule = " and ".join(r for r in (p95_rule, f"success ≥ {format_value('ratio', slo.min_success)}") if r)
    failing = next((s for s in steps if a.verdicts.get(s.stage)), None)
    before = steps[: steps.index(failing)] if failing else steps
    passing = [s for s in before if a.verdicts.get(s.stage) is None and s.metrics.get("requests")]
    best = max(passing, key=lambda s: s.users if is_number(s.users) else -1) if passing else None
    if failing:
        out["failure_point_users"] = failing.users if is_number(failing.users) else None
        text.append(f"**Failure point:** {users_text(failing)} ({a.verdicts[failing.stage]}).")
    else:
        text.append(f"**No step failed** the thresholds ({rule}).")
    only = "" if slo.p95_ms is not None else \
        " — judged on success rate only: no p95 SLO was given (pass --slo-p95 MS, or set it in the run)"
    if best is not None:
        out["largest_users_meeting_slo"] = best.users if is_number(best.users) else None
        text.append(f"**Largest user count meeting the SLO** ({rule}): {users_text(best)}{only}.")
    else:
        text.append(f"**No step met the SLO** ({rule}){only}.")

    # Recommendations.
    top = max((s for s in steps if s.metrics.get("requests")), key=lambda s: s.users if is_number(s.users) else -1)
    if failing and best is not None and is_number(best.users):
        recs.append(f"Rate-limit the gateway at {int(best.users)} concurrent requests (the largest step that met "
                    f"the SLO); queue or refuse the rest rather than letting everyone slow down.")
    if best is None:
        bp95, brate = bm.get("p95_ms"), bm.get("success_rate")
        if slo.p95_ms is not None and is_number(bp95) and bp95 > slo.p95_ms:
            recs.append(f"Even {users_text(base)} is slower than the SLO (p95 {format_seconds(bp95)}): use a "
                        "smaller model or faster hardware (a GPU).")
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
