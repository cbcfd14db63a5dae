"""What the users do, as plain objects: declared once, driven by the Locust users (``users.py``) and by
the predictor in virtual time (``virtual_run.py``). Nothing here imports locust or gevent or reads a clock.

* :class:`StudentChat` — a student's multi-turn chat: a school question, then ``min_turns``-``max_turns``
  turns of follow-ups in its language, the messages growing with the model's actual replies; a question
  that got no answer is dropped and the conversation goes on.
* :class:`RecipeAsk` — a kitchen app: one ingredient list -> one recipe prompt, no history.
* :class:`BurstQuestion` — one short school question (BurstyUser; its timing is the burst, not think time).
* :func:`think_seconds` — the pause before the next request: the think time, or the failure back-off.

``MODELS`` maps a user class name to its conversation class and ``USER_CLASSES`` lists the names.
"""

from __future__ import annotations

import math
import random

from ollama_locust.scenarios.prompts import PromptSet, recipe_prompt

# After a failure (any class) the next request waits at least 0.25 s, doubling up to 2 s while failures
# go on, or the server's Retry-After (bounded by the client) when longer: a dead, refusing or
# garbage-answering target is not hammered in a tight loop (think time 0 included).
FAILURE_BACKOFF_S = (0.25, 2.0)


def parse_think_time(value) -> tuple[float, float]:
    """``'S'`` or ``'MIN,MAX'`` seconds -> (min, max). Raises ValueError with a one-line message."""
    text = str(value).strip()
    try:
        parts = [float(part) for part in text.split(",")] if text else []
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or parts[0] < 0 or parts[1] < parts[0] or not all(math.isfinite(p) for p in parts):
        raise ValueError(f"--think-time {value!r}: give seconds 'S' or a range 'MIN,MAX' (e.g. 2,8)")
    return parts[0], parts[1]


def think_seconds(rng: random.Random, think_min: float, think_max: float, failures: int = 0,
                  retry_after: float | None = None, backoff: tuple[float, float] = FAILURE_BACKOFF_S) -> float:
    """Seconds a user waits before its next request (``failures``: consecutive failed requests so far)."""
    think = rng.uniform(think_min, think_max)
    if failures:
        first, cap = backoff
        think = max(think, min(cap, first * 2 ** (failures - 1)))
        think = max(think, retry_after or 0.0)
    return think


class StudentChat:
    """A student's conversation: :meth:`ask` gives the messages to send, :meth:`answered` takes the reply."""

    min_turns = 3
    max_turns = 8

    def __init__(self, prompts: PromptSet, rng: random.Random = random, min_turns: int | None = None,
                 max_turns: int | None = None):
        self.prompts = prompts
        self.rng = rng
        self.min_turns = self.min_turns if min_turns is None else min_turns
        self.max_turns = self.max_turns if max_turns is None else max_turns
        self.messages: list[dict] = []
        self.turns_left = 0
        self.lang = "en"

    def ask(self) -> list[dict]:
        if self.turns_left <= 0:
            question = self.rng.choice(self.prompts.school)
            self.messages = []
            self.turns_left = self.rng.randint(self.min_turns, self.max_turns)
            self.lang = question.lang
            text = question.text
        else:
            text = self.rng.choice(self.prompts.followups_for(self.lang))
        self.messages.append({"role": "user", "content": text})
        return self.messages

    def answered(self, ok: bool, reply: str) -> None:
        self.turns_left -= 1
        if ok:
            self.messages.append({"role": "assistant", "content": reply})
        else:
            self.messages.pop()  # the question got no answer; the conversation goes on without it


class RecipeAsk:
    """A kitchen app's request: ingredients in, a recipe (as JSON) out; every request stands alone."""

    def __init__(self, prompts: PromptSet, rng: random.Random = random):
        self.prompts = prompts
        self.rng = rng

    def ask(self) -> list[dict]:
        return [{"role": "user", "content": recipe_prompt(self.rng.choice(self.prompts.recipes))}]

    def answered(self, ok: bool, reply: str) -> None:
        return None


class BurstQuestion:
    """One short school question (BurstyUser), no history."""

    def __init__(self, prompts: PromptSet, rng: random.Random = random):
        short = [p for p in prompts.school if p.length == "short"]
        self.questions = short or list(prompts.school)
        self.rng = rng

    def ask(self) -> list[dict]:
        return [{"role": "user", "content": self.rng.choice(self.questions).text}]

    def answered(self, ok: bool, reply: str) -> None:
        return None


MODELS: dict[str, type] = {"StudentUser": StudentChat, "RecipeUser": RecipeAsk, "BurstyUser": BurstQuestion}
USER_CLASSES = tuple(MODELS)
