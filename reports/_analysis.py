"""A run folder's analysis: steps with notes, the SLO verdict per step, and the gaps.

``analyse(path)`` is pure (it writes nothing); ``write_report`` renders and writes it, ``compare``
lays several side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ollama_locust import contract, stats

from ._concurrency import SERIALISED, SHARED, concurrency_mode
from ._load import RunFolder, load_run
from ._generator import SATURATED_NOTE, step_health
from ._step_metrics import MIN_P95_N, PERCENTILE_TEXT, is_number
from ._steps import OUTCOME_NOTE, Step, build_class_rows, build_steps, drain_summary, restamp

DEFAULT_MIN_SUCCESS = 0.95
SLOW_FACTOR = 1.5  # a step's p95 at least this many times the baseline's gets a note
CONCURRENCY_NOTE = {SERIALISED: "requests wait for each other", SHARED: "requests share the server"}


DEFAULT_TTFT_P95_MS = 2000.0  # streamed replies: the answer must start within 2 s for 95 % of the requests
DEFAULT_E2E_P95_MS = 10000.0  # non-streamed replies: the whole answer within 10 s for 95 % of them
CHANGE_SLO = "--slo-ttft-p95 MS or --slo-p95 MS change it; 0 for both judges success only"


@dataclass
class Slo:
    p95_ms: float | None  # end-to-end p95 objective
    min_success: float
    source: str  # where the thresholds came from
    ttft_p95_ms: float | None = None  # time-to-first-token p95 objective
    default: bool = False  # the latency objective is the report's default, not the user's

    @property
    def latency_rule(self) -> str:
        """The latency objective in words ('' when there is none)."""
        rules = []
        if self.ttft_p95_ms is not None:
            rules.append(f"TTFT p95 ≤ {stats.format_seconds(self.ttft_p95_ms)}")
        if self.p95_ms is not None:
            rules.append(f"p95 ≤ {stats.format_seconds(self.p95_ms)}")
        return " and ".join(rules)

    @property
    def rule(self) -> str:
        return " and ".join(r for r in (self.latency_rule, f"success ≥ {stats.format_ratio(self.min_success)}") if r)

    def verdict(self, step: Step) -> str | None:
        """None when the step meets the SLO, else why not; "" when it had nothing to judge.

        A p95 from fewer than ``MIN_P95_N`` requests judges nothing (only the success rate does)."""
        m = step.metrics
        judged = m.get("requests", 0) - sum(step.outcomes.get(o, 0) for o in contract.NOT_JUDGED)
        if not judged:
            return ""
        rate, p95, ttft = m.get("success_rate"), m.get("p95_ms"), m.get("ttft_p95_ms")
        if not (is_number(m.get("n")) and m["n"] >= MIN_P95_N):
            p95 = None
        if step.ttft_n < MIN_P95_N:
            ttft = None
        reasons = stats.breaches(rate if is_number(rate) else None, p95 if is_number(p95) else None,
                                 min_success=self.min_success, slo_p95_ms=self.p95_ms,
                                 ttft_p95_ms=ttft if is_number(ttft) else None, slo_ttft_p95_ms=self.ttft_p95_ms)
        return "; ".join(reasons) if reasons else None


@dataclass
class Analysis:
    folder: RunFolder
    source: str  # "requests.csv" | "locust-csv"
    steps: list[Step]
    slo: Slo
    class_rows: list[dict] = field(default_factory=list)
    percentile_text: str = PERCENTILE_TEXT
    server_durations: str = ""  # "" when present, else the n/a sentence
    verdicts: dict = field(default_factory=dict)  # stage -> None | reason | ""
    baseline: Step | None = None
    drain: dict | None = None  # requests started after the last stage's end: {"requests", "outcomes"}
    restamped: int = 0  # records whose stage stamp stages.csv corrected

    @property
    def run(self) -> dict:
        return self.folder.run

    @property
    def gaps(self) -> list[str]:
        return self.folder.gaps

    @property
    def label(self) -> str:
        return self.folder.label

    @property
    def rate_run(self) -> bool:
        """An open-loop run (--shape rate): its steps are keyed by offered rate, not users."""
        return any(step.is_rate for step in self.steps)

    @property
    def key_label(self) -> str:
        return "Offered rate (req/s)" if self.rate_run else "Concurrent users"


def resolve_slo(run: dict, slo_p95_ms: float | None, min_success: float | None,
                slo_ttft_p95_ms: float | None = None, streamed: bool = True) -> Slo:
    """The thresholds: the command line's, else run.json's, else the defaults.

    With no latency objective given anywhere, the default one: TTFT p95 ≤ 2 s when the replies were
    streamed (``streamed``: some successful request has a TTFT), else end-to-end p95 ≤ 10 s.
    A value of 0 (either objective) on the command line or in run.json means "none" and is kept.
    """
    run_slo = run.get("slo") if isinstance(run.get("slo"), dict) else {}
    sources = []

    def pick(given, key, what):
        if given is not None:
            sources.append(f"{what} from the command line")
            return given, True
        if is_number(run_slo.get(key)) and run_slo[key] > 0:
            sources.append(f"{what} from run.json")
            return float(run_slo[key]), True
        return None, False

    p95, p95_given = pick(slo_p95_ms, "p95_ms", "p95")
    ttft, ttft_given = pick(slo_ttft_p95_ms, "ttft_p95_ms", "TTFT p95")
    p95 = p95 if p95 is not None and p95 > 0 else None
    ttft = ttft if ttft is not None and ttft > 0 else None
    default = not (p95_given or ttft_given)
    if default:
        if streamed:
            ttft = DEFAULT_TTFT_P95_MS
            sources.append("default TTFT p95 objective for streamed replies")
        else:
            p95 = DEFAULT_E2E_P95_MS
            sources.append("default end-to-end p95 objective for non-streamed replies")
    rate = min_success
    if rate is not None:
        sources.append("success threshold from the command line")
    elif is_number(run_slo.get("min_success")):
        rate = float(run_slo["min_success"])
        sources.append("success threshold from run.json")
    else:
        rate = DEFAULT_MIN_SUCCESS
        sources.append("default success threshold")
    return Slo(p95_ms=p95, min_success=rate, source=", ".join(sources), ttft_p95_ms=ttft, default=default)


def _no_durations_text(run: dict) -> str:
    api = run.get("api")
    if api == "openai":
        return "n/a: the OpenAI-compatible API reports no server durations"
    if api == "gateway":
        return "n/a: the gateway's replies carry no server durations"
    return "n/a: no request carried server durations (load/prompt eval/eval)"


def analyse(path: str, *, slo_p95_ms: float | None = None, min_success: float | None = None,
            slo_ttft_p95_ms: float | None = None) -> Analysis:
    folder = load_run(path)
    streamed = folder.requests is not None and bool(
        ((folder.requests["outcome"].astype(object) == contract.OK) & folder.requests["ttft_ms"].notna()).any())
    slo = resolve_slo(folder.run, slo_p95_ms, min_success, slo_ttft_p95_ms, streamed)
    if folder.requests is not None:
        restamped = restamp(folder.requests, folder.stages)
        steps = build_steps(folder.requests, folder.stages, folder.run)
        analysis = Analysis(folder=folder, source="requests.csv", steps=steps, slo=slo,
                            class_rows=build_class_rows(folder.requests, steps),
                            drain=drain_summary(folder.requests), restamped=restamped)
        if not any(s.time_split for s in steps):
            analysis.server_durations = _no_durations_text(folder.run)
        if len(folder.requests) == 0:
            folder.gaps.append("requests.csv holds no requests")
    else:
        from ._locust_csv import locust_steps

        steps, text = locust_steps(folder)
        analysis = Analysis(folder=folder, source="locust-csv", steps=steps, slo=slo, percentile_text=text,
                            server_durations="n/a: Locust's CSVs carry no server durations")
    _judge(analysis)
    for step in analysis.steps:
        step.concurrency = concurrency_mode(step, analysis.baseline)
    _annotate(analysis)
    return analysis


def excluded(step: Step) -> str:
    """Why a step is left out of the verdicts ('' when it is not): it did not hold its user count, or a
    load process could not keep up (docs/generator.md)."""
    if step.generator and step.generator["reasons"]:
        return f"{SATURATED_NOTE} ({'; '.join(step.generator['reasons'])})"
    if step.outcomes.get(contract.DROPPED):  # the offered rate was not delivered: not the rate it names
        return dropped_text(step)
    return step.not_held


def enough(step: Step) -> bool:
    """Whether the step's p95 rests on enough requests (``MIN_P95_N``) to be judged."""
    n = step.metrics.get("n")
    return is_number(n) and n >= MIN_P95_N


