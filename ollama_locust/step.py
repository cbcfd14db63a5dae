"""`ollama-locust step`: one command from "is it up?" to the results table.

It parses only its own orchestration flags; every other option (``--model``, ``--api``,
``--think-time``, any Locust option) is passed through to ``locust``, so the step command, the web UI,
``locust.conf`` and env vars never disagree. It

1. checks the user counts and durations, starts the embedded simulator when ``--sim`` is given,
2. checks the target (reachable, Ollama-shaped, model present): a clear line and exit 2 if not,
3. runs Locust headless with the step shape — in one process, with ``--workers N`` local worker
   processes, or as a master waiting for ``--expect-workers N`` remote workers,
4. shows the live progress line, and finally writes and prints the report.

Exit codes: 0 the run completed (thresholds are findings, not errors); 2 bad input or an unusable
target; 3 with ``--fail-on-slo`` when a step failed the thresholds; 4 the run folder could not be written
(a full disk: the run stopped, the report says what is missing); 130 interrupted (the report of what
ran is still written).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from ollama_locust import contract, options
from ollama_locust.scenarios import plans, run_folder, secrets
from ollama_locust.scenarios.progress import PREFIX
from ollama_locust.simulator.profiles import DEFAULT_PROFILE

EXIT_BAD_INPUT, EXIT_SLO_FAILED, EXIT_INTERRUPTED = contract.EXIT_BAD_INPUT, contract.EXIT_SLO_FAILED, contract.EXIT_INTERRUPTED


class StepError(Exception):
    """Bad input for `step` (one line)."""


# What `step` itself decides when the user gave nothing (every other default is the option table's).
STEP_DEFAULTS = {"shape": "step"}
# With --sim: a complete test in under 2 minutes with at least 20 requests in every step (a p95 worth
# judging): users that do not pause (the simulator is the test, not the people), 25 s steps.
SIM_DEFAULTS = {"steps": "1,4,8", "step_time": "25s", "think_time": "0"}
OWN_RUN_OPTIONS = ("run_dir", "run_context")  # step sets these itself
DEFAULT_HOST = "http://127.0.0.1:11434"  # when neither --host, locust.conf nor LOCUST_HOST name one (the master applies it)


def build_parser() -> argparse.ArgumentParser:
    parser = options.OneLineParser(
        prog="ollama-locust step",
        description="Headless step test: hold 1, 3, 5, 10 ... users in turn (or, with --rates, offer 0.5, 1, 2 ... requests/s open loop), then print the results table. "
        "The load options below are the locustfile's own (same names in locust.conf, LOCUST_* variables and "
        "the web UI); any other option is passed to locust as it is.",
    )
    parser.add_argument("--host", default=None, help=f"target base URL (default: host = in locust.conf or LOCUST_HOST, else {DEFAULT_HOST})")
    parser.add_argument("--sim", nargs="?", const=DEFAULT_PROFILE, default=None, metavar="PROFILE",
                        help=f"start the embedded simulator with this profile (default {DEFAULT_PROFILE}) and target it; "
                        f"steps default to {SIM_DEFAULTS['steps']} users x {SIM_DEFAULTS['step_time']}, "
                        f"think time {SIM_DEFAULTS['think_time']} s")
    parser.add_argument("--sim-args", default="", help="extra simulator flags, e.g. \"--num-parallel 4 --max-queue 8\"")
    parser.add_argument("--user-class", default=options.DEFAULT_USER_CLASS,
                        help="user classes, comma separated (StudentUser, RecipeUser, BurstyUser; default %(default)s, as in locust and the web UI)")
    parser.add_argument("--workers", type=int, default=0, help="local worker processes (0 = one process)")
    parser.add_argument("--master", action="store_true", help="run as master for workers on other machines")
    parser.add_argument("--expect-workers", type=int, default=1, help="with --master: remote workers to wait for")
    parser.add_argument("--master-port", type=int, default=5557, help="with --master: port the workers connect to")
    parser.add_argument("--out", default="runs", help="parent folder of the run folder (default ./runs)")
    parser.add_argument("--run-dir", default=None, help="the run folder itself (instead of a new one under --out); "
                        "it must not hold a run already")
    parser.add_argument("--fail-on-slo", action="store_true", help=f"exit {EXIT_SLO_FAILED} when a step failed the thresholds")
    parser.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    options.add_planning(parser, (), ("predict",))
    options.add_passthrough(parser, skip=OWN_RUN_OPTIONS, aliases={"steps": ("--users",)}, launcher_defaults={
        **{dest: f"default here: {value}" for dest, value in STEP_DEFAULTS.items()},
        **{dest: f"default: {options.default(dest)}; with --sim {value}" for dest, value in SIM_DEFAULTS.items()},
        "model": f"default: {options.default('model')}; with --sim the simulator's model",
        "label": "default: none, the run folder is named …-step; with --sim sim-PROFILE"})
    return parser


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def locust_command(args, passthrough: list[str], host: str | None, run_dir: str) -> list[str]:
    command = [
        sys.executable, "-m", "locust", "-f", locustfile_path(), "--headless", *(["--host", host] if host else []),
        "--csv", os.path.join(run_dir, contract.LOCUST_CSV_PREFIX), "--csv-full-history",
        "--html", os.path.join(run_dir, contract.LOCUST_HTML_FILE), "--only-summary",
        *options.given_flags({**args.load, "run_dir": run_dir, "run_context": json.dumps(run_context(args))}),
        *passthrough,
    ]
    return command + [name.strip() for name in args.user_class.split(",") if name.strip()]


def locustfile_path() -> str:
    """The installed locustfile (wherever the package is: a checkout, site-packages, a wheel)."""
    return importlib.util.find_spec("ollama_locust.scenarios.locustfile").origin


def worker_command(master_port: int, passthrough: list[str]) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", locustfile_path(), "--worker", "--master-host", "127.0.0.1",
            "--master-port", str(master_port), *passthrough]


def _pump(stream, log_path: str, echo: bool) -> None:
    """Copy a locust process's output to its log (and the progress lines to the terminal). A log that
    cannot be written (a full disk) stops the copy, never the draining: the process must not block."""
    try:
        log = open(log_path, "a", encoding="utf-8")
    except OSError:
        log = None
    with log if log is not None else contextlib.nullcontext():
        for line in iter(stream.readline, ""):
            if log is not None:
                try:
                    log.write(line)
                    log.flush()
                except OSError:
                    with contextlib.suppress(OSError):
                        log.close()
                    log = None
            if echo and line.startswith(PREFIX):
                print(line.rstrip("\n"), flush=True)
            elif echo and line.startswith("ollama-locust:"):  # the plugin's one-line bad-input message
                print(line.rstrip("\n"), file=sys.stderr, flush=True)


def _spawn(command: list[str], log_path: str, echo: bool) -> subprocess.Popen:
    from ollama_locust.simulator.server import parent_death

    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=parent_death())  # SIGTERM (= Ctrl-C for the master) if step dies
    threading.Thread(target=_pump, args=(proc.stdout, log_path, echo), daemon=True).start()
    return proc


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_locust(args, passthrough: list[str], host: str, run_dir: str) -> int:
    """Run master (+ workers); Ctrl-C goes to the master only, which cuts short and writes what ran."""
    log = os.path.join(run_dir, contract.LOCUST_LOG_FILE)
    master_cmd = locust_command(args, passthrough, host, run_dir)
    workers: list[subprocess.Popen] = []
    if args.workers > 0 or args.master:
        port = args.master_port if args.master else free_port()
        bind = "0.0.0.0" if args.master else "127.0.0.1"
        expect = args.expect_workers if args.master else args.workers
        master_cmd += ["--master", "--master-bind-host", bind, "--master-bind-port", str(port), "--expect-workers", str(expect)]
    master = _spawn(master_cmd, log, echo=True)
    if args.master:
        hostname = socket.gethostname()
        print(f"{PREFIX} waiting for {args.expect_workers} worker(s); on each load machine run:\n"
              f"  locust -f locustfile.py --worker --master-host {hostname} --master-port {args.master_port}", flush=True)
    for index in range(args.workers if not args.master else 0):
        workers.append(_spawn(worker_command(port, passthrough), os.path.join(run_dir, contract.WORKER_LOG_FILE.format(index=index + 1)), echo=False))

    interrupted = False
    previous = signal.getsignal(signal.SIGINT)

    def on_signal(signum, _frame):
        nonlocal interrupted
        interrupted = True
        if master.poll() is None:
            master.send_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)  # a closed terminal: the same clean stop (the master is detached)
    try:
        while master.poll() is None:
            time.sleep(0.2)
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        died = master.returncode is not None and master.returncode < 0 and not interrupted
        deadline = time.time() + (0 if died else 15)  # a dead master: nothing for the workers to finish
        for worker in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(max(0.1, deadline - time.time()))
            _stop(worker)
    code = master.returncode
    return EXIT_INTERRUPTED if interrupted else code


def _resolve_defaults(args) -> None:
    """``args.load``: the load options the user gave, plus step's own defaults (with --sim: the
    simulator's model and shorter steps) where the user gave none."""
    args.load = options.given(args)
    if "rates" in args.load:  # `step --rates …`: open-loop arrivals unless a shape was named
        args.load.setdefault("shape", "rate")
    args.sim_config = _sim_config(args) if args.sim else None  # parsed once: label, model, run.json
    for dest, value in {**STEP_DEFAULTS, **(SIM_DEFAULTS if args.sim else {})}.items():
        args.load.setdefault(dest, value)
    cfg = args.sim_config
    if cfg is not None:
        args.load.setdefault("model", cfg.model_names()[0])  # with --engine llama-cpp: the model file's name
        if not args.load.get("label"):
            name = cfg.model_names()[0].split(":")[0]
            args.load["label"] = f"sim-{cfg.engine}-{name}" if cfg.engine != "sim" else f"sim-{args.sim}"


