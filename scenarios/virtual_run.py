"""A step test in virtual time against a fitted server: what ``ollama-locust predict`` runs (:func:`simulate`).

The server is the simulator's own ``Scheduler``/``Runner`` (``simulator/scheduler.py``) with the probe's
fitted profile and slot count (:class:`Fit`, read from probe.json), on an event loop whose clock jumps to
the next timer (``simulator/virtual_time.py``). The users are ``scenarios/user_model.py`` — the same
conversations, prompt sets and think time the Locust users run — and the plan is ``scenarios/plans.py``
driven through the same ``ShapeController`` as a real step test (ticked every second, as Locust does).
Each request becomes one record of ``ollama_locust.contract.COLUMNS``.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import time
import uuid
from dataclasses import dataclass, field

from ollama_locust import contract, options
from ollama_locust.scenarios import plans
from ollama_locust.scenarios.fit import prompt_tokens
from ollama_locust.scenarios.prompts import load_prompts
from ollama_locust.scenarios.record_sink import RecordSink
from ollama_locust.scenarios.request_metrics import itl_ms, token_arrivals, tokens_per_s
from ollama_locust.scenarios.request_report import complete
from ollama_locust.scenarios.stepping import ShapeController
from ollama_locust.scenarios.timeline import StageTimeline
from ollama_locust.scenarios.user_model import MODELS, think_seconds
from ollama_locust.simulator.profiles import Profile, ProfileFileError, profile_from_probe
from ollama_locust.simulator.scheduler import Busy, Job, Scheduler
from ollama_locust.simulator.virtual_time import VirtualTimeLoop, virtual_clock

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

