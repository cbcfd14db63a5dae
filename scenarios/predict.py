"""`ollama-locust predict PROBE.json`: the step test, run against the fitted server in virtual time.

The server is the simulator's own ``Scheduler``/``Runner`` (``simulator/scheduler.py``) with the probe's
fitted profile and slot count, on an event loop whose clock jumps to the next timer
(``simulator/virtual_time.py``). The users are ``scenarios/user_model.py`` — the same conversations, prompt
sets and think time the Locust users run — and the plan is ``scenarios/plans.py`` driven through the
same ``ShapeController`` as a real step test (ticked every second, as Locust does). Each request becomes
one record of ``ollama_locust.contract.COLUMNS``; the run folder (``requests.csv``, ``stages.csv``,
``run.json`` marked ``"predicted": true``) goes through the ordinary post-processor, so results.md,
results.json and the plots are the same as a measured run's, labelled predicted. With ``--num-parallel
1,2,4`` the plan is also run under each slot count: the what-if table (``what-if.md``, ``what-if.json``).

What the model does not capture is listed in docs/predict.md ("Limits"); a measured step test is the
final word.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field

from ollama_locust import contract, options
from ollama_locust.scenarios import plans, run_folder
from ollama_locust.scenarios.fit import prompt_tokens, resample
from ollama_locust.scenarios.prompts import PromptsError, load_prompts
from ollama_locust.scenarios.record_sink import RecordSink
from ollama_locust.scenarios.request_metrics import itl_ms, token_arrivals, tokens_per_s
from ollama_locust.scenarios.request_report import complete
from ollama_locust.scenarios.stepping import ShapeController
from ollama_locust.scenarios.timeline import StageTimeline
from ollama_locust.scenarios.user_model import MODELS, parse_think_time, think_seconds
from ollama_locust.simulator.profiles import Profile, ProfileFileError, profile_from_probe
from ollama_locust.simulator.scheduler import Busy, Job, Scheduler
from ollama_locust.simulator.virtual_time import VirtualTimeLoop, virtual_clock

PROG = "ollama-locust predict"
TICK_S = 1.0  # Locust asks the shape for its target once a second
WORKER = "predicted"  # the records' worker column
NUM_CTX = 4096
# A Locust user's own turnaround between the end of one reply and the send of its next request (its
# record's bookkeeping and the task loop): ~0.7 ms measured on loopback. Without it a user with think
# time 0 would send at the very instant its last reply ended, which no real client does.
TURNAROUND_S = 0.001


class PredictError(Exception):
    """Bad input for `predict` (one line)."""


@dataclass(frozen=True)
class Fit:
    """What predict needs of a probe.json: the fitted server and the client-side facts around it."""

    profile: Profile
    num_parallel: int
    overhead_s: float = 0.0  # client send -> server arrival, plus the client's own cost (from the probe)
    prompt_token_scale: float = 1.0  # the server's prompt tokens per token the simulator's counter counts
    prompt_template_tokens: float | None = None  # the chat template's tokens per message (None: the counter's, scaled)
    prompt_cache: bool = False  # the server keeps each slot's last prompt: a follow-up prefills only its new tokens
    cache_beyond_slots: bool = False  # ... and every conversation's, not only the slots' (llama-server --cache-ram)
    reply_reprefilled: bool = False  # ... but a follow-up computes the previous reply again (the cache ends before it)
    reply_tokens: dict[str, tuple[int, ...]] = field(default_factory=dict)  # per user class: the probe's sample
    model: str = "llama3.2"
    api: str = contract.OLLAMA_CHAT
    host: str = ""
    source: str = ""

    def replies_for(self, user_class: str) -> tuple[int, ...]:
        sample = self.reply_tokens.get(user_class) or next((s for s in self.reply_tokens.values() if s), ())
        return sample or (self.profile.reply_tokens,)


def read_fit(path: str) -> Fit:
    """The Fit of a probe.json; PredictError (one line) when it cannot be used."""
    return fit_from_probe(read_probe(path), path)


def read_probe(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as error:
        raise PredictError(f"{path}: cannot read it ({error.strerror or error})") from None
    except ValueError as error:
        raise PredictError(f"{path}: not JSON ({error})") from None


def fit_from_probe(data: dict, source: str = "probe.json") -> Fit:
    try:
        profile, slots = profile_from_probe(data, source)
    except ProfileFileError as error:
        raise PredictError(str(error)) from None
    if math.isinf(profile.decode_tps):
        raise PredictError(f"{source}: an infinite decode rate cannot be predicted in virtual time")
    server = data["server"]
    target = data.get("target") or {}
    replies = {}
    for name, sample in (data.get("reply_tokens") or {}).items():
        if isinstance(sample, list):
            replies[name] = tuple(int(n) for n in sample if isinstance(n, (int, float)) and n >= 1)
    return Fit(profile=profile, num_parallel=slots, overhead_s=max(0.0, float(server.get("overhead_s") or 0.0)),
               prompt_token_scale=float(server.get("prompt_token_scale") or 1.0), reply_tokens=replies,
               prompt_template_tokens=(None if server.get("prompt_template_tokens") is None
                                       else float(server["prompt_template_tokens"])),
               reply_reprefilled=bool(server.get("reply_reprefilled")),
               prompt_cache=bool(server.get("prompt_cache")),
               cache_beyond_slots=bool(server.get("prompt_cache_beyond_slots")),
               model=str(target.get("model") or "llama3.2"), api=str(target.get("api") or contract.OLLAMA_CHAT),
               host=str(target.get("host") or ""), source=source)


@dataclass
class Prediction:
    records: list[dict]
    timeline: StageTimeline
    controller: ShapeController
    num_parallel: int
    wall_s: float = 0.0  # real seconds the virtual run took
    virtual_s: float = 0.0


def simulate(fit: Fit, stages: list[plans.Stage], *, user_class: str = options.DEFAULT_USER_CLASS,
             num_parallel: int | None = None, think: tuple[float, float] = (0.0, 0.0), seed: int = 0,
             prompts=None, num_predict: int = 0, drain_timeout_s: float = 10.0, max_queue: int = 512,
             stop_on_failure: bool = False, min_success: float = 0.95, slo_p95_ms: float | None = None,
             slo_ttft_p95_ms: float | None = None, run_dir: str | None = None,
             epoch: float | None = None) -> Prediction:
    """Run ``stages`` of ``user_class`` users against the fitted server in virtual time.

    With ``run_dir`` the records go to its requests.csv and the stages to its stages.csv as they happen
    (the same RecordSink and StageTimeline a measured run uses)."""
    if user_class not in MODELS:
        raise PredictError(f"unknown user class '{user_class}'; available: {', '.join(MODELS)}")
    slots = num_parallel or fit.num_parallel
    prompts = prompts if prompts is not None else load_prompts(None)
    epoch = time.time() if epoch is None else epoch
    loop = VirtualTimeLoop(start=0.0)
    clock = virtual_clock(loop, epoch)
    wall = clock.wall
    timeline = StageTimeline(os.path.join(run_dir, contract.STAGES_FILE) if run_dir else None)
    sink = RecordSink(os.path.join(run_dir, contract.REQUESTS_FILE) if run_dir else None, timeline)
    users: list[asyncio.Task] = []
    stopping: set[asyncio.Task] = set()
    controller = ShapeController(stages, timeline, sink.tallies, stop_on_failure=stop_on_failure,
                                 min_success=min_success, slo_p95_ms=slo_p95_ms, slo_ttft_p95_ms=slo_ttft_p95_ms,
                                 drain_timeout_s=drain_timeout_s, user_count=lambda: sum(not t.done() for t in users),
                                 clock=wall)
    replies = fit.replies_for(user_class)
    sched = Scheduler(profile=fit.profile, models=[fit.model], num_parallel=slots, max_queue=max_queue,
                      default_keep_alive=math.inf, clock=clock)
    records: list[dict] = []
    seq = iter(range(1, 1 << 62))
    now = loop.time

    def add(record: dict) -> None:
        complete(record, user_class)
        record["worker"] = WORKER
        sink.add(record)
        records.append(record)

    # the prompt cache: user -> tokens of its conversation the server holds, least recently given a slot first
    held: dict[int, int] = {}

    def new_tokens(uid: int, total: int, n_out: int) -> int:
        """The prompt tokens a request that takes a slot now prefills. With a prompt cache the slots hold the
        last ``slots`` conversations (or, kept beyond the slots, every one), each with its reply (or, where the
        probe saw a follow-up compute the reply again, up to its last question): a follow-up of one of them
        prefills only what is new; any other prompt evicts the least recently used."""
        if not fit.prompt_cache:
            return total
        cached = held.pop(uid, 0)
        if not fit.cache_beyond_slots and len(held) >= slots:
            held.pop(next(iter(held)))
        held[uid] = total if fit.reply_reprefilled else total + n_out  # what the slot holds of this conversation next
        return max(1, total - cached) if cached and cached < total else total

    async def one_request(rng: random.Random, messages: list[dict], uid: int = 0) -> tuple[dict, str]:
        record = {name: None for name in contract.COLUMN_NAMES}
        record.update(request_id=str(uuid.UUID(int=(seed << 64 | next(seq)) & ((1 << 128) - 1), version=4)),
                      api=fit.api, model=fit.model, http_status=0, tokens_estimated=False)
        sent = now()
        record["start_time"] = epoch + sent
        n_out = rng.choice(replies)
        if num_predict and num_predict > 0 and n_out > num_predict:
            n_out, reason = num_predict, "length"
        else:
            reason = "stop"
        times: list[float] = []
        total_prompt = prompt_tokens(messages, fit.prompt_token_scale, fit.prompt_template_tokens, exact_replies=True)
        job = Job(n_out, total_prompt, lambda _job, _i, _c: times.append(now()))
        job.on_slot = lambda taken: setattr(taken, "prompt_tokens", new_tokens(uid, total_prompt, n_out))
        runner = None
        try:
            if fit.overhead_s:
                await asyncio.sleep(fit.overhead_s)
            arrival = now()
            runner = await sched.get_runner(fit.model, NUM_CTX, None)
            handed = now()
            await runner.generate(job)
        except Busy as error:
            record.update(outcome=contract.REJECTED, http_status=503, e2e_ms=(now() - sent) * 1e3,
                          error=f"HTTP 503: {error.message}")
            return record, ""
        except asyncio.CancelledError:
            record.update(outcome=contract.CUT_SHORT, e2e_ms=(now() - sent) * 1e3, output_tokens=len(times),
                          error="cut short: the test stopped while the request was running")
            _fill_tokens(record, sent, times)
            add(record)
            raise
        finally:
            if runner is not None:
                runner.release()
        done = now()
        record.update(outcome=contract.OK, http_status=200, e2e_ms=(done - sent) * 1e3, output_tokens=len(times),
                      prompt_tokens=total_prompt, done_reason=reason)
        _fill_tokens(record, sent, times)
        prefill_end = job.prefill_end if job.prefill_end is not None else handed
        eval_s = (job.last_token or prefill_end) - prefill_end
        split = {"load_ms": (handed - arrival) * 1e3, "prompt_eval_ms": job.prefill_s * 1e3, "eval_ms": eval_s * 1e3,
                 "server_total_ms": (done - arrival) * 1e3}
        split["queue_wait_ms"] = max(0.0, split["server_total_ms"] - split["load_ms"] - split["prompt_eval_ms"]
                                     - split["eval_ms"])
        record.update({key: round(value, 6) for key, value in split.items()})
        return record, " ".join(["w"] * len(times))

    thinking: set[asyncio.Task] = set()

    async def user(uid: int) -> None:
        rng = random.Random(f"{seed}-{user_class}-{uid}")
        conversation = MODELS[user_class](prompts, rng)
        failures = 0
        me = asyncio.current_task()
        while me not in stopping:  # Locust runs a task first, then waits
            record, reply = await one_request(rng, list(conversation.ask()), uid)
            ok = record["outcome"] == contract.OK
            conversation.answered(ok, reply)
            failures = 0 if ok else failures + 1
            add(record)
            if me in stopping:
                break
            thinking.add(me)
            try:
                await asyncio.sleep(TURNAROUND_S + think_seconds(rng, think[0], think[1], failures))
            finally:
                thinking.discard(me)

    def alive() -> list[asyncio.Task]:
        return [task for task in users if not task.done()]

    def adjust(target: int) -> None:
        """Locust's spawn/stop: new users start at once; the newest users stop first, a thinking one at
        once, one inside a request when that request ends (within the drain timeout)."""
        live = [task for task in alive() if task not in stopping]
        for _ in range(len(live), target):
            users.append(loop.create_task(user(len(users))))
        for task in live[target:]:
            stopping.add(task)
            if task in thinking:
                task.cancel()

    async def main() -> None:
        warm = await sched.get_runner(fit.model, NUM_CTX, None)  # the warm-up: the model is loaded first
        warm.release()
        while True:
            target = controller.tick()
            if target is None:
                break
            adjust(target[0])
            if controller.drain_started_at is not None and wall() - controller.drain_started_at >= drain_timeout_s:
                for task in alive():
                    task.cancel()  # still running at the drain timeout: cut short
            await asyncio.sleep(0)  # let the users started now send their first request at this instant
            timeline.sample(wall(), len(alive()))
            await asyncio.sleep(TICK_S)
        for task in users:
            task.cancel()
        await asyncio.gather(*users, return_exceptions=True)
        loops = [r._loop_task for r in sched.runners.values() if r._loop_task is not None]
        for task in loops:  # a decode step still planned when the last user went: nothing is waiting for it
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)

    started = time.perf_counter()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
        sink.close()
    return Prediction(records, timeline, controller, slots, wall_s=time.perf_counter() - started,
                      virtual_s=loop.time())


def _fill_tokens(record: dict, sent: float, times: list[float]) -> None:
    if not times:
        return
    record["ttft_ms"] = (times[0] - sent) * 1e3
    record["itl_ms"] = itl_ms(times[0], times[-1], len(times))
    record["tokens_per_s"] = tokens_per_s(len(times), record["e2e_ms"], record["ttft_ms"])
    buckets: list[int] = []
    width = contract.TOKEN_BUCKET_MS / 1e3
    for t in times:
        index = int((t - sent) / width)
        if index >= len(buckets):
            buckets.extend([0] * (index + 1 - len(buckets)))
        buckets[index] += 1
    record["token_arrivals"] = token_arrivals(buckets)


def beside(measured_json: str, predicted_json: str) -> str:
    """Per step: measured, predicted and the relative error (predicted / measured - 1) of the key figures."""
    with open(measured_json, encoding="utf-8") as handle:
        measured = json.load(handle)
    with open(predicted_json, encoding="utf-8") as handle:
        predicted = json.load(handle)
    by_users = {s.get("users"): s for s in predicted.get("steps") or []}
    keys = WHAT_IF_KEYS[:5]
    lines = ["| Concurrent users | " + " | ".join(f"{label} measured / predicted (error)" for _, label in keys) + " |",
             "|---" * (len(keys) + 1) + "|"]
    for step in measured.get("steps") or []:
        other = by_users.get(step.get("users")) or {}
        cells = []
        for key, _ in keys:
            m, p = step.get(key), other.get(key)
            error = (f" ({(p / m - 1) * 100:+.0f} %)" if isinstance(m, (int, float)) and isinstance(p, (int, float)) and m
                     else "")
            cells.append(f"{_figure(key, m)} / {_figure(key, p)}{error}")
        users = step.get("users")
        lines.append(f"| {int(users) if isinstance(users, (int, float)) else '?'} | " + " | ".join(cells) + " |")
    m_best = (measured.get("conclusion") or {}).get("largest_users_meeting_slo")
    p_best = (predicted.get("conclusion") or {}).get("largest_users_meeting_slo")
    lines += ["", f"Largest user count meeting the thresholds: measured {_users(m_best)}, predicted {_users(p_best)}."]
    return "\n".join(lines) + "\n"


def _users(value) -> str:
    return f"{int(value)} users" if isinstance(value, (int, float)) else "none"


# -- the command ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = options.OneLineParser(prog=PROG, description="Predict a step test from a probe: the user model against the server "
                     "fitted by 'ollama-locust probe', in virtual time (seconds instead of the plan's minutes). "
                     "Writes a run folder like 'ollama-locust step' does (results.md, results.json, plots), "
                     "labelled predicted, and with --num-parallel a what-if table over NUM_PARALLEL values.")
    parser.add_argument("probe", metavar="PROBE.json", help="the probe file written by 'ollama-locust probe'")
    options.add_planning(parser, options.PREDICT_ROWS, ("user_class", "num_parallel", "seed", "band", "out"),
                         aliases={"steps": ("--users",)})
    return parser


def parse_slots(text: str, fitted: int) -> list[int]:
    if not str(text).strip():
        return [fitted]
    try:
        values = plans.parse_users(text)
    except plans.PlanError:
        raise PredictError(f"--num-parallel must be whole numbers >= 1 separated by commas (e.g. 1,2,4), got '{text}'") from None
    return list(dict.fromkeys(values))


def run_info(args, fit: Fit, stages: list[plans.Stage], slots: int, prediction: Prediction) -> dict:
    """run.json of a predicted run: the keys a measured run has (plugin.described) plus the prediction's."""
    slo = {"p95_ms": args.slo_p95 or None, "ttft_p95_ms": args.slo_ttft_p95 or None, "min_success": args.min_success}
    values = {dest: getattr(args, dest) for dest in options.PREDICT_ROWS if dest != "run_dir"}
    p = fit.profile
    return {
        contract.RUN_PREDICTED: True,
        "label": args.label or f"predicted-np{slots}",
        "host": fit.host, "model": fit.model, "api": fit.api, "user_classes": [args.user_class],
        "shape": "step", "steps": [stage.users for stage in stages], "step_time_s": stages[0].duration_s,
        "settle_s": stages[0].settle_s, "slo": slo, "options": {**values, "shape": "step"},
        "requests": len(prediction.records), "interrupted": False,
        "stopped_on_failure": ({"stage": prediction.controller.failed_stage, "reason": prediction.controller.failure_reason}
                               if args.stop_on_failure and prediction.controller.failed_stage is not None else None),
        "prediction": {"probe": os.path.abspath(args.probe), "num_parallel": slots, "fitted_num_parallel": fit.num_parallel,
                       "decode_tps": p.decode_tps, "prefill_tps": p.prefill_tps, "beta": p.beta,
                       "batch_curve": [list(point) for point in p.batch_curve],
                       "load_time": p.load_time, "overhead_s": fit.overhead_s,
                       "prompt_token_scale": fit.prompt_token_scale, "prompt_template_tokens": fit.prompt_template_tokens,
                       "reply_reprefilled": fit.reply_reprefilled, "seed": args.seed,
                       "reply_tokens_sample": len(fit.replies_for(args.user_class)),
                       "wall_s": round(prediction.wall_s, 3), "virtual_s": round(prediction.virtual_s, 3)},
        "ended_at": prediction.timeline.spans[-1].end_time if prediction.timeline.spans else None,
    }


