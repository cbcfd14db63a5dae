"""The `ollama-locust` command: a thin dispatcher over the packages.

Each subcommand lives in its own package and exposes ``main(argv) -> int``; this module only picks
one, so `ollama-locust sim` never imports locust and `ollama-locust report` never imports gevent.
"""

from __future__ import annotations

import importlib
import sys

from ollama_locust import __version__, contract

SUBCOMMANDS = {
    "sim": ("ollama_locust.simulator.cli", "main", "run the Ollama-compatible simulator"),
    "step": ("ollama_locust.step", "main", "run a headless step test and print the results table"),
    "report": ("ollama_locust.reports.cli", "report_main", "turn a run folder into results.md, results.json and plots"),
    "compare": ("ollama_locust.reports.cli", "compare_main", "lay several run folders side by side"),
    "probe": ("ollama_locust.scenarios.probe", "main", "measure a server briefly and fit the simulator to it (probe.json)"),
    "predict": ("ollama_locust.scenarios.predict", "main", "predict a step test from a probe.json in virtual time"),
}


def usage() -> str:
    lines = [f"usage: ollama-locust {{{','.join(SUBCOMMANDS)}}} [options]", "", "commands:"]
    for name, (_, _, help_text) in SUBCOMMANDS.items():
        lines.append(f"  {name:<9} {help_text}")
    lines.append("")
    lines.append("Run 'ollama-locust COMMAND --help' for the options of one command.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else contract.EXIT_BAD_INPUT
    if argv[0] in ("-V", "--version"):
        print(f"ollama-locust {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"ollama-locust: unknown command '{name}'; available: {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return contract.EXIT_BAD_INPUT
    module_name, function_name, _ = SUBCOMMANDS[name]
    command = getattr(importlib.import_module(module_name), function_name)
    try:
        return int(command(rest) or 0)
    except KeyboardInterrupt:
        print("ollama-locust: interrupted", file=sys.stderr)
        return contract.EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
