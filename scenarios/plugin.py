"""Wires the load model into Locust through its own event hooks (``register(events)`` from the locustfile).

Roles:
* worker — records wait in a :class:`RecordBuffer` and are shipped to the master every second
  (custom message ``llm_records``) and once more with every stats report (``report_to_master``);
* master / single process — checks the target, warms it up, owns the run folder: the stage timeline
  (``stages.csv``), the record sink (``requests.csv``), ``run.json``, and the live progress line.

On Ctrl-C/SIGTERM the users still in a request are cut short at once (recorded as ``cut_short``),
the records that made it are written, and the exit code is 130.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import gevent
import locust
from locust.runners import MasterRunner, WorkerRunner

from ollama_locust import __version__, contract, options
from ollama_locust.scenarios import plans, preflight, progress, run_folder, secrets
from ollama_locust.scenarios.record_sink import RecordBuffer, RecordSink
from ollama_locust.scenarios.stepping import ShapeController
from ollama_locust.scenarios.timeline import StageTimeline

logger = logging.getLogger(__name__)

SHIP_INTERVAL_S = 1.0
FLUSH_INTERVAL_S = 1.0
PROGRESS_INTERVAL_S = 5.0


def fail(message: str) -> None:
    """Bad input: one line on stderr, exit 2 (no traceback)."""
    sys.stderr.write(f"ollama-locust: {message}\n")
    sys.stderr.flush()
    sys.exit(contract.EXIT_BAD_INPUT)


def plan_for(environment) -> list[plans.Stage] | None:
    """The load plan the environment's options ask for (``plans.build_plan`` over them)."""
    return plans.build_plan(**{name: options.get(environment, name) for name in plans.PLAN_OPTIONS})


class RunOwner:
    """Master / single-process side of one run."""

    def __init__(self, environment):
        self.environment = environment
        self.runner = environment.runner
        self.plan = plan_for(environment)
        run_dir = options.get(environment, "run_dir")
        self.path = run_folder.prepare(run_dir) if run_dir else run_folder.create_unique(options.get(environment, "label"))
        self.timeline = StageTimeline(f"{self.path}/{contract.STAGES_FILE}")
        self.sink = RecordSink(f"{self.path}/{contract.REQUESTS_FILE}", self.timeline)
        self.controller: ShapeController | None = None
        self.interrupted = False
        self.closed = False
        self.workers_seen: set[str] = set()
        self.missing_workers: set[str] = set()
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
            "run_dir": self.path,
            **self.context(),
        }
        self.write_info()
        self.reserve = run_folder.reserve(self.path)  # freed on a full disk: room for run.json and the report
        self.write_failed = False

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
            "step_time_s": None if plan is None else plan[0].duration_s,
            "settle_s": None if plan is None else plan[0].settle_s,
            "slo": {"p95_ms": options.get(environment, "slo_p95") or None, "min_success": options.get(environment, "min_success")},
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

    def flush(self) -> None:
        """Write the pending records; a write error (a full disk) stops the run (once)."""
        if not self.sink.flush():
            self.on_write_error(contract.REQUESTS_FILE, self.sink.write_error)

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

    def check_target(self) -> None:
        environment = self.environment
        if not environment.host:
            raise preflight.PreflightError(preflight.NO_HOST)
        key = preflight.api_key(options.get(environment, "api_key_env"))
        model, api = options.get(environment, "model"), options.get(environment, "api")
        target = preflight.check_target(environment.host, model, api, key=key)
        self.info["server_version"] = target.server_version
        if not options.get(environment, "skip_warmup"):
            self.info["warmup"] = preflight.warm_up(environment.host, model, api, key=key,
                                                    timeout=options.get(environment, "request_timeout"))
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
            drain_timeout_s=options.get(environment, "drain_timeout"),
            user_count=lambda: self.runner.user_count,
        )
        environment.llm_shape = self.controller

    def common_target(self) -> tuple[int, float]:
        """Locust's -u/-r as they are now: the web UI's "Edit" of a running test writes the new values here."""
        users = getattr(self.environment.parsed_options, "num_users", None)
        spawn_rate = getattr(self.environment.parsed_options, "spawn_rate", None)
        return (1 if users is None else users), (spawn_rate or 1)

    def flush_loop(self) -> None:
        while not self.closed:
            gevent.sleep(FLUSH_INTERVAL_S)
            self.flush()
            self.note_missing_workers()

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
                                          self.sink.tallies.get(span.stage), left, self.runner.user_count)
            print(line, flush=True)

    def on_worker_records(self, records) -> None:
        if records:
            self.sink.add_many(records)

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
        if isinstance(self.runner, MasterRunner):
            self.info["workers"] = max(self.info["workers"], len(self.workers_seen))
            self.note_missing_workers()
        self.timeline.finish(time.time())
        self.closed = True
        self.flush()  # the last try of what a full disk held back
        self.sink.close()
        self.info.update(ended_at=time.time(), interrupted=self.interrupted, requests=self.sink.total)
        if self.write_failed or self.sink.unwritten:
            self.info["records_unwritten"] = self.sink.unwritten
            self.info.setdefault("write_error", f"{contract.REQUESTS_FILE}: {self.sink.write_error}")
        run_folder.release(self.reserve)
        if controller is not None and controller.failed_stage is not None:
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


