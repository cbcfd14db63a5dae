"""`ollama-locust probe --host URL --model M`: measure a server briefly and fit the simulator's timing model.

A bounded sequence (every request's timeout is cut to what is left of ``--max-time``; a phase that no
longer fits is skipped and said so):

1. the target check and the warm-up of a step test (``scenarios/preflight.py``: the same one-line errors),
   the warm-up's load time (a cold load only when the model was not loaded, or with ``--cold``);
   Ollama only: ``/api/ps`` (loaded?) and ``/api/show`` (parameters, context, quantisation, KV cache/slot);
2. lone requests at 3 prompt lengths from the prompt sets (short and long school questions, and all long
   ones joined): the prefill rate (prompt tokens / prompt eval time) and the decode rate of one stream;
   then, with a prompt cache, a follow-up pair: does a follow-up compute the previous reply again?
3. the user class's own prompts, uncapped: the reply-length distribution (the server's eval counts);
4. 2, 4 (and 8 when the server is fast) simultaneous capped streams: how many started before the first
   ended (the effective slots: requests queue by whole requests beyond them) and the per-stream decode
   rate while they shared: the batching curve (a step with m busy slots lasts ``decode_1 / rate_m`` one-stream
   steps, ``server.batch_curve``) and its least-squares line ``1 + beta (m - 1)``.

Ollama's own durations are used when the reply has them; else (OpenAI-compatible API, a gateway) client
timings, and ``probe.json``'s ``estimates`` lists what is then estimated. The fitted server is
``probe.json``'s ``server`` object: the simulator's profile fields (``simulator/profiles.py``), its
NUM_PARALLEL, and the client overhead and prompt-token scale ``predict`` needs.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
import uuid

from ollama_locust import __version__, contract, options
from ollama_locust.scenarios import plans, preflight, run_folder, secrets
from ollama_locust.scenarios.fit import FitError, fit_server, prompt_tokens, round_facts
from ollama_locust.scenarios.fit import median as _median
from ollama_locust.scenarios.prompts import PromptsError, load_prompts
from ollama_locust.scenarios.user_model import MODELS
from ollama_locust.simulator.profiles import PROBE_FORMAT
from ollama_locust.simulator.text import count_prompt_tokens

PROG = "ollama-locust probe"
CAPPED_TOKENS = 32  # output tokens of the prefill and concurrency requests (num_predict)
REPLY_SAMPLES = 48  # uncapped requests of the user class's prompts, at most (fewer when time is short)
MIN_REPLY_SAMPLES = 3
ROUNDS = (2, 4, 8)  # simultaneous streams; 8 only when the 4-stream round took little of the budget
LONE_REQUESTS = 6  # 3 prompt lengths, twice
FOLLOW_UP_REPLY_TOKENS = 64  # the first answer of the follow-up pair: long enough that computing it again shows
# Generation requests at most: --cold's unload, the warm-up, the lone requests, the prompt-cache pair and its
# check after the rounds, the follow-up pair, the rounds, the reply samples (the target check's GETs and
# /api/show come on top). ``requests`` in probe.json.
MAX_REQUESTS = 1 + 1 + LONE_REQUESTS + 3 + 2 + sum(ROUNDS) + REPLY_SAMPLES


class ProbeError(Exception):
    """The probe cannot go on (one line)."""


class Probe:
    """The measurement: holds the budget, the requests sent and what they measured."""

    def __init__(self, host: str, model: str, api: str, *, key: str | None, max_time_s: float, user_class: str,
                 prompts, max_streams: int = 8, request_timeout: float = 300.0, first_token_timeout: float = 120.0,
                 cold: bool = False, num_predict: int = 0, log=print):
        self.host, self.model, self.api, self.key = host.rstrip("/"), model, api, key
        self.max_time_s = max_time_s
        self.deadline = time.perf_counter() + max_time_s
        self.user_class = user_class
        self.prompts = prompts
        self.max_streams = max_streams
        self.request_timeout, self.first_token_timeout = request_timeout, first_token_timeout
        self.cold = cold
        self.num_predict = num_predict  # the users' cap (--num-predict): the reply samples get the same
        self.log = log
        self.requests = 0
        self.records: list[dict] = []
        self.skipped: list[str] = []
        self.estimates: list[str] = []
        self.rng = random.Random(0)

    # -- requests ---------------------------------------------------------------------------------
    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def client(self, num_predict: int):
        from ollama_locust.scenarios.clients import CLIENTS

        left = max(1.0, self.left())
        return CLIENTS[self.api](self.host, self.model, num_predict=num_predict, api_key=self.key,
                                 request_timeout=min(self.request_timeout, left),
                                 first_token_timeout=min(self.first_token_timeout, left))

    def send(self, client, messages: list[dict], phase: str, json_format=False) -> dict:
        return self.send_for_text(client, messages, phase, json_format)[0]

    def send_for_text(self, client, messages: list[dict], phase: str, json_format=False) -> tuple[dict, str]:
        """One request of the probe: (its record, the reply text)."""
        left = self.left()
        client.request_timeout = min(self.request_timeout, max(0.5, left))
        client.first_token_timeout = min(self.first_token_timeout, max(0.5, left))
        record, text = client.chat(messages, json_format=json_format)
        self.requests += 1
        record["phase"] = phase
        record["counted_prompt_tokens"] = _counted(messages)
        record["counted_text_tokens"] = sum(count_prompt_tokens(str(m.get("content", ""))) for m in messages)
        self.records.append(record)
        return record, text

    def concurrent(self, k: int, phase: str) -> list[dict]:
        import gevent

        clients = [self.client(CAPPED_TOKENS) for _ in range(k)]
        try:
            questions = [p for p in self.prompts.school if p.length == "short"] or list(self.prompts.school)
            jobs = [gevent.spawn(self.send, c, [{"role": "user", "content": _tagged(self.rng.choice(questions).text)}], phase)
                    for c in clients]
            gevent.joinall(jobs, timeout=max(1.0, self.left() + 1.0))
            return [job.value for job in jobs if job.successful() and job.value is not None]
        finally:
            for c in clients:
                c.close()

    # -- the phases -------------------------------------------------------------------------------
    def run(self) -> dict:
        started = time.time()
        info = preflight.check_target(self.host, self.model, self.api, key=self.key)
        show, loaded_before = self.ollama_facts()
        if self.cold and self.api in contract.OLLAMA_NATIVE_APIS:
            self.unload()
            loaded_before = False
        warm = preflight.warm_up(self.host, self.model, self.api, key=self.key, timeout=max(1.0, min(600.0, self.left())))
        self.requests += 1
        if warm.get("outcome") not in ("ok", "skipped"):
            raise ProbeError(f"the warm-up request failed: {warm.get('error') or warm.get('outcome')}")
        lone = self.lone_requests()
        cache = self.prompt_cache()
        follow_up = self.follow_up(cache)
        rounds = self.concurrency()
        self.cache_beyond_slots(cache, rounds)
        replies = self.reply_lengths()
        fit = self.fit(warm, loaded_before, lone, rounds, follow_up)
        fit["prompt_cache"] = bool(cache.get("cached"))
        fit["prompt_cache_beyond_slots"] = bool(cache.get("beyond_slots"))
        return {
            "format": PROBE_FORMAT,
            "tool_version": __version__,
            "target": {"host": secrets.redact_url(self.host), "model": self.model, "api": self.api,
                       "server_version": info.server_version},
            "started_at": started, "elapsed_s": round(time.time() - started, 3), "max_time_s": self.max_time_s,
            "requests": self.requests,
            "timing_source": fit.pop("timing_source"),
            "estimates": self.estimates, "skipped": self.skipped,
            "server": fit,
            "reply_tokens": {self.user_class: replies},
            "warm_up": {**warm, "model_was_loaded": loaded_before},
            "show": show,
            "measurements": {"lone": [_brief(r) for r in lone], "rounds": rounds, "prompt_cache": cache,
                             "follow_up": follow_up,
                             "replies": [_brief(r) for r in self.records if r["phase"] == "replies"]},
        }

    def ollama_facts(self) -> tuple[dict | None, bool | None]:
        """Ollama only: /api/show's figures and whether the model is loaded now (/api/ps)."""
        if self.api not in contract.OLLAMA_NATIVE_APIS:
            self.estimates.append("model facts (/api/show) and the load state: not available through this API")
            return None, None
        loaded = None
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        try:
            ps = preflight._request(self.host + "/api/ps", headers=headers, timeout=10).json()
            names = [str(m.get("name") or m.get("model")) for m in ps.get("models") or [] if isinstance(m, dict)]
            loaded = any(preflight._same_model(self.model, n) for n in names)
        except (preflight.PreflightError, ValueError, AttributeError):
            pass
        try:
            answer = preflight._request(self.host + "/api/show", headers=headers, timeout=10, payload={"model": self.model})
            body = answer.json() if answer.status == 200 else {}
        except (preflight.PreflightError, ValueError):
            body = {}
        return show_facts(body), loaded

    def unload(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        try:
            preflight._request(self.host + "/api/generate", headers=headers, timeout=30,
                               payload={"model": self.model, "keep_alive": 0})
            self.requests += 1
        except preflight.PreflightError:
            pass

    def lone_requests(self) -> list[dict]:
        school = list(self.prompts.school)
        short = [p.text for p in school if p.length == "short"] or [p.text for p in school]
        long = [p.text for p in school if p.length == "long"] or short
        texts = [self.rng.choice(short), self.rng.choice(long), " ".join(long)]
        out = []
        client = self.client(CAPPED_TOKENS)
        try:
            for repeat in range(2):
                for text in texts:
                    if self.left() < 0.25 * self.max_time_s and out:
                        self.skipped.append(f"lone requests after {len(out)}: not enough time left (--max-time)")
                        return out
                    record = self.send(client, [{"role": "user", "content": _tagged(text)}], "lone")
                    if record["outcome"] == contract.OK:
                        out.append(record)
        finally:
            client.close()
        if not out:
            raise ProbeError("no lone request succeeded: the server answers nothing the probe can measure")
        return out

    def prompt_cache(self) -> dict:
        """Does the server keep an evaluated prompt (Ollama and llama-server keep each slot's last one)? The
        same long prompt twice: a cached one is prefilled again in a fraction of the time."""
        school = list(self.prompts.school)
        self.cache_text = _tagged(" ".join(p.text for p in school if p.length == "long") or school[0].text)
        pair = [self.cache_request() for _ in range(2)]
        if any(r["outcome"] != contract.OK or r.get("ttft_ms") is None for r in pair):
            self._estimate("prompt cache: not measured (a request failed); none assumed")
            return {"cached": None}
        server_side = all(r.get("prompt_eval_ms") is not None for r in pair)
        first, again = (prefill_ms(r) for r in pair)
        if not server_side:
            self._estimate("prompt cache: judged from TTFT (no prompt_eval_duration)")
        cached = again < 0.5 * first if first > 20.0 else None
        if cached is None:
            self._estimate("prompt cache: the prefill is too fast to tell; none assumed")
        return {"cached": cached, "first_ms": round(first, 3), "again_ms": round(again, 3),
                "from": "prompt_eval_ms" if server_side else "ttft_ms"}

    def follow_up(self, cache: dict) -> dict:
        """Does the server compute a conversation's previous reply again on a follow-up? (llama-server with a
        plain chat template does: its cached prompt stops where the reply began.) A short question with a
        reply of up to FOLLOW_UP_REPLY_TOKENS tokens, then that conversation with a follow-up question; the
        fit (``fit.reply_reprefilled``) sets the follow-up's prefill against its new tokens with and without
        the reply. Only with a prompt cache: without one every follow-up is prefilled whole anyway."""
        if not cache.get("cached"):
            return {"measured": False}
        if self.left() < 0.6 * self.max_time_s:
            self.skipped.append("the follow-up pair: not enough time left (--max-time); the previous reply assumed kept")
            return {"measured": False}
        questions = [p.text for p in self.prompts.school if p.length == "short"] or [p.text for p in self.prompts.school]
        conversation = [{"role": "user", "content": _tagged(self.rng.choice(questions))}]
        client = self.client(FOLLOW_UP_REPLY_TOKENS)
        try:
            first, reply = self.send_for_text(client, conversation, "follow-up")
            if first["outcome"] != contract.OK or not reply:
                return {"measured": False}
            conversation += [{"role": "assistant", "content": reply},
                             {"role": "user", "content": self.rng.choice(self.prompts.followups_for("en"))}]
            client.num_predict = 4
            second = self.send(client, conversation, "follow-up")
        finally:
            client.close()
        if second["outcome"] != contract.OK or second.get("ttft_ms") is None:
            return {"measured": False}
        return {"measured": True, "first": _brief(first), "second": _brief(second)}

    def cache_request(self) -> dict:
        client = self.client(4)
        try:
            return self.send(client, [{"role": "user", "content": self.cache_text}], "cache")
        finally:
            client.close()

    def cache_beyond_slots(self, cache: dict, rounds: list[dict]) -> None:
        """Does the server keep prompts beyond its slots (llama-server's host-memory cache, ``--cache-ram``) or
        only each slot's last one (Ollama)? After the rounds, whose fresh prompts went through every slot, the
        cache phase's long prompt once more: prefilled in a fraction of its first time, it was kept."""
        cache["beyond_slots"] = None
        if not cache.get("cached"):
            return
        slots = max((r.get("started_together") or 0 for r in rounds), default=0)
        if not slots or slots >= max(r["streams"] for r in rounds):
            self._estimate("prompt cache beyond the slots: not measured (no round ran more streams than the "
                           "slots); only the slots' last conversations assumed")
            return
        if self.left() < 1.5 * cache["first_ms"] / 1000:
            self.skipped.append("prompt cache beyond the slots: not enough time left (--max-time); only the slots' "
                                "last conversations assumed")
            return
        record = self.cache_request()
        if record["outcome"] != contract.OK or record.get("ttft_ms") is None:
            return
        after = prefill_ms(record)
        cache.update(beyond_slots=after < 0.5 * cache["first_ms"], after_rounds_ms=round(after, 3))

    def reply_lengths(self) -> list[int]:
        json_format = False
        if self.user_class == "RecipeUser":
            from ollama_locust.scenarios.recipe import request_format

            json_format = request_format(options.default("recipe_format"))
        client = self.client(self.num_predict)
        lengths: list[int] = []
        try:
            for index in range(REPLY_SAMPLES):
                per_request = _median([r["e2e_ms"] / 1000 for r in self.records if r["phase"] == "replies"]) or 0.0
                if index >= MIN_REPLY_SAMPLES and self.left() < 1.2 * per_request:
                    self.skipped.append(f"reply lengths: {index} samples of at most {REPLY_SAMPLES} (--max-time; a "
                                        "longer one gives more)")
                    break
                # the prompts exactly as the users send them (no tag: a reply's length is the point here)
                messages = [dict(m) for m in MODELS[self.user_class](self.prompts, self.rng).ask()]
                record = self.send(client, messages, "replies", json_format=json_format)
                if record["outcome"] in (contract.OK, contract.INVALID) and record.get("output_tokens"):
                    lengths.append(int(record["output_tokens"]))
                    if record.get("tokens_estimated"):
                        self._estimate("reply lengths: counted from content chunks (the server reports no eval_count)")
        finally:
            client.close()
        return lengths

    def concurrency(self) -> list[dict]:
        rounds = []
        lone = [r for r in self.records if r["phase"] == "lone" and r["outcome"] == contract.OK]
        capped_s = _median([r["e2e_ms"] / 1000 for r in lone]) or 1.0
        tokens = _median([r.get("output_tokens") for r in lone]) or CAPPED_TOKENS
        expected = self.num_predict or 150  # a reply's tokens: the users' cap, else a typical answer
        replies_s = MIN_REPLY_SAMPLES * capped_s * max(1.0, expected / tokens)  # kept for the reply samples
        for k in ROUNDS:
            if k > self.max_streams:
                break
            slots = max([r["started_together"] or 1 for r in rounds] or [1])
            need = capped_s * math.ceil(k / slots) * 1.2 + replies_s  # the k requests, slots at a time
            if k == 8 and self.left() - need < 0.1 * self.max_time_s:
                self.skipped.append("8 simultaneous streams: the server is too slow for the time left (--max-time)")
                break
            if self.left() < need:
                self.skipped.append(f"{k} simultaneous streams: not enough time left (--max-time)")
                break
            records = self.concurrent(k, f"streams-{k}")
            rounds.append(round_facts(k, records))
        return rounds

    def _estimate(self, what: str) -> None:
        if what not in self.estimates:
            self.estimates.append(what)

    # -- the fit ----------------------------------------------------------------------------------
    def fit(self, warm: dict, loaded_before, lone: list[dict], rounds: list[dict], follow_up: dict) -> dict:
        replies = [int(r["output_tokens"]) for r in self.records if r["phase"] == "replies" and r.get("output_tokens")]
        try:
            server, estimates = fit_server(lone, rounds, warm.get("load_ms"), replies, follow_up)
        except FitError as error:
            raise ProbeError(str(error)) from None
        for what in estimates:
            self._estimate(what)
        if warm.get("load_ms") is None:
            self._estimate("load time: the warm-up reports no load_duration; taken as 0")
        elif loaded_before:
            self._estimate("load time: the model was loaded already (the warm-up's load time is not a cold load; "
                           "--cold measures one)")
        return server


# -- pure pieces (unit-tested) -----------------------------------------------------------------------

def show_facts(body: dict) -> dict | None:
    """What /api/show says that matters for capacity, and the KV cache one more slot costs at num_ctx 4096."""
    if not isinstance(body, dict) or not body:
        return None
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    info = body.get("model_info") if isinstance(body.get("model_info"), dict) else {}
    arch = info.get("general.architecture") or details.get("family")

    def number(key):
        value = info.get(f"{arch}.{key}")
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    layers, heads, kv_heads = number("block_count"), number("attention.head_count"), number("attention.head_count_kv")
    embedding, key_len = number("embedding_length"), number("attention.key_length")
    value_len = number("attention.value_length")
    head_dim = key_len or (embedding // heads if embedding and heads else None)
    num_ctx = 4096
    kv = None
    if layers and (kv_heads or heads) and head_dim:
        kv = int(layers * (kv_heads or heads) * (head_dim + (value_len or head_dim)) * num_ctx * 2)  # f16 K and V
    return {"architecture": arch, "parameter_size": details.get("parameter_size"),
            "quantization_level": details.get("quantization_level"), "context_length": number("context_length"),
            "parameters": body.get("parameters") or "",
            "kv_cache_bytes_per_slot": kv, "kv_cache_num_ctx": num_ctx if kv else None,
            "kv_cache_note": None if kv else "n/a: /api/show lacks the layer/head counts needed"}


def _counted(messages: list[dict]) -> int:
    return prompt_tokens(messages)


def prefill_ms(record: dict) -> float:
    """A request's prefill time: the server's prompt eval duration, else its TTFT."""
    return record["prompt_eval_ms"] if record.get("prompt_eval_ms") is not None else record["ttft_ms"]


def _tagged(text: str) -> str:
    """A fresh tag in front, so a server's prompt cache cannot hold the prompt (as the preflight does)."""
    return f"({uuid.uuid4().hex[:8]}) {text}"


def _brief(record: dict) -> dict:
    keys = ("outcome", "ttft_ms", "e2e_ms", "output_tokens", "prompt_tokens", "tokens_per_s", "load_ms",
            "prompt_eval_ms", "eval_ms", "queue_wait_ms", "counted_prompt_tokens", "counted_text_tokens")
    return {k: record.get(k) for k in keys}


def cache_words(server: dict) -> str:
    if not server.get("prompt_cache"):
        return "not seen"
    scope = ("every conversation, beyond the slots" if server.get("prompt_cache_beyond_slots")
             else "each slot's last conversation")
    again = {True: "; a follow-up computes the previous reply again", False: "; a follow-up keeps the previous reply",
             None: ""}[server.get("reply_reprefilled")]
    return f"yes, {scope} (a follow-up prefills only its new tokens{again})"


def batching(server: dict) -> str:
    """The fitted batching curve in words: how long a decode step with m busy slots lasts."""
    curve = server.get("batch_curve") or []
    if not curve:
        return (f"batch slowdown beta {server['beta']:.2f} (a step with m busy slots lasts 1 + beta (m - 1) "
                "one-stream steps)")
    points = ", ".join(f"{factor:.2f}x with {m}" for m, factor in curve)
    return (f"a decode step with m busy slots lasts {points} (one stream's step = 1x; straight lines between, "
            f"least-squares beta {server['beta']:.2f})")


def summary(data: dict) -> str:
    s = data["server"]
    lines = [f"probe of {data['target']['model']} at {data['target']['host']} ({data['target']['api']}): "
             f"{data['requests']} requests in {data['elapsed_s']:.0f} s (max {data['max_time_s']:g} s), "
             f"timings from the {data['timing_source']}",
             f"  prefill {s['prefill_tps']:.0f} prompt tokens/s; decode {s['decode_tps']:.1f} tokens/s (one stream); "
             f"load {s['load_time']:.2f} s",
             f"  prompt cache: {cache_words(s)}",
             f"  effective slots (NUM_PARALLEL) {s['num_parallel']}; " + batching(s)]
    for r in data["measurements"]["rounds"]:
        rate = f"{r['per_stream_tps']:.1f}" if r.get("per_stream_tps") else "n/a"
        lines.append(f"  {r['streams']} streams: {r['started_together']} ran at once, {rate} tokens/s each")
    replies = data["reply_tokens"].get(next(iter(data["reply_tokens"]))) or []
    if replies:
        lines.append(f"  reply tokens ({next(iter(data['reply_tokens']))}): median {statistics.median(replies):g}, "
                     f"min {min(replies)}, max {max(replies)} over {len(replies)} replies")
    show = data.get("show") or {}
    if show.get("kv_cache_bytes_per_slot"):
        lines.append(f"  KV cache per extra slot at num_ctx {show['kv_cache_num_ctx']}: "
                     f"{show['kv_cache_bytes_per_slot'] / 2**20:.0f} MiB")
    for what in data["estimates"]:
        lines.append(f"  estimate: {what}")
    for what in data["skipped"]:
        lines.append(f"  skipped: {what}")
    return "\n".join(lines)


# -- the command ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = options.OneLineParser(prog=PROG, description="Measure a server briefly (bounded by --max-time) and fit the simulator's "
                     "timing model to it: writes OUT/probe.json (replacing one there) for 'ollama-locust predict' and "
                     "'ollama-locust sim --profile-file'.")
    options.add_planning(parser, options.PROBE_ROWS, ("host", "max_time", "cold", "max_streams", "user_class", "out"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if secrets.has_credentials(args.host):
            raise ProbeError(secrets.url_credentials_error(args.host))
        max_time = plans.parse_duration(args.max_time, "--max-time")
        if max_time <= 0:
            raise ProbeError("--max-time must be more than 0 s")
        if args.user_class not in MODELS:
            raise ProbeError(f"unknown user class '{args.user_class}'; available: {', '.join(MODELS)}")
        prompts = load_prompts(args.prompts or None)
        out = run_folder.prepare(args.out)
        probe = Probe(args.host, args.model, args.api, key=preflight.api_key(args.api_key_env), max_time_s=max_time,
                      user_class=args.user_class, prompts=prompts, max_streams=args.max_streams,
                      request_timeout=args.request_timeout, first_token_timeout=args.first_token_timeout,
                      cold=args.cold, num_predict=args.num_predict)
        data = probe.run()
    except preflight.PreflightError as error:
        print(f"ollama-locust: {error}", file=sys.stderr)  # the line `step` prints for the same target
        return contract.EXIT_BAD_INPUT
    except (ProbeError, PromptsError, plans.PlanError, run_folder.RunFolderError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return contract.EXIT_BAD_INPUT
    path = os.path.join(out, contract.PROBE_FILE)
    run_folder.write_json(path, data)
    text = summary(data)
    with open(os.path.join(out, "probe.md"), "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    print(text)
    print(f"wrote {path}; next: ollama-locust predict {path} --users 1,3,5,10 --step-time 60s")
    return 0