WHAT_IF_KEYS = (("p50_ms", "p50"), ("p95_ms", "p95"), ("ttft_p50_ms", "TTFT p50"), ("tokens_per_s_total", "Tokens/s (total)"),
                ("req_per_s", "Req/s"), ("success_rate", "Success"))


def _figure(key: str, value) -> str:
    if not isinstance(value, (int, float)) or value != value:
        return "–"
    if key.endswith("_ms"):
        return f"{value / 1000:.2f} s"
    if key == "success_rate":
        return f"{value * 100:.0f} %"
    return f"{value:.1f}" if key == "tokens_per_s_total" else f"{value:.2f}"


def what_if(results: dict[int, dict]) -> tuple[str, dict]:
    """The what-if table (markdown) and its data from each slot count's results.json."""
    data = {"rows": [], "largest_users_meeting_slo": {}}
    lines = ["| NUM_PARALLEL | Concurrent users | " + " | ".join(label for _, label in WHAT_IF_KEYS) + " | Verdict |",
             "|---" * (len(WHAT_IF_KEYS) + 3) + "|"]
    for slots, result in results.items():
        conclusion = result.get("conclusion") or {}
        data["largest_users_meeting_slo"][slots] = conclusion.get("largest_users_meeting_slo")
        for step in result.get("steps") or []:
            row = {"num_parallel": slots, "users": step.get("users"), **{k: step.get(k) for k, _ in WHAT_IF_KEYS},
                   "concurrency_mode": step.get("concurrency_mode")}
            data["rows"].append(row)
            users = step.get("users")
            lines.append(f"| {slots} | {int(users) if isinstance(users, (int, float)) else '?'} | "
                         + " | ".join(_figure(k, step.get(k)) for k, _ in WHAT_IF_KEYS) + f" | {step.get('concurrency_mode') or '–'} |")
    slo = next((r.get("slo") for r in results.values() if r.get("slo")), {}) or {}
    rule = [f"{what} ≤ {_figure('x_ms', slo[key])}" for key, what in (("p95_ms", "p95"), ("ttft_p95_ms", "TTFT p95"))
            if isinstance(slo.get(key), (int, float))]
    if isinstance(slo.get("min_success"), (int, float)):
        rule.append(f"success ≥ {slo['min_success'] * 100:g} %")
    lines += ["", f"Largest user count meeting the thresholds ({' and '.join(rule) or 'success only'}):", ""]
    for slots, users in data["largest_users_meeting_slo"].items():
        lines.append(f"- NUM_PARALLEL {slots}: " + (f"{int(users)} users" if isinstance(users, (int, float)) else "none of the steps"))
    return "\n".join(lines) + "\n", data


