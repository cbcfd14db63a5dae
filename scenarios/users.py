"""The Locust users: people who use a self-hosted LLM.

* :class:`StudentUser`: a student in a class; a multi-turn chat (3-8 turns, then a new conversation)
  that grows with the model's actual replies; reads and thinks between turns (``--think-time``);
  short and long school questions in English, German, Russian and Chinese.
* :class:`RecipeUser`: a kitchen app: ingredients -> a recipe as JSON, the instruction in the prompt
  everywhere; with ``--recipe-format schema`` (default) the recipe JSON schema goes as structured output
  (Ollama's ``format``, OpenAI's ``response_format: json_schema``) and a reply the schema rejects is
  ``invalid`` (the error names the field); ``--recipe-format json`` asks for any JSON object and checks
  for ``title``, ``ingredients`` and ``steps`` (``scenarios/recipe.py``).
* :class:`BurstyUser`: waits, then the whole group asks at once: with ``--shape burst`` when a burst
  stage's users run (the master's :func:`fire_burst` reaches every worker), else at every multiple of
  ``--burst-period`` on the wall clock (so all BurstyUsers on all workers fire together), or when
  :func:`trigger_burst` is called.

All use the client chosen by ``--api`` (one keep-alive connection per user) and report every request
through ``scenarios.request_report.report_request`` exactly once, also when a stop cuts it short. Weights are
class attributes (``weight``); pick classes with ``--class-picker`` or by name on the command line.
Options are read with ``ollama_locust.options.get``, so the users work in library mode too. What the users
ask and how long they think is ``scenarios/user_model.py``, which ``ollama-locust predict`` drives too.
"""

from __future__ import annotations

import gc
import logging
import math
import random
import time

import gevent
import gevent.event
from locust import User, task
from locust.exception import StopUser

from ollama_locust import contract, descriptors

from ollama_locust import options
from ollama_locust.scenarios.clients import make_client
from ollama_locust.scenarios.prompts import load_cached
from ollama_locust.scenarios.recipe import checker, prepare_schema_check, request_format
from ollama_locust.scenarios.request_report import report_request
from ollama_locust.scenarios.user_model import (FAILURE_BACKOFF_S, BurstQuestion, RecipeAsk, StudentChat, parse_think_time,
                                                think_seconds)

logger = logging.getLogger(__name__)

BURST_MESSAGE = "ollama_locust_burst"


def check_options(environment) -> None:
    """Validate the load options the users read (prompts file, think time, API/gateway settings)
    before any user starts. Raises ValueError (``PromptsError``, ``GatewayConfigError``) with one line."""
    load_cached(options.get(environment, "prompts") or None)
    parse_think_time(options.get(environment, "think_time"))
    request_format(options.get(environment, "recipe_format"))
    period = float(options.get(environment, "burst_period"))
    if period < 0 or not math.isfinite(period):
        raise ValueError(f"--burst-period {period:g}: must be >= 0 seconds (0 = only on the shape's signal)")
    client = make_client(environment, getattr(environment, "host", None) or "http://127.0.0.1:11434")
    client.close()


_start_up_heap_frozen = False


def freeze_start_up_heap() -> None:
    """Once per load process, before its first request: collect, then take every object alive now
    (Locust, Flask, gevent, the prompt sets: ~50,000) out of the garbage collector's scans (``gc.freeze``).

    A full collection of that heap takes 20-30 ms here, and it runs whenever enough objects have been
    allocated — for instance between a request's start and its send, which then adds those milliseconds
    to the request's TTFT and E2E (seen: the first requests of a run 20-30 ms longer than the server's
    truth log). After the freeze a full collection scans only what the run itself keeps.

    The plugin calls it at ``init`` in every load process (``prepare_load_process``), so that those 40-90 ms
    pass before the first user starts (done in the first user's ``on_start``, they delayed the first
    wall-clock burst of BurstyUsers by 84 ms on CI); ``LLMUser.on_start`` calls it too, for library use
    without the plugin.

    A flag says whether it was done, not ``gc.get_freeze_count()``: that walks the whole frozen list
    (6 ms with ~50,000 objects here), and called by every new user it blocked the hub for 1.6 s when
    255 users started at once, dating the first token of every stream that arrived meanwhile late.
    """
    global _start_up_heap_frozen
    if not _start_up_heap_frozen:
        _start_up_heap_frozen = True
        gc.collect()
        gc.freeze()