def too_few_text(step: Step) -> str:
    n = step.metrics.get("n")
    n = int(n) if is_number(n) else 0
    return f"not enough requests to judge p95 (n = {n}; hold steps longer: --step-time 60s)"


def _judge(analysis: Analysis) -> None:
    with_ok = [s for s in analysis.steps if s.metrics.get("p50_ms") is not None and is_number(s.metrics.get("p50_ms"))]
    if with_ok:
        lowest = min(s.load if is_number(s.load) else math.inf for s in with_ok)
        analysis.baseline = next(s for s in with_ok if (s.load if is_number(s.load) else math.inf) == lowest)
    for step in analysis.steps:
        step.generator = step_health(analysis.folder.generator, step.start + step.settle_s, step.end)
        analysis.verdicts[step.stage] = "" if excluded(step) else analysis.slo.verdict(step)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _statuses(codes: dict) -> str:
    shown = [str(c) for c in sorted(codes) if c]
    return f" ({', '.join(shown)})" if shown else ""


def _invalid_note(step: Step, count: int) -> str:
    text = step.outcome_errors.get(contract.INVALID, "")
    head = text.split(":")[0].strip()
    if head.lower().startswith("invalid") and len(head) <= 40:
        return f"{count} {head}"
    return f"{count} invalid" + (f" ({head})" if head and len(head) <= 40 else "")