def _load_value(args, dest: str):
    return args.load.get(dest, options.default(dest))


def _validate(args) -> None:
    try:
        plans.build_plan(**{name: _load_value(args, name) for name in plans.PLAN_OPTIONS})
    except plans.PlanError as error:
        raise StepError(str(error)) from None
    if args.workers < 0:
        raise StepError(f"--workers must be 0 or more, got {args.workers}")
    if args.workers and args.master:
        raise StepError(f"--workers {args.workers} and --master exclude each other: --workers starts local workers, "
                        "--master waits for remote ones (--expect-workers N)")
    if args.run_dir and os.path.exists(os.path.join(args.run_dir, contract.REQUESTS_FILE)):
        raise StepError(f"--run-dir {args.run_dir} already holds a run ({contract.REQUESTS_FILE}); give a new folder, "
                        "or --out PARENT for a new one under it")


def _sim_argv(args) -> list[str]:
    import shlex

    return ["--profile", args.sim, *shlex.split(args.sim_args)]


def _sim_config(args):
    """The embedded simulator's settings (``--sim`` and ``--sim-args``); StepError when they are bad."""
    import io

    from ollama_locust.simulator.config import ConfigError, config_from_args

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            return config_from_args(_sim_argv(args))
    except ConfigError as error:
        raise StepError(f"--sim-args: {error}") from None
    except SystemExit:  # argparse's one line, e.g. "ollama-locust sim: unrecognized arguments: --x"
        why = said.getvalue().strip().splitlines()[-1:] or ["not simulator options"]
        raise StepError(f"--sim-args {args.sim_args!r}: {why[0].removeprefix('ollama-locust sim: ')}") from None


