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
target; 3 with ``--fail-on-slo`` when a step failed the thresholds; 130 interrupted (the report of what
ran is still written).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from scenarios import options, plans, preflight, run_folder, schema
from scenarios.progress import PREFIX

EXIT_BAD_INPUT = 2
EXIT_SLO_FAILED = 3
EXIT_INTERRUPTED = 130
LOCUSTFILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scenarios", "locustfile.py")
DEFAULT_SIM_PROFILE = "gpu-llama3-8b"


class StepError(Exception):
    """Bad input for `step` (one line)."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="ollama-locust step",
        description="Headless step test: hold 1, 3, 5, 10 ... users in turn, then print the results table. "
        "Options not listed here (--model, --api, --think-time, --num-predict, --prompts, --slo-p95, any Locust option) "
        "are passed to locust.",
    )
    parser.add_argument("--host", default=None, help="target base URL (default http://127.0.0.1:11434)")
    parser.add_argument("--sim", nargs="?", const=DEFAULT_SIM_PROFILE, default=None, metavar="PROFILE",
                        help=f"start the embedded simulator with this profile (default {DEFAULT_SIM_PROFILE}) and target it")
    parser.add_argument("--sim-args", default="", help="extra simulator flags, e.g. \"--num-parallel 4 --max-queue 8\"")
    parser.add_argument("--model", default=None, help="model to ask (default: llama3.2, or the simulator's model)")
    parser.add_argument("--api", default="ollama-chat", choices=options.APIS)
    parser.add_argument("--users", default=None, help="user counts per step (default 1,3,5,10; with --sim 1,2,4,8)")
    parser.add_argument("--step-time", default=None, help="how long each step is held (default 60s; with --sim 15s)")
    parser.add_argument("--settle", default="0s", help="settle window at the start of each step, left out of its numbers")
    parser.add_argument("--shape", default="step", choices=[shape for shape in options.SHAPES if shape != "none"])
    parser.add_argument("--user-class", default="StudentUser", help="user classes, comma separated (StudentUser, RecipeUser, BurstyUser)")
    parser.add_argument("--workers", type=int, default=0, help="local worker processes (0 = one process)")
    parser.add_argument("--master", action="store_true", help="run as master for workers on other machines")
    parser.add_argument("--expect-workers", type=int, default=1, help="with --master: remote workers to wait for")
    parser.add_argument("--master-port", type=int, default=5557, help="with --master: port the workers connect to")
    parser.add_argument("--label", default="", help="a name for the run (folder name, compare)")
    parser.add_argument("--out", default="runs", help="parent folder of the run folder (default ./runs)")
    parser.add_argument("--stop-on-failure", action="store_true", help="stop stepping after the first step that fails the thresholds")
    parser.add_argument("--fail-on-slo", action="store_true", help=f"exit {EXIT_SLO_FAILED} when a step failed the thresholds")
    parser.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    return parser


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def locust_command(args, passthrough: list[str], host: str, run_dir: str) -> list[str]:
    command = [
        sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--headless", "--host", host,
        "--shape", args.shape, "--steps", args.users, "--step-time", args.step_time, "--settle", args.settle,
        "--run-dir", run_dir, "--label", args.label, "--api", args.api,
        "--csv", os.path.join(run_dir, "locust"), "--csv-full-history",
        "--html", os.path.join(run_dir, "locust_report.html"), "--only-summary",
    ]
    if args.model:
        command += ["--model", args.model]
    if args.stop_on_failure:
        command.append("--stop-on-failure")
    command += passthrough
    command += [name.strip() for name in args.user_class.split(",") if name.strip()]
    return command


def worker_command(master_port: int, passthrough: list[str]) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", LOCUSTFILE, "--worker", "--master-host", "127.0.0.1",
            "--master-port", str(master_port), *passthrough]


def _pump(stream, log_path: str, echo: bool) -> None:
    with open(log_path, "a", encoding="utf-8") as log:
        for line in iter(stream.readline, ""):
            log.write(line)
            log.flush()
            if echo and line.startswith(PREFIX):
                print(line.rstrip("\n"), flush=True)
            elif echo and line.startswith("ollama-locust:"):  # the plugin's one-line bad-input message
                print(line.rstrip("\n"), file=sys.stderr, flush=True)


def _spawn(command: list[str], log_path: str, echo: bool) -> subprocess.Popen:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
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
    log = os.path.join(run_dir, "locust.log")
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
        workers.append(_spawn(worker_command(port, passthrough), os.path.join(run_dir, f"worker-{index + 1}.log"), echo=False))

    interrupted = False
    previous = signal.getsignal(signal.SIGINT)

    def on_signal(signum, _frame):
        nonlocal interrupted
        interrupted = True
        if master.poll() is None:
            master.send_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while master.poll() is None:
            time.sleep(0.2)
    finally:
        signal.signal(signal.SIGINT, previous)
        deadline = time.time() + 15
        for worker in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(max(0.1, deadline - time.time()))
            _stop(worker)
    code = master.returncode
    return EXIT_INTERRUPTED if interrupted else code


def _resolve_defaults(args) -> None:
    if args.users is None:
        args.users = "1,2,4,8" if args.sim else "1,3,5,10"
    if args.step_time is None:
        args.step_time = "15s" if args.sim else "60s"
    args.sim_config = _sim_config(args) if args.sim else None  # parsed once: label, model, run.json
    if not args.label:
        cfg = args.sim_config
        if cfg is not None and cfg.engine != "sim":
            args.label = f"sim-{cfg.engine}-{_sim_model(cfg)}"
        else:
            args.label = f"sim-{args.sim}" if args.sim else "step"


def _validate(args) -> None:
    try:
        plans.step_plan(plans.parse_users(args.users), plans.parse_duration(args.step_time, "--step-time"),
                        plans.parse_duration(args.settle, "--settle"))
    except plans.PlanError as error:
        raise StepError(str(error)) from None
    if args.workers < 0:
        raise StepError(f"--workers must be 0 or more, got {args.workers}")


def _passthrough_value(passthrough: list[str], flag: str) -> str | None:
    for index, item in enumerate(passthrough):
        if item == flag and index + 1 < len(passthrough):
            return passthrough[index + 1]
        if item.startswith(flag + "="):
            return item.split("=", 1)[1]
    return None


def _sim_argv(args) -> list[str]:
    import shlex

    return ["--profile", args.sim, *shlex.split(args.sim_args)]


def _sim_config(args):
    """The embedded simulator's settings (``--sim`` and ``--sim-args``); StepError when they are bad."""
    import io

    from simulator.config import ConfigError, config_from_args

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            return config_from_args(_sim_argv(args))
    except ConfigError as error:
        raise StepError(f"--sim-args: {error}") from None
    except SystemExit:  # argparse's one line, e.g. "ollama-locust sim: unrecognized arguments: --x"
        why = said.getvalue().strip().splitlines()[-1:] or ["not simulator options"]
        raise StepError(f"--sim-args {args.sim_args!r}: {why[0].removeprefix('ollama-locust sim: ')}") from None


