"""Wires the load model into Locust through its own event hooks (``register(events)`` from the locustfile).

Roles:
* worker — :func:`worker_side.setup_worker`: records shipped to the master every second and with every
  stats report;
* master / single process — a :class:`run_owner.RunOwner` checks the target, warms it up and owns the run
  folder; here it is made, and wired to Locust's events and the workers' messages.

Bad input ends the run here with one line on stderr and exit code 2 (:func:`fail`); SIGTERM does what
Ctrl-C does (:func:`terminate_like_ctrl_c`).
"""

from __future__ import annotations

import json
import logging
import sys

import gevent
from locust.runners import MasterRunner, WorkerRunner

from ollama_locust import contract, options
from ollama_locust.scenarios import clock_sync, locust_spawn_fix, open_loop, plans, preflight, run_folder, secrets
from ollama_locust.scenarios.generator_health import HealthSampler
from ollama_locust.scenarios.request_report import worker_tag
from ollama_locust.scenarios.run_owner import RunOwner
from ollama_locust.scenarios.worker_side import setup_worker

logger = logging.getLogger(__name__)


def fail(message: str) -> None:
    """Bad input: one line on stderr, exit 2 (no traceback)."""
    sys.stderr.write(f"ollama-locust: {message}\n")
    sys.stderr.flush()
    sys.exit(contract.EXIT_BAD_INPUT)


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



def default_user_classes(environment) -> None:
    """No user class named (command line, ``locust.conf``) and no class picker: only the default runs
    (``options.DEFAULT_USER_CLASS``), in the web UI, ``locust --headless`` and ``ollama-locust step`` alike."""
    parsed = environment.parsed_options
    if parsed is None or getattr(parsed, "user_classes", None) or getattr(parsed, "class_picker", False):
        return
    chosen = [cls for cls in environment.user_classes if cls.__name__ == options.DEFAULT_USER_CLASS]
    if chosen and len(chosen) < len(environment.user_classes):
        environment.user_classes = chosen


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
    default_user_classes(environment)
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
    if (recorder.plan[0].rate is not None) if recorder.plan else bool(options.get(environment, "rate")):
        why = open_loop.check_classes(environment.user_classes)
        if why:
            fail(why)
    headless = bool(environment.parsed_options and environment.parsed_options.headless)
    if isinstance(runner, MasterRunner):
        runner.register_message("llm_records", lambda environment, msg, **_kw: recorder.on_worker_records(msg.data))
        runner.register_message("llm_health", lambda environment, msg, **_kw: recorder.on_worker_health(msg.data))
        runner.register_message(clock_sync.PONG, lambda environment, msg, **_kw: recorder.on_clock_pong(msg.data, msg.node_id))
        runner.register_message(open_loop.IN_FLIGHT_MESSAGE, lambda environment, msg, **_kw:
                                recorder.rate_in_flight.__setitem__(msg.node_id, int(msg.data or 0)))

        def on_worker_report(client_id, data, **_kw) -> None:
            recorder.on_worker_records(data.get("llm_records"))
            recorder.on_worker_health(data.get("llm_health"))

        def on_worker_connect(client_id, **_kw) -> None:
            recorder.workers_seen.add(client_id)
            for delay in clock_sync.JOIN_ROUNDS_AT:  # a worker that has just joined answers late for a moment
                gevent.spawn_later(delay, recorder.measure_clocks, [client_id])

        environment.events.worker_report.add_listener(on_worker_report)
        environment.events.worker_connect.add_listener(on_worker_connect)
        gevent.spawn(recorder.clock_loop)
    else:
        environment.llm_records = recorder.sink
        recorder.sampler = HealthSampler(worker_tag(), users=lambda: runner.user_count)
        gevent.spawn(recorder.sampler.run)
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
        if recorder.checked:  # the web UI checked and warmed the target before the start (webui.register)
            recorder.checked = False
            return
        if not headless and not options.get(environment, "skip_preflight"):
            try:
                recorder.check_target()
            except preflight.PreflightError as error:
                logger.error("ollama-locust: %s", error)

    environment.events.test_start.add_listener(on_test_start)
    environment.events.test_stopping.add_listener(lambda environment, **_kw: recorder.cut_short_if_interrupted())
    if not isinstance(runner, MasterRunner):  # open-loop requests still in flight when the test stops: cut short
        environment.events.test_stopping.add_listener(lambda environment, **_kw: recorder.driver and recorder.driver.abort())
    if not headless:  # the web UI's Stop ends the last stage then (headless: the plan's end or finish())
        environment.events.test_stopping.add_listener(lambda environment, **_kw: recorder.end_test())
    environment.events.quitting.add_listener(lambda environment, **_kw: recorder.finish())
    gevent.spawn(recorder.flush_loop)
    gevent.spawn(recorder.sample_loop)
    environment.events.spawning_complete.add_listener(lambda user_count, **_kw: recorder.sample_users())
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
        setup_worker(environment)
    else:
        _setup_master_or_local(environment, web_ui)
    if not isinstance(environment.runner, MasterRunner):  # a load process: its one-off work before any user starts
        from ollama_locust.scenarios.users import prepare_load_process

        prepare_load_process(environment)


class _QuietSpawnRate(logging.Filter):
    """Locust warns about a spawn rate above 100/s at every stage; "all at once" means exactly that."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "spawn rate is very high" not in record.getMessage()


def register(events) -> None:
    locust_spawn_fix.apply()
    logging.getLogger("locust.runners").addFilter(_QuietSpawnRate())
    events.init_command_line_parser.add_listener(options.register)
    events.init.add_listener(on_init)
