"""The post-processor: a run folder -> results.md, results.json and plots; ``compare`` for several runs.

Never imports locust or gevent; pandas and matplotlib are imported where they are used.

    write_report(run_dir, *, slo_p95_ms=None, min_success=None, slo_ttft_p95_ms=None, plots=True) -> Report
    compare_runs(run_dirs, *, out=None) -> str (markdown)
    analyse(run_dir, ...) -> Analysis (nothing written)
    STEP_METRICS: the metric table every output loops over
    ReportError: the one error; ``str(err)`` is one line
"""

from __future__ import annotations

from ._analysis import Analysis, analyse
from ._compare import compare_runs
from ._errors import ReportError
from ._step_metrics import STEP_METRICS, PERCENTILE_METHOD, StepMetric
from ._report import Report, write_report

__all__ = sorted([
    "Analysis",
    "STEP_METRICS",
    "StepMetric",
    "PERCENTILE_METHOD",
    "Report",
    "ReportError",
    "analyse",
    "compare_runs",
    "write_report",
])