def _sim_model(cfg) -> str:
    """The model the embedded simulator serves first, without its tag (with --engine llama-cpp: the file's name)."""
    return cfg.model_names()[0].split(":")[0]


def _simulator(args):
    if not args.sim:
        return contextlib.nullcontext(None)
    from simulator import start_process

    return start_process(_sim_argv(args))


def run(args, passthrough: list[str]) -> int:
    _resolve_defaults(args)
    _validate(args)
    with _simulator(args) as sim:
        host = sim.url if sim is not None else (args.host or "http://127.0.0.1:11434")
        key = preflight.api_key(_passthrough_value(passthrough, "--api-key-env") or "OLLAMA_LOCUST_API_KEY")
        if args.model is None:  # the simulator's own model (with --engine llama-cpp: the model file's name)
            args.model = _sim_model(args.sim_config) if sim is not None else "llama3.2"
        target = preflight.check_target(host, args.model, args.api, key=key)
        if sim is not None and args.model not in target.models:
            args.model = next((m for m in target.models if m.split(":")[0] == args.model.split(":")[0]), args.model)
        run_dir = run_folder.prepare(run_folder.default_path(args.label, args.out))
        print(f"{PREFIX} target {host} (model {args.model}, {args.api}); steps {args.users} users x {args.step_time}; "
              f"run folder {run_dir}", flush=True)
        code = run_locust(args, passthrough, host, run_dir)
        _annotate_run(run_dir, args, sim)
    if not os.path.exists(os.path.join(run_dir, schema.RUN_FILE)):
        print(f"ollama-locust: locust exited with code {code} before the run started; see {run_dir}/locust.log", file=sys.stderr)
        return EXIT_BAD_INPUT if code == EXIT_BAD_INPUT else (code or 1)
    if code == EXIT_BAD_INPUT:  # locust's own option checks refused the run (its one line is on stderr)
        return EXIT_BAD_INPUT
    failed = False
    if not args.no_report:
        failed = _report(run_dir)
    if code == EXIT_INTERRUPTED:
        return EXIT_INTERRUPTED
    if code not in (0, 1):  # 1 = Locust saw failed requests: a finding, not an error of the run
        return code
    return EXIT_SLO_FAILED if (args.fail_on_slo and failed) else 0


def _annotate_run(run_dir: str, args, sim) -> None:
    path = os.path.join(run_dir, schema.RUN_FILE)
    info = run_folder.read_json(path)
    if not info:
        return
    info["command"] = ["ollama-locust", "step", *sys.argv[2:]] if len(sys.argv) > 1 and sys.argv[1] == "step" else info.get("command")
    info["workers"] = args.workers if not args.master else args.expect_workers
    if sim is not None:
        import dataclasses

        settings = dataclasses.asdict(args.sim_config)
        settings.pop("truth_log", None)
        if settings.get("engine") not in (None, "sim"):
            settings.pop("profile", None)  # ignored: a real engine makes the tokens
        info["simulator"] = {**settings, "args": args.sim_args, "url": sim.url}
    run_folder.write_json(path, info)


def _report(run_dir: str) -> bool:
    """Write and print the report; True when a step failed the thresholds."""
    import reports

    report = reports.write_report(run_dir)
    conclusion = report.data.get("conclusion") or {}
    print()
    print(report.table_markdown)
    print()
    print("Conclusion:")
    for paragraph in conclusion.get("text") or []:
        print(paragraph)
    print(f"\nFull report: {os.path.join(run_dir, 'results.md')}")
    return conclusion.get("failure_point_users") is not None


def main(argv: list[str]) -> int:
    parser = build_parser()
    args, passthrough = parser.parse_known_args(argv)
    try:
        return run(args, passthrough)
    except (StepError, preflight.PreflightError, run_folder.RunFolderError, ValueError) as error:
        print(f"ollama-locust step: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