def terminate_like_ctrl_c() -> None:
    """SIGTERM does what Ctrl-C does (the running requests cut short and recorded, run.json finalised,
    Locust's CSV and HTML written, exit 130): it raises KeyboardInterrupt in the main greenlet. Installed at start-up, where
    Locust has no handler yet (the target check and warm-up run there), and again when the test starts,
    over Locust's own (which would shut down without the HTML report)."""
    import signal

    global _term_watcher
    if _term_watcher is not None:
        _term_watcher.cancel()
    hub = gevent.get_hub()
    thrown = []

    def on_term() -> None:
        if not thrown:  # once: a second SIGTERM must not interrupt the shutdown of the first
            thrown.append(True)
            hub.parent.throw(KeyboardInterrupt)  # hub.parent: the main greenlet

    _term_watcher = gevent.signal_handler(signal.SIGTERM, on_term)


_term_watcher = None


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


def _setup_worker(environment) -> None:
    buffer = RecordBuffer()
    environment.llm_records = buffer
    runner = environment.runner

    def ship_loop() -> None:
        while True:
            gevent.sleep(SHIP_INTERVAL_S)
            if len(buffer):
                try:
                    runner.send_message("llm_records", buffer.drain())
                except Exception as error:  # a lost connection: Locust reconnects; keep going
                    logger.warning("could not ship records to the master: %s", error)

    def on_report(client_id, data, **_kw) -> None:
        data["llm_records"] = buffer.drain()

    def on_abort(environment, msg, **_kw) -> None:
        environment.stop_timeout = 0
        environment.runner.stop()
        runner.send_message("llm_records", buffer.drain())

    environment.events.report_to_master.add_listener(on_report)
    runner.register_message("llm_abort", on_abort)
    gevent.spawn(ship_loop)


def _apply_default_host(environment) -> None:
    """No host from the command line, locust.conf or LOCUST_HOST: the launcher's default (``step`` names
    it in --run-context), so that locust.conf's ``host =`` wins over step's default."""
    if environment.host:
        return
    try:
        context = json.loads(options.get(environment, "run_context") or "{}")
    except ValueError:
        return
    default = context.get("default_host") if isinstance(context, dict) else None
    if default:
        environment.host = default
        if environment.parsed_options is not None:
            environment.parsed_options.host = default


def _setup_master_or_local(environment, web_ui=None) -> RunOwner:
    _apply_default_host(environment)
    if secrets.has_credentials(environment.host):
        fail(secrets.url_credentials_error(environment.host))
    try:
        recorder = RunOwner(environment)
    except (plans.PlanError, run_folder.RunFolderError) as error:
        fail(str(error))
    environment.llm_run = recorder
    runner = environment.runner
    try:
        from ollama_locust.scenarios.users import check_options

        check_options(environment)
    except ValueError as error:
        fail(str(error))
    headless = bool(environment.parsed_options and environment.parsed_options.headless)
    if isinstance(runner, MasterRunner):
        runner.register_message("llm_records", lambda environment, msg, **_kw: recorder.on_worker_records(msg.data))
        environment.events.worker_report.add_listener(
            lambda client_id, data, **_kw: recorder.on_worker_records(data.get("llm_records")))
        environment.events.worker_connect.add_listener(lambda client_id, **_kw: recorder.workers_seen.add(client_id))
    else:
        environment.llm_records = recorder.sink
    terminate_like_ctrl_c()
    if headless and not options.get(environment, "skip_preflight"):
        try:
            recorder.check_target()
        except preflight.PreflightError as error:
            fail(str(error))
        except KeyboardInterrupt:  # Ctrl-C / SIGTERM during the target check or the warm-up
            recorder.finish()
            sys.stderr.write("ollama-locust: interrupted before the run started (during the target check or the warm-up)\n")
            sys.stderr.flush()
            sys.exit(contract.EXIT_INTERRUPTED)
    recorder.configure()

    def on_test_start(environment, **_kw) -> None:
        terminate_like_ctrl_c()  # again: Locust may have installed its own (which skips the HTML report) since
        if not headless and not options.get(environment, "skip_preflight"):
            try:
                recorder.check_target()
            except preflight.PreflightError as error:
                logger.error("ollama-locust: %s", error)

    environment.events.test_start.add_listener(on_test_start)
    environment.events.test_stopping.add_listener(lambda environment, **_kw: recorder.cut_short_if_interrupted())
    environment.events.quitting.add_listener(lambda environment, **_kw: recorder.finish())
    gevent.spawn(recorder.flush_loop)
    if web_ui is not None:
        from ollama_locust.scenarios import webui

        webui.register(environment, web_ui, recorder)
    if headless:
        gevent.spawn(recorder.progress_loop)
    return recorder


def on_init(environment, runner=None, web_ui=None, **_kw) -> None:
    if environment.runner is None:  # library use without a runner: nothing to record into
        return
    if isinstance(environment.runner, WorkerRunner):
        _setup_worker(environment)
    else:
        _setup_master_or_local(environment, web_ui)


def register(events) -> None:
    events.init_command_line_parser.add_listener(options.register)
    events.init.add_listener(on_init)
