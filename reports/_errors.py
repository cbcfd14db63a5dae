"""The report side's one error.

    ReportError          a run folder that cannot be reported on, or a report that cannot be written

Library code raises it with one line saying what failed and what to do; only ``reports.cli`` prints
it (``ollama-locust report: <message>``, exit 2). Anything else reaching the CLI is a bug.
"""

from __future__ import annotations


class ReportError(Exception):
    """A run folder cannot be read or its report cannot be written. ``str(err)`` is one line."""
