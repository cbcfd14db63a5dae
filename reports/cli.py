"""`ollama-locust report` and `ollama-locust compare`: argument parsing and error printing only.

Library errors (``ReportError``) become one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from ollama_locust import contract, options

from ._errors import ReportError


def _check_thresholds(parser: argparse.ArgumentParser, args) -> None:
    if args.min_success is not None and not 0.0 <= args.min_success <= 1.0:
        parser.error(f"--min-success must be between 0 and 1 (e.g. 0.95), got {args.min_success:g}")
    for flag, value in (("--slo-p95", args.slo_p95), ("--slo-ttft-p95", args.slo_ttft_p95)):
        if value is not None and value < 0:
            parser.error(f"{flag} must be >= 0 ms (0 = none), got {value:g}")


def _report_parser() -> argparse.ArgumentParser:
    p = options.OneLineParser(prog="ollama-locust report",
                description="Turn a run folder into results.md, results.json and plots, and print the table.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder (ollama-locust step) or a folder of Locust --csv output")
    options.add_report_thresholds(p)
    p.add_argument("--no-plots", action="store_true", help="do not draw the PNG figures")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def report_main(argv: list[str] | None = None) -> int:
    parser = _report_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    _check_thresholds(parser, args)
    from ._report import write_report

    try:
        report = write_report(args.run_dir, slo_p95_ms=args.slo_p95, min_success=args.min_success,
                              slo_ttft_p95_ms=args.slo_ttft_p95,
                              plots=not args.no_plots)
    except ReportError as err:
        print(f"ollama-locust report: {err}", file=sys.stderr)
        return contract.EXIT_BAD_INPUT
    if not args.quiet:
        print(report.table_markdown)
        print()
        print(f"report written: {', '.join(report.files)}")
    return 0


def compare_main(argv: list[str] | None = None) -> int:
    p = options.OneLineParser(prog="ollama-locust compare",
                description="Lay several runs side by side per user count; changes in % are vs the first run.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders; the first is the reference")
    p.add_argument("--out", metavar="FILE", default=None, help="also write the comparison to FILE (markdown)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    from ._compare import compare_runs

    try:
        text = compare_runs(args.run_dirs, out=args.out)
    except ReportError as err:
        print(f"ollama-locust compare: {err}", file=sys.stderr)
        return contract.EXIT_BAD_INPUT
    print(text, end="")
    return 0