BAND_KEYS = WHAT_IF_KEYS[:5]
BAND_LOW, BAND_HIGH = 10, 90  # percentiles of the replicates: the band


def band(args, data: dict, stages: list[plans.Stage], slots: int, think, prompts) -> tuple[str, dict]:
    """The band of the predicted figures from the probe's own spread: ``args.band`` predictions, each on a
    bootstrap replicate of the probe's measurements (``scenarios/fit.resample``) with its own seed; per step
    and figure the 10th-90th percentile of the replicates, and how often each largest user count met the SLO."""
    import tempfile

    from ollama_locust import reports, stats

    rng = random.Random(f"band-{args.seed}")
    figures: dict[int, dict[str, list[float]]] = {}
    largest: dict[str, int] = {}
    for replicate in range(args.band):
        fit = fit_from_probe(resample(data, rng), args.probe)
        with tempfile.TemporaryDirectory(prefix="ollama-locust-band-") as tmp:
            prediction = simulate(fit, stages, user_class=args.user_class, num_parallel=slots, think=think,
                                  seed=args.seed + 1 + replicate, prompts=prompts, num_predict=args.num_predict,
                                  drain_timeout_s=args.drain_timeout, stop_on_failure=args.stop_on_failure,
                                  min_success=args.min_success, slo_p95_ms=args.slo_p95 or None,
                                  slo_ttft_p95_ms=args.slo_ttft_p95 or None, run_dir=tmp)
            run_folder.write_json(os.path.join(tmp, contract.RUN_FILE), run_info(args, fit, stages, slots, prediction))
            result = reports.write_report(tmp, plots=False).data
        for step in result.get("steps") or []:
            row = figures.setdefault(int(step["users"]), {key: [] for key, _ in BAND_KEYS})
            for key, _ in BAND_KEYS:
                if isinstance(step.get(key), (int, float)):
                    row[key].append(float(step[key]))
        best = (result.get("conclusion") or {}).get("largest_users_meeting_slo")
        name = f"{int(best)} users" if isinstance(best, (int, float)) else "none"
        largest[name] = largest.get(name, 0) + 1
    out = {"replicates": args.band, "percentiles": [BAND_LOW, BAND_HIGH], "steps": {}, "largest_users_meeting_slo": largest}
    lines = ["| Concurrent users | " + " | ".join(label for _, label in BAND_KEYS) + " |", "|---" * (len(BAND_KEYS) + 1) + "|"]
    for users, row in sorted(figures.items()):
        cells, data_row = [], {}
        for key, _ in BAND_KEYS:
            ordered = sorted(row[key])
            low, high = stats.percentile(ordered, BAND_LOW), stats.percentile(ordered, BAND_HIGH)
            data_row[key] = [low, high]
            cells.append(f"{_figure(key, low)} – {_figure(key, high)}" if low is not None else "–")
        out["steps"][users] = data_row
        lines.append(f"| {users} | " + " | ".join(cells) + " |")
    verdicts = ", ".join(f"{name} in {count} of {args.band}" for name, count in sorted(largest.items(), key=lambda i: -i[1]))
    lines += ["", f"Largest user count meeting the thresholds over the replicates: {verdicts}."]
    intro = (f"{args.band} predictions on bootstrap replicates of the probe's requests (its lone requests, each "
             f"round's stream rates and the reply-length sample drawn again), each with its own seed; per figure "
             f"the {BAND_LOW}th–{BAND_HIGH}th percentile. The band is the probe's spread and the predictor's own "
             "sampling, not the server effects the model leaves out (docs/predict.md, Limits).")
    return intro + "\n\n" + "\n".join(lines) + "\n", out