def prepare_load_process(environment) -> None:
    """Once per load process, before any user starts (the plugin calls it at ``init``): the one-off work that
    would otherwise block the hub in the middle of a run. The recipe schema's validator when a RecipeUser may
    run (importing jsonschema at the first recipe reply blocked the hub ~100 ms, and a wall-clock burst due
    then fired 60-90 ms late), the descriptor table (``descriptors.reserve``: growing it while 255 users
    connected stopped the hub 19-29 ms at descriptors 256 and 512), then the heap freeze."""
    descriptors.reserve()
    if options.get(environment, "recipe_format") == "schema" and any(
            issubclass(cls, RecipeUser) for cls in environment.user_classes or ()):
        prepare_schema_check()
    freeze_start_up_heap()


class LLMUser(User):
    """Common part: one client per user, prompts, and the one way a request is reported."""

    abstract = True
    json_format = False
    # --shape rate runs one task of an instance per arrival (scenarios/open_loop.py): a class whose task waits
    # for something else (BurstyUser's burst) sets this False
    open_loop = True

    def on_start(self) -> None:
        environment = self.environment
        try:
            self.prompts = load_cached(options.get(environment, "prompts") or None)
            self.think_min, self.think_max = parse_think_time(options.get(environment, "think_time"))
            self.llm = make_client(environment, self.host or environment.host)
        except ValueError as exc:
            logger.error("%s: %s", type(self).__name__, exc)
            raise StopUser() from None
        self.request_name = f"{type(self).__name__} {self.llm.path}"
        freeze_start_up_heap()

    def on_stop(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()

    # The think time and the failure back-off (user_model.think_seconds; the predictor uses the same).
    failure_backoff_s = FAILURE_BACKOFF_S

    def wait_time(self) -> float:
        retry_after = getattr(getattr(self, "llm", None), "retry_after", None)  # Retry-After, bounded by the client
        return think_seconds(random, self.think_min, self.think_max, getattr(self, "consecutive_failures", 0),
                             retry_after, self.failure_backoff_s)

    def ask(self, messages: list[dict], check=None) -> tuple[dict, str]:
        """Send one request, apply the scenario's semantic ``check(text) -> error or None``, report it.

        A stop during the request reports it as cut short, then lets the stop go on.
        """
        try:
            record, text = self.llm.chat(messages, json_format=self.json_format)
        except BaseException as exc:
            record = getattr(exc, "llm_record", None)
            if record is not None:
                self._report(record)
            raise
        if record["outcome"] == contract.OK and check is not None:
            problem = check(text)
            if problem:
                record["outcome"] = contract.INVALID
                record["error"] = problem
                text = ""
        failed = record["outcome"] in contract.FAILURE_OUTCOMES  # every class, invalid and empty included
        self.consecutive_failures = getattr(self, "consecutive_failures", 0) + 1 if failed else 0
        self._report(record)
        return record, text

    def _report(self, record: dict) -> None:
        arrival = getattr(self, "arrival_time", None)  # set by scenarios/open_loop.py for the one request of an arrival
        if arrival is not None:
            self.arrival_time = None
            if isinstance(record.get("start_time"), (int, float)):
                record["send_lag_ms"] = max(0.0, (record["start_time"] - arrival) * 1000.0)
        try:
            report_request(self, record, self.request_name)
        except Exception:  # a sink problem must not kill the user; it is logged once per record
            logger.exception("reporting request %s failed", record.get("request_id"))


class StudentUser(LLMUser):
    """A student: multi-turn chat of 3-8 turns growing with the model's replies, thinking in between."""

    weight = 3
    min_turns = StudentChat.min_turns
    max_turns = StudentChat.max_turns

    def on_start(self) -> None:
        super().on_start()
        self.chat = StudentChat(self.prompts, random, self.min_turns, self.max_turns)  # user_model.py

    @task
    def converse(self) -> None:
        record, reply = self.ask(self.chat.ask())
        self.chat.answered(record["outcome"] == contract.OK, reply)


class RecipeUser(LLMUser):
    """A kitchen app user: ingredients in, a recipe as a JSON object out (else ``invalid``)."""

    weight = 1

    def on_start(self) -> None:
        super().on_start()
        recipe_format = options.get(self.environment, "recipe_format")
        try:
            self.json_format = request_format(recipe_format)
        except ValueError as exc:
            logger.error("%s: %s", type(self).__name__, exc)
            raise StopUser() from None
        # Through an app gateway the app's payload decides the format (the schema is not sent): check only
        # that the reply is a recipe object, as --recipe-format json does.
        self.check = checker(recipe_format if getattr(self.llm, "sends_format", True) else "json")
        self.recipes = RecipeAsk(self.prompts, random)  # user_model.py

    @task
    def cook(self) -> None:
        self.ask(self.recipes.ask(), check=self.check)


# --- bursts -----------------------------------------------------------------------------------------

_burst_event = gevent.event.Event()


def trigger_burst() -> None:
    """Make every BurstyUser waiting in this process fire now (the shape's signal)."""
    global _burst_event
    event, _burst_event = _burst_event, gevent.event.Event()
    event.set()


def register_burst_message(environment) -> None:
    """On a worker (or a local runner): fire the bursts when the master sends ``BURST_MESSAGE``.
    Call it from an ``init`` listener."""
    runner = environment.runner
    if runner is not None and hasattr(runner, "register_message"):
        runner.register_message(BURST_MESSAGE, lambda *_args, **_kw: trigger_burst())


def fire_burst(environment) -> None:
    """Make all BurstyUsers fire now: in this process and, from a master, on every worker."""
    runner = environment.runner
    if runner is not None and type(runner).__name__ == "MasterRunner":
        runner.send_message(BURST_MESSAGE, None)
    trigger_burst()


def seconds_to_next_burst(period: float, now: float | None = None) -> float:
    """Seconds from ``now`` (unix time) to the next multiple of ``period`` on the wall clock."""
    now = time.time() if now is None else now
    return math.floor(now / period + 1.0) * period - now


class BurstyUser(LLMUser):
    """Waits for the burst, then asks one short school question with the whole group.

    The wait happens in ``wait_time`` (Locust's waiting state), so a stop ends a waiting user at once.
    """

    weight = 1
    open_loop = False  # its task waits for the burst signal: no place in open-loop arrivals

    def on_start(self) -> None:
        super().on_start()
        self.armed = False
        # with --shape burst the shape's signal fires the bursts (the master's, at each burst stage);
        # else every multiple of --burst-period on the wall clock
        burst_shape = options.get(self.environment, "shape") == "burst"
        self.period = 0.0 if burst_shape else float(options.get(self.environment, "burst_period"))
        self.question = BurstQuestion(self.prompts, random)  # user_model.py

    def wait_time(self) -> float:
        event = _burst_event
        if self.period > 0:
            event.wait(timeout=seconds_to_next_burst(self.period))
        else:
            while not event.wait(timeout=3600):
                pass
        return 0.0

    @task
    def ask_with_everybody(self) -> None:
        if not self.armed:  # Locust runs a task before the first wait: the first one only arms the user
            self.armed = True
            return
        self.ask(self.question.ask())