def _simulator(args):
    if not args.sim:
        return contextlib.nullcontext(None)
    from ollama_locust.simulator import start_process

    # A session of its own: a Ctrl-C/hang-up of the terminal reaches step (which stops the master first)
    # but not the simulator, which step stops after the master. If step itself dies, the master gets
    # SIGTERM from the kernel and stops the simulator when it is done (run context ``stop_with_launcher``);
    # if step dies before the master runs, the simulator sees its stdin close and stops once idle.
    return start_process(_sim_argv(args), own_session=True, stop_with_launcher=True)


def run(args, passthrough: list[str]) -> int:
    if secrets.has_credentials(args.host):
        raise StepError(secrets.url_credentials_error(args.host))
    _resolve_defaults(args)
    _validate(args)
    _check_predict(args)
    with _simulator(args) as sim:
        host = sim.url if sim is not None else args.host  # None: locust.conf / LOCUST_HOST, else DEFAULT_HOST
        args.sim_url = sim.url if sim is not None else None
        args.sim_pid = sim.pid if sim is not None else None
        run_dir = (run_folder.prepare(args.run_dir) if args.run_dir
                   else run_folder.create_unique(args.load.get("label") or "step", args.out))
        shown = host or f"from locust.conf/LOCUST_HOST, else {DEFAULT_HOST}"
        steps = (f"rates {_load_value(args, 'rates')} req/s ({_load_value(args, 'arrival')})"
                 if _load_value(args, "shape") == "rate" else f"steps {_load_value(args, 'steps')} users")
        print(f"{PREFIX} target {shown} (model {_load_value(args, 'model')}, {_load_value(args, 'api')}); "
              f"{steps} x {_load_value(args, 'step_time')}; run folder {run_dir}", flush=True)
        code = run_locust(args, passthrough, host, run_dir)
    if not os.path.exists(os.path.join(run_dir, contract.RUN_FILE)):
        if code not in (EXIT_BAD_INPUT, EXIT_INTERRUPTED):  # those said their one line already
            print(f"ollama-locust: locust exited with code {code} before the run started; see {run_dir}/{contract.LOCUST_LOG_FILE}",
                  file=sys.stderr)
        return code if code in (EXIT_BAD_INPUT, EXIT_INTERRUPTED) else (code or 1)
    if code == EXIT_BAD_INPUT:  # the target or an option was refused (the one line is on stderr)
        return EXIT_BAD_INPUT
    if code < 0:  # the master was killed (not by step): say so, in run.json too, so the report says it
        code = _master_died(run_dir, -code, workers=args.workers)
    failed = False
    if not args.no_report:
        failed = _report(run_dir)
        if args.predict:
            _predicted_beside(args, run_dir)
    if code == EXIT_INTERRUPTED:
        return EXIT_INTERRUPTED
    if code not in (0, 1):  # 1 = Locust saw failed requests: a finding, not an error of the run
        return code
    return EXIT_SLO_FAILED if (args.fail_on_slo and failed) else 0