def predict(args) -> tuple[str, dict[int, dict]]:
    """Run the prediction(s) the arguments ask for; returns the main run folder and results per slot count."""
    from ollama_locust import reports

    data = read_probe(args.probe)
    fit = fit_from_probe(data, args.probe)
    if args.band < 0:
        raise PredictError(f"--band must be 0 or more replicates, got {args.band}")
    try:
        stages = plans.step_plan(plans.parse_users(args.steps), plans.parse_duration(args.step_time, "--step-time"),
                                 plans.parse_duration(args.settle, "--settle"))
    except plans.PlanError as error:
        raise PredictError(str(error)) from None
    think = parse_think_time(args.think_time)
    prompts = load_prompts(args.prompts or None)
    slots_list = parse_slots(args.num_parallel, fit.num_parallel)
    main_slots = fit.num_parallel if fit.num_parallel in slots_list else slots_list[0]
    label = args.label or f"predicted-np{main_slots}"
    main_dir = run_folder.prepare(args.run_dir) if args.run_dir else run_folder.create_unique(label, args.out)
    results: dict[int, dict] = {}
    for slots in [main_slots] + [s for s in slots_list if s != main_slots]:
        run_dir = main_dir if slots == main_slots else run_folder.prepare(os.path.join(main_dir, f"what-if-np{slots}"))
        prediction = simulate(fit, stages, user_class=args.user_class, num_parallel=slots, think=think, seed=args.seed,
                              prompts=prompts, num_predict=args.num_predict, drain_timeout_s=args.drain_timeout,
                              stop_on_failure=args.stop_on_failure, min_success=args.min_success,
                              slo_p95_ms=args.slo_p95 or None, slo_ttft_p95_ms=args.slo_ttft_p95 or None,
                              run_dir=run_dir)
        sub = replace_label(args, slots, main_slots)
        run_folder.write_json(os.path.join(run_dir, contract.RUN_FILE), run_info(sub, fit, stages, slots, prediction))
        report = reports.write_report(run_dir, plots=slots == main_slots)
        results[slots] = report.data
        if slots == main_slots:
            main_report = report
    table, what = what_if(results)
    with open(os.path.join(main_dir, contract.WHAT_IF_MD), "w", encoding="utf-8") as handle:
        handle.write("# What if: NUM_PARALLEL (predicted)\n\n" + table)
    run_folder.write_json(os.path.join(main_dir, contract.WHAT_IF_JSON), what)
    args.band_text = None
    if args.band:
        args.band_text, band_data = band(args, data, stages, main_slots, think, prompts)
        run_folder.write_json(os.path.join(main_dir, contract.BAND_JSON), band_data)
    with open(os.path.join(main_dir, contract.RESULTS_MD), "a", encoding="utf-8") as handle:
        if args.band_text:
            handle.write(f"\n## Band of the prediction (NUM_PARALLEL {main_slots})\n\n" + args.band_text)
        handle.write("\n## What if: NUM_PARALLEL (predicted)\n\n" + table)
    args.main_report = main_report
    args.what_if_table = table
    return main_dir, results


def replace_label(args, slots: int, main_slots: int):
    if slots == main_slots:
        return args
    copy = argparse.Namespace(**vars(args))
    copy.label = f"{args.label or 'predicted'}-what-if-np{slots}"
    return copy


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    try:
        run_dir, _results = predict(args)
    except (PredictError, PromptsError, run_folder.RunFolderError, ValueError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return contract.EXIT_BAD_INPUT
    report = args.main_report
    print(f"Predicted (virtual time, from {args.probe}; not measured):\n")
    print(report.table_markdown)
    print("\nConclusion:")
    for paragraph in (report.data.get("conclusion") or {}).get("text") or []:
        print(paragraph)
    if args.band_text:
        print("\nBand of the prediction\n")
        print(args.band_text)
    print("\nWhat if: NUM_PARALLEL\n")
    print(args.what_if_table)
    print(f"Predicted in {time.perf_counter() - started:.1f} s. Full report: {os.path.join(run_dir, contract.RESULTS_MD)}")
    return 0
