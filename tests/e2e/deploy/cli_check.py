"""Parse a command line the way the program would, without running it (used by the compose tests).

    python -m tests.e2e.deploy.cli_check locust -f locustfile.py --master --host http://gateway:8080 ...
    python -m tests.e2e.deploy.cli_check ollama-locust step --host ... --users 1,3 ...

Prints "ok" and exits 0 when every option is known and every value accepted (unknown options are
errors, unlike ``--help``, which stops before noticing them); otherwise the parser's message, exit 2.
Runs in its own process: importing locust monkey-patches the interpreter.
"""

from __future__ import annotations

import sys


def _locust_parse(args: list[str]) -> None:
    import ollama_locust.scenarios.locustfile as locustfile
    from locust.argument_parser import get_parser

    parsed = get_parser(default_config_files=[]).parse_args(args)
    known = set(locustfile.__all__)
    unknown = [name for name in parsed.user_classes or [] if name not in known]
    if unknown:
        raise SystemExit(f"unknown user class(es) {unknown}; available: {sorted(known)}")


def check(argv: list[str]) -> None:
    program, rest = argv[0], argv[1:]
    if program == "locust":
        _locust_parse(rest)
    elif program == "ollama-locust" and rest[:1] == ["step"]:
        from ollama_locust import step

        args, passthrough = step.build_parser().parse_known_args(rest[1:])
        step._resolve_defaults(args)
        step._validate(args)
        command = step.locust_command(args, passthrough, args.host or "http://127.0.0.1:11434", "/nonexistent/run")
        _locust_parse(command[command.index("locust") + 1:])
    elif program == "ollama-locust" and rest[:1] == ["sim"]:
        from ollama_locust.simulator.config import config_from_args

        config_from_args(rest[1:])
    else:
        raise SystemExit(f"cli_check: no parser for {argv[:2]}")


def main() -> int:
    try:
        check(sys.argv[1:])
    except SystemExit as exc:
        if exc.code not in (None, 0):
            print(exc.code if isinstance(exc.code, str) else f"exit {exc.code}", file=sys.stderr)
            return 2
    except Exception as exc:  # a validation error of the project's own (PlanError, ConfigError, ...)
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
