"""Run the project's users with Locust in library mode and print every request record as a JSON line.

    python tests/e2e/load/run_users.py URL --users StudentUser:2,RecipeUser:1 --seconds 3 --opt api=openai ...

A subprocess of the tests (gevent's monkey-patching stays out of pytest). Options given with --opt are
set on ``environment.parsed_options`` (a Namespace holding only them; the rest are defaults).
``--stop-after N`` stops the runner once N requests are in flight... see --kill-after. Exit 0.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from locust.env import Environment  # noqa: E402

from ollama_locust import options  # noqa: E402
from ollama_locust.scenarios import users  # noqa: E402


class Sink:
    def __init__(self):
        self.records = []

    def add(self, record):
        self.records.append(dict(record))


def convert(name, text):
    option = options._BY_DEST[name]
    return option.type(text) if option.type is not str else text


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--users", required=True, help="Class:count,...")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--opt", action="append", default=[], help="dest=value")
    parser.add_argument("--stop-timeout", type=float, default=30.0, help="graceful wait for running requests at the end")
    parser.add_argument("--burst-at", type=float, default=None, help="call trigger_burst() after this many seconds")
    args = parser.parse_args()

    parsed = argparse.Namespace()
    for item in args.opt:
        name, _, value = item.partition("=")
        setattr(parsed, name, convert(name, value))
    counts = {}
    for part in args.users.split(","):
        name, _, count = part.partition(":")
        counts[name] = int(count or 1)
    classes = [getattr(users, name) for name in counts]
    for cls in classes:
        cls.fixed_count = counts[cls.__name__]
    env = Environment(user_classes=classes, host=args.url)
    env.parsed_options = parsed
    env.stop_timeout = args.stop_timeout
    sink = Sink()
    env.llm_records = sink
    failures = []
    env.events.request.add_listener(lambda **kw: failures.append(kw["request_type"]))
    runner = env.create_local_runner()
    users.prepare_load_process(env)  # as the plugin does at init, before any user starts
    total = sum(counts.values())
    runner.start(total, spawn_rate=1000)
    if args.burst_at is not None:
        gevent.spawn_later(args.burst_at, users.trigger_burst)
    gevent.sleep(args.seconds)
    stop_time = time.time()
    runner.stop()
    runner.quit()
    for record in sink.records:
        print(json.dumps(record))
    print(json.dumps({"stop_time": stop_time, "locust_events": len(failures), "ttft_events": failures.count("TTFT"),
                      "frozen_objects": gc.get_freeze_count(),
                      "errors": {str(v.error): v.occurrences for v in env.runner.stats.errors.values()}}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