def _master_died(run_dir: str, signum: int, workers: int) -> int:
    """The master was killed mid-run: one line, a note in run.json (the master cannot write it any
    more), and the shell's exit code for a death by that signal (128 + signal)."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    path = os.path.join(run_dir, contract.RUN_FILE)
    info = run_folder.read_json(path)
    info["master_died"] = {"signal": name, "at": time.time(), "workers": workers}
    with contextlib.suppress(OSError):
        run_folder.write_json(path, info)
    print(f"ollama-locust: the locust master was killed ({name}) before the run ended: requests.csv holds the records "
          f"written up to its last flush (about 1 s before), the rest of the run"
          f"{' and the workers' + chr(39) + ' records since then' if workers else ''} are missing; "
          f"the report says so", file=sys.stderr)
    return 128 + signum


def run_context(args) -> dict:
    """What only `step` knows, for run.json (the master writes it: one writer)."""
    context: dict = {"command": secrets.redact_argv(["ollama-locust", "step", *sys.argv[2:]]) if sys.argv[1:2] == ["step"] else None,
                     "default_host": DEFAULT_HOST}
    if args.sim_config is not None:
        settings = dataclasses.asdict(args.sim_config)
        settings.pop("truth_log", None)
        if settings.get("engine") not in (None, "sim"):
            settings.pop("profile", None)  # ignored: a real engine makes the tokens
        context["simulator"] = {**settings, "args": args.sim_args, "url": args.sim_url}
        # If step dies (kill -9), the master, told by the kernel, stops the simulator after its own end.
        context["stop_with_launcher"] = {"launcher_pid": os.getpid(), "simulator_pid": args.sim_pid}
    return context


def _predict_argv(args, run_dir: str) -> list[str]:
    """`ollama-locust predict`'s arguments for the plan and load options this step test ran with."""
    argv = [args.predict, "--run-dir", os.path.join(run_dir, "predicted"), "--user-class", args.user_class.strip(),
            "--band", "0"]
    for dest in options.PREDICT_ROWS:
        if dest in ("label", "run_dir"):
            continue
        value = _load_value(args, dest)
        flag = "--" + dest.replace("_", "-")
        if isinstance(value, bool):
            argv += [flag] if value else []
        else:
            argv += [flag, str(value)]
    return argv


