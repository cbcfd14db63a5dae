"""The master's (or a single process's) side of one run: it checks the target, warms it up, and owns the run
folder: the stage timeline (``stages.csv``), the record sink (``requests.csv``), ``run.json``, the live
progress line, and what happens on Ctrl-C/SIGTERM (the users still in a request cut short at once and
recorded as ``cut_short``, the records that made it written, exit code 130). The plugin makes one per run
(``plugin.register``)."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import gevent
import locust
from locust.runners import MasterRunner

from ollama_locust import __version__, contract, options
from ollama_locust.scenarios import clock_sync, open_loop, plans, preflight, progress, run_folder, secrets
from ollama_locust.scenarios.generator_health import HealthLog, HealthSampler
from ollama_locust.scenarios.record_sink import RecordSink
from ollama_locust.scenarios.stepping import ShapeController, burst_due
from ollama_locust.scenarios.timeline import StageTimeline
from ollama_locust.scenarios.worker_side import SHIP_INTERVAL_S

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
PROGRESS_INTERVAL_S = 5.0
USER_SAMPLE_INTERVAL_S = 0.25  # the running user count, for stages.csv users_mean / users_max / reached_s


def plan_for(environment) -> list[plans.Stage] | None:
    """The load plan the environment's options ask for (``plans.build_plan`` over them)."""
    return plans.build_plan(**{name: options.get(environment, name) for name in plans.PLAN_OPTIONS})