def outcome_notes(step: Step) -> list[str]:
    notes = []
    for outcome in contract.FAILURE_OUTCOMES:
        n = step.outcomes.get(outcome, 0)
        if not n:
            continue
        if outcome == contract.REJECTED:
            notes.append(f"{n} rejected{_statuses(step.statuses.get(outcome, {}))}")
        elif outcome == contract.INVALID:
            notes.append(_invalid_note(step, n))
        elif outcome == contract.HTTP_ERROR:
            notes.append(_plural(n, *OUTCOME_NOTE[outcome]) + _statuses(step.statuses.get(outcome, {})))
        else:
            notes.append(_plural(n, *OUTCOME_NOTE[outcome]))
    other = sum(c for o, c in step.outcomes.items() if o not in contract.OUTCOMES and o != "failed")
    if other:
        notes.append(f"{other} with an unknown outcome (counted as failures)")
    return notes


def dropped_text(step: Step) -> str:
    """The dropped arrivals of a rate step in words ('' without any)."""
    dropped = step.outcomes.get(contract.DROPPED, 0)
    if not dropped:
        return ""
    achieved, offered = step.metrics.get("achieved_rate"), step.metrics.get("offered_rate")
    got = f": the server got {achieved:.2f} of {offered:g} req/s offered" if is_number(achieved) and is_number(offered) else ""
    return f"{dropped} dropped by the generator (--max-in-flight reached{got})"


def rate_notes(step: Step) -> list[str]:
    """A rate step's dropped arrivals and a queue that grows without bound."""
    notes = [dropped_text(step) + ": left out of the verdicts"] if dropped_text(step) else []
    trend = step.queue_trend
    if trend and trend["growing"]:
        first, _, last = trend["thirds_ms"]
        notes.append(f"queue grows without bound ({trend['source']} {stats.format_seconds(first)} → "
                     f"{stats.format_seconds(last)} across the step)")
    return notes


def _annotate(analysis: Analysis) -> None:
    base = analysis.baseline
    base_p95 = base.metrics.get("p95_ms") if base else None
    seen_failure = False
    for step in analysis.steps:
        m, notes = step.metrics, []
        if not m.get("requests"):
            notes.append("no requests")
        notes.extend(outcome_notes(step))
        judged = m.get("requests", 0) - sum(step.outcomes.get(o, 0) for o in contract.NOT_JUDGED)
        if judged and step.outcomes.get(contract.OK, 0) == 0 and analysis.source == "requests.csv":
            notes.append("all failed")
        if step.failures and not seen_failure:
            notes.append("first failures")
            seen_failure = True
        if step.not_held:
            notes.append(step.not_held + ": left out of the verdicts")
        p95 = m.get("p95_ms")
        if m.get("requests") and not enough(step):
            notes.append(too_few_text(step))
        elif step is not base and is_number(p95) and is_number(base_p95) and base_p95 > 0 and enough(base):
            ratio = p95 / base_p95
            if ratio >= SLOW_FACTOR:
                notes.append(f"p95 {ratio:.1f}× baseline")
        mode = (step.concurrency or {}).get("mode")
        if mode:
            notes.append(CONCURRENCY_NOTE[mode])
        verdict = analysis.verdicts.get(step.stage)
        if verdict:
            notes.append("fails SLO: " + verdict)
        if step.generator and step.generator["reasons"]:
            notes.append(f"{SATURATED_NOTE} ({'; '.join(step.generator['reasons'])})")
        cut = step.outcomes.get(contract.CUT_SHORT, 0)
        if cut:
            notes.append(f"{cut} cut short by the stop (not in success rate)")
        notes.extend(rate_notes(step))
        if step.settled:
            notes.append(f"settle: {step.settled} requests left out")
        if step.window_note:
            notes.append(step.window_note)
        step.notes = notes + step.notes
