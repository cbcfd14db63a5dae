"""`ollama-locust report` and `ollama-locust compare`: argument parsing and error printing only.

Library errors (``ReportError``) become one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from ._errors import ReportError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other error here
        print(f"{self.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (e.g. 0.95), got {text}")
    return value


def _ms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of milliseconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 ms, got {text}")
    return value


def _report_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ollama-locust report",
                description="Turn a run folder into results.md, results.json and plots, and print the table.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder (ollama-locust step) or a folder of Locust --csv output")
    p.add_argument("--slo-p95", type=_ms, default=None, metavar="MS",
                   help="p95 latency objective in ms (default: run.json slo.p95_ms, else none)")
    p.add_argument("--min-success", type=_fraction, default=None, metavar="F",
                   help="success rate below which a step fails (default: run.json slo.min_success, else 0.95)")
    p.add_argument("--no-plots", action="store_true", help="do not draw the PNG figures")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def report_main(argv: list[str] | None = None) -> int:
    args = _report_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from ._report import write_report

    try:
        report = write_report(args.run_dir, slo_p95_ms=args.slo_p95, min_success=args.min_success,
                              plots=not args.no_plots)
    except ReportError as err:
        print(f"ollama-locust report: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(report.table_markdown)
        print()
        print(f"report written: {', '.join(report.files)}")
    return 0


def compare_main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="ollama-locust compare",
                description="Lay several runs side by side per user count; changes in % are vs the first run.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders; the first is the reference")
    p.add_argument("--out", metavar="FILE", default=None, help="also write the comparison to FILE (markdown)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    from ._compare import compare_runs

    try:
        text = compare_runs(args.run_dirs, out=args.out)
    except ReportError as err:
        print(f"ollama-locust compare: {err}", file=sys.stderr)
        return 2
    print(text, end="")
    return 0