class RunOwner:
    """Master / single-process side of one run."""

    def __init__(self, environment):
        self.environment = environment
        self.runner = environment.runner
        self.plan = plan_for(environment)
        self.tests = 1  # tests run from this process (the web UI's "New" starts the next; see new_run)
        self.phase: str | None = None  # what the master is doing before users start ("loading the model ...")
        self.checked = False  # the target was checked (and warmed) for the test about to start
        self.clocks = clock_sync.ClockOffsets()
        self.sampler: HealthSampler | None = None  # the single process's own (workers sample themselves)
        self.reserve = None  # freed on a full disk: room for run.json and the report (open_folder)
        self.write_failed = False
        self.controller: ShapeController | None = None
        self.interrupted = False
        self.closed = False
        self.workers_seen: set[str] = set()
        self.missing_workers: set[str] = set()
        self.bursts_fired: set[int] = set()  # burst stages whose signal went out
        self.driver: open_loop.RateDriver | None = None  # --shape rate in this process (single process)
        self.rate_in_flight: dict[str, int] = {}  # --shape rate on a master: each worker's requests in flight
        self.rate_running = False
        self.worker_tags: dict[str, str] = {}  # a worker's Locust client id -> its worker name (clock offsets)
        self.open_folder(options.get(environment, "run_dir") or None)

    def open_folder(self, path: str | None) -> None:
        """Start writing a run folder (``path``, or a new unique ``runs/<UTC ms>Z-<label>-<hex>``): stages.csv,
        requests.csv (the sink keeps its listeners), generator.csv, run.json."""
        self.path = run_folder.prepare(path) if path else run_folder.create_unique(options.get(self.environment, "label"))
        self.timeline = StageTimeline(f"{self.path}/{contract.STAGES_FILE}")
        listeners = self.sink.listeners if getattr(self, "sink", None) is not None else []
        self.sink = RecordSink(f"{self.path}/{contract.REQUESTS_FILE}", self.timeline)
        self.sink.listeners.extend(listeners)
        if getattr(self, "health", None) is not None:
            self.health.close()
        self.health = HealthLog(f"{self.path}/{contract.GENERATOR_FILE}")
        if not isinstance(self.runner, MasterRunner) and getattr(self.environment, "llm_records", None) is not None:
            self.environment.llm_records = self.sink
        self.info = {
            **self.described(),
            "workers": 0,
            "missing_workers": [],
            "started_at": time.time(),
            "ended_at": None,
            "interrupted": False,
            "stopped_on_failure": None,
            "server_version": None,
            "tool_version": __version__,
            "locust_version": locust.__version__,
            "command": secrets.redact_argv(list(sys.argv)),
            "warmup": None,
            "simulator": None,
            "clock_offsets": self.clocks.summary(),
            "run_dir": self.path,
            **self.context(),
        }
        self.write_info()
        self.reserve = run_folder.reserve(self.path)  # freed on a full disk: room for run.json and the report
        self.write_failed = False

    def next_path(self) -> str | None:
        """The run folder of the next test started from the web UI: ``--run-dir`` + ``-2``, ``-3`` ..., never an
        existing folder; None without ``--run-dir`` (a new unique ``runs/…`` folder, see open_folder)."""
        self.tests += 1
        given = options.get(self.environment, "run_dir")
        if not given:
            return None
        base = f"{given.rstrip('/')}-{self.tests}"
        path, n = base, 2
        while os.path.exists(path):
            path, n = f"{base}-{n}", n + 1
        return path

    def end_test(self, now: float | None = None) -> None:
        """A test ended (the web UI's Stop or the plan's end): the last stage gets its end time, run.json its end."""
        now = time.time() if now is None else now
        self.timeline.finish(now)
        self.flush()
        self.info.update(ended_at=self.info.get("ended_at") or now, requests=self.sink.total)
        self.write_info()

    def new_run(self) -> str:
        """The web UI's "New" after a stop: close this run folder (its report covers that test alone) and open
        the next; stage numbers start at 0 again. Returns the new folder."""
        self.end_test()
        self.sink.close()
        self.open_folder(self.next_path())
        self.controller = None
        self.interrupted = False
        # connected workers do not connect again: they are this test's workers too
        self.workers_seen = {c.id for c in self.runner.clients.all} if isinstance(self.runner, MasterRunner) else set()
        logger.info("ollama-locust: new test, run folder %s", self.path)
        print(f"{progress.PREFIX} new test: run folder {self.path}", flush=True)
        return self.path

    def context(self) -> dict:
        """What the launcher (``ollama-locust step``) knows and the master cannot: ``--run-context``."""
        text = options.get(self.environment, "run_context")
        if not text:
            return {}
        try:
            context = json.loads(text)
        except ValueError:
            raise plans.PlanError(f"--run-context is not a JSON object: {text[:60]!r}") from None
        if not isinstance(context, dict):
            raise plans.PlanError("--run-context must be a JSON object")
        self.stop_with_launcher = context.pop("stop_with_launcher", None)
        return {key: value for key, value in context.items() if value is not None and key != "default_host"}

    def described(self) -> dict:
        """The run.json keys that come from the options and the plan."""
        environment, plan = self.environment, self.plan
        return {
            "label": options.get(environment, "label"),
            "host": secrets.redact_url(environment.host),
            "model": options.get(environment, "model"),
            "api": options.get(environment, "api"),
            "user_classes": sorted(cls.__name__ for cls in environment.user_classes),
            "shape": None if plan is None else options.get(environment, "shape"),
            "steps": [] if plan is None else [stage.users for stage in plan],
            "rates": [] if plan is None else [stage.rate for stage in plan if stage.rate is not None],
            "step_time_s": None if plan is None else plan[0].duration_s,
            "settle_s": None if plan is None else plan[0].settle_s,
            "slo": {"p95_ms": options.get(environment, "slo_p95") or None,
                    "ttft_p95_ms": options.get(environment, "slo_ttft_p95") or None,
                    "min_success": options.get(environment, "min_success")},
            "options": options.values(environment.parsed_options),
        }

    def replan(self) -> None:
        """Rebuild the plan from the options as they are now (the web UI's form just set them); a bad
        value keeps the previous plan."""
        try:
            self.plan = plan_for(self.environment)
        except plans.PlanError as error:
            logger.error("ollama-locust: %s (keeping the previous plan)", error)
        self.configure()

    def configure(self) -> None:
        """Apply the plan and options: the drain's stop timeout, the shape controller, run.json.
        At start-up, and again for a run started from the web UI's form."""
        if self.plan is not None and not self.environment.stop_timeout:
            self.environment.stop_timeout = options.get(self.environment, "drain_timeout")
        self.start_shape()
        self.info.update(self.described())
        self.write_info()

    def write_info(self) -> None:
        try:
            run_folder.write_json(f"{self.path}/{contract.RUN_FILE}", self.info)
        except OSError as error:
            if getattr(self, "write_failed", None) is None:  # the first write, at start-up: a bad run folder
                raise run_folder.RunFolderError(f"cannot write {self.path}/{contract.RUN_FILE} ({error.strerror or error})") from None
            self.on_write_error(f"{contract.RUN_FILE}", error.strerror or str(error))

    def flush(self, pause=None) -> None:
        """Write the pending records (``pause``: see RecordSink.flush); a write error (a full disk) stops the
        run (once)."""
        if not self.sink.flush(pause):
            self.on_write_error(contract.REQUESTS_FILE, self.sink.write_error)
        if not self.health.flush():
            self.on_write_error(contract.GENERATOR_FILE, self.health.write_error)
        if self.timeline.write_error is not None and not self.timeline.write():  # the last stage change's write
            self.on_write_error(contract.STAGES_FILE, self.timeline.write_error)

    def on_write_error(self, name: str, why: str | None) -> None:
        if self.write_failed:
            return
        self.write_failed = True
        self.info["write_error"] = f"{name}: {why}"
        run_folder.release(self.reserve)  # room for run.json and the report of what ran
        self.reserve = None
        sys.stderr.write(f"ollama-locust: cannot write {self.path}/{name} ({why}); stopping the run: the records not "
                         "written yet are kept in memory and retried at the end, the report says how many are missing\n")
        sys.stderr.flush()
        self.environment.process_exit_code = contract.EXIT_WRITE_FAILED
        _quiet_locust_files(self.environment)
        if not self.closed:
            gevent.spawn(self.runner.quit)

    def check_target(self, host: str | None = None, model: str | None = None, api: str | None = None) -> None:
        """Preflight and warm-up. The web UI passes the form's host, model and API (not applied yet)."""
        environment = self.environment
        host = host or environment.host
        if not host:
            raise preflight.PreflightError(preflight.NO_HOST)
        key = preflight.api_key(options.get(environment, "api_key_env"))
        model, api = model or options.get(environment, "model"), api or options.get(environment, "api")
        try:
            self.phase = f"checking {secrets.redact_url(host)}"
            target = preflight.check_target(host, model, api, key=key)
            self.info["server_version"] = target.server_version
            if not options.get(environment, "skip_warmup"):
                self.phase = f"loading the model {model} (warm-up request)"
                self.info["warmup"] = preflight.warm_up(host, model, api, key=key,
                                                        timeout=options.get(environment, "request_timeout"))
            self.phase = "checking that the server sees the prompt"
            self.info["prompt_check"] = preflight.check_prompt_seen(
                host, model, api, key=key, timeout=options.get(environment, "request_timeout"))
        finally:
            self.phase = None
        self.write_info()

    def start_shape(self) -> None:
        environment = self.environment
        parsed = environment.parsed_options
        run_time = getattr(parsed, "run_time", None) if parsed else None
        slo = options.get(environment, "slo_p95") or None
        self.controller = ShapeController(
            self.plan, self.timeline, self.sink.tallies,
            common_target=self.common_target,
            run_time_s=run_time or None,
            stop_on_failure=options.get(environment, "stop_on_failure"),
            min_success=options.get(environment, "min_success"),
            slo_p95_ms=slo,
            slo_ttft_p95_ms=options.get(environment, "slo_ttft_p95") or None,
            drain_timeout_s=options.get(environment, "drain_timeout"),
            user_count=self.load_count,
            on_stage=self.on_stage,
            common_rate=lambda: max(0.0, float(options.get(environment, "rate") or 0.0)),
            **({"lead_s": open_loop.PREPARE_S, "on_prepare": self.prepare_rate}
               if self.plan and self.plan[0].rate is not None else {}),
        )
        environment.llm_shape = self.controller

    def load_count(self) -> int:
        """Users running plus open-loop requests in flight (--shape rate): the drain waits for both."""
        flight = self.driver.in_flight if self.driver is not None else 0
        return self.runner.user_count + flight + sum(self.rate_in_flight.values())

    def prepare_rate(self) -> None:
        """Before a rate plan's first stage: every load process applies the options and starts one instance
        of each user class (``open_loop.RateDriver.prepare``)."""
        environment, first = self.environment, self.plan[0]
        if isinstance(self.runner, MasterRunner):
            for client in self.runner.clients.all:
                order = open_loop.order_for(environment, 0, first.rate, 0, 1, prepare=True)
                self.runner.send_message(open_loop.MESSAGE, order.as_message(), client.id)
        else:
            if self.driver is None:
                self.driver = open_loop.RateDriver(environment)
            self.driver.prepare(open_loop.order_for(environment, 0, first.rate, 0, 1))

    def on_stage(self, stage: plans.Stage | None, span) -> None:
        """A stage began (``stage``, its ``span``) or the plan ended (None): a rate stage's order goes to every
        load process, each with its share (``open_loop.order_for``); anything else ends the arrivals."""
        if stage is None or stage.rate is None:
            if self.rate_running:
                self.rate_running = False
                if isinstance(self.runner, MasterRunner):
                    self.runner.send_message(open_loop.MESSAGE, None)
                elif self.driver is not None:
                    self.driver.stop_arrivals()
            return
        self.rate_running = True
        environment = self.environment
        if isinstance(self.runner, MasterRunner):
            clients = sorted(c.id for c in self.runner.clients.all if c.state != "missing")
            for index, client_id in enumerate(clients):
                # the stage's start on the worker's clock (same machine: offset 0), so that the workers' constant
                # streams interleave at their phase whatever each order's delivery took
                offset = self.clocks.offset(self.worker_tags.get(client_id))
                order = open_loop.order_for(environment, span.stage, stage.rate, index, len(clients),
                                            start=span.start_time + offset)
                self.runner.send_message(open_loop.MESSAGE, order.as_message(), client_id)
        else:
            if self.driver is None:
                self.driver = open_loop.RateDriver(environment)
            self.driver.start(open_loop.order_for(environment, span.stage, stage.rate, 0, 1, start=span.start_time))

    def common_target(self) -> tuple[int, float]:
        """Locust's -u/-r as they are now: the web UI's "Edit" of a running test writes the new values here."""
        users = getattr(self.environment.parsed_options, "num_users", None)
        spawn_rate = getattr(self.environment.parsed_options, "spawn_rate", None)
        return (1 if users is None else users), (spawn_rate or 1)

    def flush_loop(self) -> None:
        while not self.closed:
            gevent.sleep(FLUSH_INTERVAL_S)
            self.collect_health()
            self.flush(pause=gevent.sleep)
            self.note_missing_workers()

    def collect_health(self) -> None:
        """This process's own generator samples into the health log (a single process; workers send theirs).
        The progress line calls it too: a flush under a starved hub pauses between batches for seconds."""
        if self.sampler is not None:
            self.health.add_many(self.sampler.drain())

    def note_missing_workers(self) -> None:
        """Locust forgets a dead worker soon after it stops answering heartbeats: remember it here."""
        if not isinstance(self.runner, MasterRunner):
            return
        missing = {client.id for client in self.runner.clients.missing} - self.missing_workers
        for worker in missing:
            logger.warning("worker %s stopped answering: its records so far are kept", worker)
            print(f"{progress.PREFIX} worker {worker} went missing; its records so far are kept", flush=True)
        if missing:
            self.missing_workers |= missing
            self.info["missing_workers"] = sorted(self.missing_workers)
            self.write_info()

    def sample_users(self) -> None:
        """The running user count into the stage timeline (on a master: the sum the workers reported);
        a burst stage's signal once its users run (``stepping.burst_due``)."""
        now = time.time()
        self.timeline.sample(now, self.runner.user_count)
        span = self.timeline.current
        if span is None or span.stage in self.bursts_fired:
            return
        planned = self.plan[span.stage].duration_s if self.plan and span.stage < len(self.plan) else 0.0
        if burst_due(span, planned, now):
            self.bursts_fired.add(span.stage)
            from ollama_locust.scenarios.users import fire_burst

            fire_burst(self.environment)
            logger.info("stage %d: burst fired with %d users running", span.stage, self.runner.user_count)

    def sample_loop(self) -> None:
        while not self.closed:
            self.sample_users()
            span = self.timeline.current
            burst_pending = span is not None and span.kind == "burst" and span.stage not in self.bursts_fired
            gevent.sleep(0.02 if burst_pending else USER_SAMPLE_INTERVAL_S)

    def progress_loop(self) -> None:
        while not self.closed:
            gevent.sleep(PROGRESS_INTERVAL_S)
            controller = self.controller
            span = self.timeline.current
            if controller is None or span is None or controller.drain_started_at is not None:
                continue
            left = None
            if self.plan is not None and controller.started_at is not None:
                left = plans.total_duration(self.plan) - (time.time() - controller.started_at)
            line = progress.progress_line(span.stage, len(self.plan) if self.plan else None, span.users,
                                          self.sink.tallies.get(span.stage), left,
                                          self.runner.user_count if span.rate is None else self.load_count(), span.rate)
            self.collect_health()
            warning = self.health.warning()
            print(line + (f" | WARNING {warning}" if warning else ""), flush=True)

    def on_worker_records(self, records) -> None:
        if records:
            self.sink.add_many([self.clocks.correct(record) for record in records])

    def on_worker_health(self, samples) -> None:
        self.health.add_many([self.clocks.correct(sample, "time") for sample in samples or () if isinstance(sample, dict)])

    def on_clock_pong(self, data, client_id: str | None = None) -> None:
        if isinstance(data, dict) and client_id and data.get("worker"):
            self.worker_tags[client_id] = str(data["worker"])  # Locust's client id -> the records' worker name
        if isinstance(data, dict) and self.clocks.on_pong(data):
            self.info["clock_offsets"] = self.clocks.summary()

    def measure_clocks(self, client_ids) -> None:
        """One round of pings to each worker (on join, then every clock_sync.EVERY_S)."""
        self.clocks.new_round()
        for _ in range(clock_sync.ROUNDS):
            for client_id in client_ids:
                try:
                    self.runner.send_message(clock_sync.PING, self.clocks.ping(), client_id)
                except Exception as error:  # a worker that just left: the next round tries again
                    logger.debug("clock ping to %s failed: %s", client_id, error)
            gevent.sleep(clock_sync.GAP_S)
        gevent.sleep(0.5)  # the answers arrive
        self.write_info()

    def clock_loop(self) -> None:
        while not self.closed:
            gevent.sleep(clock_sync.EVERY_S)
            if not self.closed:
                self.measure_clocks([client.id for client in self.runner.clients.all])

    def cut_short_if_interrupted(self) -> None:
        """A stop before the plan ended (Ctrl-C, SIGTERM, the web UI's stop): requests still running are
        cut short at once and recorded as such, instead of being waited for."""
        if self.controller is not None and self.controller.finished:
            return
        self.environment.stop_timeout = 0
        if isinstance(self.runner, MasterRunner):
            for client in self.runner.clients.all:
                self.runner.send_message("llm_abort", None, client.id)

    def finish(self) -> None:
        """Stop what still runs, write every record that arrived, close the run folder."""
        if self.closed:
            return
        controller = self.controller
        self.interrupted = controller is None or not controller.finished
        if self.interrupted:
            self.cut_short_if_interrupted()
            if isinstance(self.runner, MasterRunner):
                gevent.sleep(SHIP_INTERVAL_S + 0.5)  # the workers' cut-short records arrive
            else:
                self.runner.stop()
        if self.driver is not None:  # open-loop requests still in flight: cut short and recorded (also when a
            self.driver.abort()      # second signal broke into Locust's stop before its test_stopping listeners ran)
        if isinstance(self.runner, MasterRunner):
            self.info["workers"] = max(self.info["workers"], len(self.workers_seen))
            self.note_missing_workers()
        self.timeline.finish(time.time())
        self.closed = True
        self.collect_health()
        self.flush()  # the last try of what a full disk held back
        self.sink.close()
        self.health.close()
        self.info.update(ended_at=self.info.get("ended_at") or time.time(), interrupted=self.interrupted,
                         requests=self.sink.total)
        if self.write_failed or self.sink.unwritten:
            self.info["records_unwritten"] = self.sink.unwritten
            self.info.setdefault("write_error", f"{contract.REQUESTS_FILE}: {self.sink.write_error}")
        run_folder.release(self.reserve)
        self.reserve = None
        if controller is not None and controller.failed_stage is not None and controller.stop_on_failure \
                and controller.failed_stage < len(self.plan or ()) - 1:  # stepping stopped: later stages did not run
            self.info["stopped_on_failure"] = {"stage": controller.failed_stage, "reason": controller.failure_reason}
        self.write_info()
        if self.interrupted and not self.write_failed:
            self.environment.process_exit_code = contract.EXIT_INTERRUPTED
        self.stop_orphaned_simulator()
        try:  # (a launcher that died took the pipe with it)
            if self.sink.unwritten:
                sys.stderr.write(f"ollama-locust: {self.sink.unwritten} of {self.sink.total} records could not be written "
                                 f"to {self.path}/{contract.REQUESTS_FILE} ({self.sink.write_error}); they are lost\n")
            print(f"{progress.PREFIX} run folder: {self.path} ({self.sink.total} requests)", flush=True)
        except OSError:
            pass

    def stop_orphaned_simulator(self) -> None:
        """``step --sim`` died (kill -9) before this master ended: stop its simulator now, after the load
        (step would have, had it lived), so that nothing outlives step and the target outlives the load."""
        import os
        import signal

        orphan = getattr(self, "stop_with_launcher", None)
        if not isinstance(orphan, dict) or not orphan.get("simulator_pid"):
            return
        if os.getppid() == orphan.get("launcher_pid"):
            return  # step is alive: it stops the simulator itself
        try:
            os.kill(int(orphan["simulator_pid"]), signal.SIGTERM)
        except (OSError, ValueError, TypeError):
            pass



def _quiet_locust_files(environment) -> None:
    """The disk is full: Locust's HTML report is not attempted (it would fail with a traceback before the
    run is finalised) and closing its CSV files may fail quietly; the records and run.json go first."""
    parsed = environment.parsed_options
    if parsed is not None and getattr(parsed, "html_file", None):
        parsed.html_file = None
    writer = getattr(environment, "stats_csv_writer", None)
    close = getattr(writer, "close_files", None)
    if close is not None:
        def close_files() -> None:
            try:
                close()
            except OSError:
                pass

        writer.close_files = close_files