def _check_predict(args) -> None:
    if not args.predict:
        return
    from ollama_locust.scenarios import virtual_run

    if "," in args.user_class.strip(","):
        raise StepError(f"--predict predicts one user class; --user-class gave {args.user_class}")
    try:
        virtual_run.read_fit(args.predict)
    except virtual_run.PredictError as error:
        raise StepError(f"--predict {error}") from None


def _predicted_beside(args, run_dir: str) -> None:
    """Predict the plan that just ran from ``--predict PROBE.json`` and print it beside the measured figures."""
    import io

    from ollama_locust.scenarios import predict

    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said):
            code = predict.main(_predict_argv(args, run_dir))
    except Exception as error:  # the measured run stands; the prediction is an extra
        print(f"ollama-locust step: --predict failed: {error}", file=sys.stderr)
        return
    if code != 0:
        return
    text = predict.beside(os.path.join(run_dir, contract.RESULTS_JSON), os.path.join(run_dir, "predicted", contract.RESULTS_JSON))
    with open(os.path.join(run_dir, contract.PREDICTION_CHECK_MD), "w", encoding="utf-8") as handle:
        handle.write(f"# Predicted beside measured\n\nPredicted from `{args.predict}` (run folder `predicted/`).\n\n{text}")
    print(f"\nPredicted (from {args.predict}) beside measured:\n")
    print(text)


def _report(run_dir: str) -> bool:
    """Write and print the report; True when a step failed the thresholds."""
    from ollama_locust import reports

    try:
        report = reports.write_report(run_dir)
    except reports.ReportError:  # a full disk: without the plots the report may still fit
        try:
            report = reports.write_report(run_dir, plots=False)
        except reports.ReportError as error:
            print(f"ollama-locust: {error}", file=sys.stderr)
            return False
    conclusion = report.data.get("conclusion") or {}
    print()
    print(report.table_markdown)
    print()
    print("Conclusion:")
    for paragraph in conclusion.get("text") or []:
        print(paragraph)
    print(f"\nFull report: {os.path.join(run_dir, contract.RESULTS_MD)}")
    return conclusion.get("failure_point_users") is not None or conclusion.get("failure_point_rate") is not None


def main(argv: list[str]) -> int:
    parser = build_parser()
    args, passthrough = parser.parse_known_args(argv)
    try:
        return run(args, passthrough)
    except (StepError, run_folder.RunFolderError, ValueError) as error:
        print(f"ollama-locust step: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
