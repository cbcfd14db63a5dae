"""The LLM numbers in Locust's web UI, live (``register(environment, web_ui, recorder)``, from the plugin).

Through Locust's own extension points, no fork of the UI:

* an **LLM** tab (``template_args["extended_tabs"/"extended_tables"]``; its rows ride along in the
  ``extended_stats`` of ``/stats/requests``, which the UI polls every 2 s): per user class and in total,
  for the current stage and the whole run — requests, outcomes by class, TTFT p50/p95, E2E p50/p95,
  tokens/s per request (median) and in total;
* ``/llm/`` — a small page of our own with live charts of TTFT and tokens/s over time (the extended tab
  can only show a table); ``webui_static/tab.js``, added to Locust's page, embeds it under the LLM tab;
* downloads (``extended_csv_files``, in the "Download Data" tab): ``/llm/requests.csv`` (the run
  folder's file, flushed first) and ``/llm/report.md`` (the same post-processor as headless runs, on
  a snapshot of the run folder so far);
* a run started from the form runs with the form's values: the shape controller and ``run.json`` are
  rebuilt from the options the form set (user count, spawn rate, run time, ``--shape``, ``--model`` ...).

All routes respect ``--web-login``. Records come from the master's record sink, so in a distributed run
the view aggregates every worker. Computation is bounded: each group keeps at most ``SAMPLE_CAP``
values per series (exact below it, a uniform reservoir above), percentiles are computed at most once
per ``SNAPSHOT_EVERY_S``, the chart keeps ``SERIES_POINTS`` points over a rolling ``WINDOW_S`` window.

This module imports neither gevent nor flask at import time: :class:`LiveStats` is plain Python.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from array import array
from collections import Counter, deque

from ollama_locust import contract
from ollama_locust.stats import percentile

logger = logging.getLogger(__name__)

TAB_KEY = "llm"
SAMPLE_CAP = 20_000  # values kept per series and group (exact percentiles below it)
SNAPSHOT_EVERY_S = 1.0
WINDOW_S = 10.0  # rolling window of the chart points
POINT_EVERY_S = 2.0
SERIES_POINTS = 1800  # one hour of points at 2 s
TOTAL = "Total"
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "webui_static")

# The LLM tab's columns: (key, title). Keys have no underscores: Locust's UI camel-cases them.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("scope", "Scope"),
    ("userclass", "User class"),
    ("requests", "Requests"),
    ("ok", "OK"),
    *((outcome.replace("_", ""), outcome) for outcome in contract.FAILURE_OUTCOMES),
    ("cutshort", "cut_short"),
    ("ttftp50", "TTFT p50 (ms)"),
    ("ttftp95", "TTFT p95 (ms)"),
    ("e2ep50", "E2E p50 (ms)"),
    ("e2ep95", "E2E p95 (ms)"),
    ("tpsrequest", "Tokens/s per request (p50)"),
    ("tpstotal", "Tokens/s total"),
)
NA = "n/a"


def _number(value) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class Reservoir:
    """At most ``cap`` floats: all of them up to the cap, a uniform sample (Algorithm R) above it."""

    __slots__ = ("cap", "seen", "values", "_random")

    def __init__(self, cap: int = SAMPLE_CAP, seed: int = 0):
        self.cap, self.seen, self.values, self._random = cap, 0, array("d"), random.Random(seed)

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.cap:
            self.values.append(value)
        else:
            slot = self._random.randrange(self.seen)
            if slot < self.cap:
                self.values[slot] = value

    def sorted(self) -> list[float]:
        return sorted(self.values)


class Group:
    """One user class (or the total) in one scope: outcome counts and bounded samples of ok requests."""

    def __init__(self, cap: int = SAMPLE_CAP):
        self.outcomes: Counter = Counter()
        self.ttft = Reservoir(cap, 1)
        self.e2e = Reservoir(cap, 2)
        self.tps = Reservoir(cap, 3)
        self.ok_tokens = 0

    def add(self, record: dict) -> None:
        outcome = record.get("outcome") or ""
        self.outcomes[outcome] += 1
        if outcome != contract.OK:
            return
        for series, column in ((self.ttft, "ttft_ms"), (self.e2e, "e2e_ms"), (self.tps, "tokens_per_s")):
            value = _number(record.get(column))
            if value is not None:
                series.add(value)
        self.ok_tokens += int(_number(record.get("output_tokens")) or 0)

    def row(self, window_s: float | None) -> dict:
        ttft, e2e, tps = self.ttft.sorted(), self.e2e.sorted(), self.tps.sorted()
        row = {"requests": sum(self.outcomes.values()), "ok": self.outcomes[contract.OK],
               "cutshort": self.outcomes[contract.CUT_SHORT]}
        for outcome in contract.FAILURE_OUTCOMES:
            row[outcome.replace("_", "")] = self.outcomes[outcome]
        row.update(ttftp50=percentile(ttft, 50), ttftp95=percentile(ttft, 95),
                   e2ep50=percentile(e2e, 50), e2ep95=percentile(e2e, 95), tpsrequest=percentile(tps, 50),
                   tpstotal=self.ok_tokens / window_s if window_s and window_s > 0 else None)
        return row


class Scope:
    """The groups of one scope (a stage, or the whole run): one per user class plus the total."""

    def __init__(self, cap: int = SAMPLE_CAP):
        self.cap = cap
        self.groups: dict[str, Group] = {TOTAL: Group(cap)}
        self.first_start: float | None = None
        self.last_end: float | None = None

    def add(self, record: dict) -> None:
        user_class = record.get("user_class") or "?"
        group = self.groups.get(user_class)
        if group is None:
            group = self.groups[user_class] = Group(self.cap)
        group.add(record)
        self.groups[TOTAL].add(record)
        start = _number(record.get("start_time"))
        if start is not None:
            self.first_start = start if self.first_start is None else min(self.first_start, start)
            end = start + (_number(record.get("e2e_ms")) or 0.0) / 1000.0
            self.last_end = end if self.last_end is None else max(self.last_end, end)

    def rows(self, label: str, window_s: float | None) -> list[dict]:
        names = sorted(name for name in self.groups if name != TOTAL) + [TOTAL]
        return [{"scope": label, "userclass": name, **self.groups[name].row(window_s)} for name in names]


class LiveStats:
    """What the LLM tab and the chart page show, fed one stamped record at a time (``add``)."""

    def __init__(self, cap: int = SAMPLE_CAP, clock=time.time):
        self.cap = cap
        self.clock = clock
        self.run = Scope(cap)
        self.stages: dict[int, Scope] = {}
        self.version = 0
        self.recent: deque = deque()  # (arrival time, ttft_ms, tokens_per_s, output_tokens) of ok records
        self.series: deque = deque(maxlen=SERIES_POINTS)
        self._last_point = 0.0
        self._cache: tuple[int, float, dict] | None = None

    def add(self, record: dict) -> None:
        self.version += 1
        self.run.add(record)
        stage = record.get("stage")
        if isinstance(stage, int) and stage >= 0 and not record.get("settle"):
            scope = self.stages.get(stage)
            if scope is None:
                scope = self.stages[stage] = Scope(self.cap)
                for old in [index for index in self.stages if index < stage - 1]:
                    del self.stages[old]  # only the current and the previous stage keep samples
            scope.add(record)
        if record.get("outcome") == contract.OK:
            self.recent.append((self.clock(), _number(record.get("ttft_ms")), _number(record.get("tokens_per_s")),
                                int(_number(record.get("output_tokens")) or 0)))

    # -- the chart ---------------------------------------------------------------------------
    def tick(self, users: int | None = None, stage: int | None = None) -> dict | None:
        """Add a chart point (rolling ``WINDOW_S`` window of ok records); call every ``POINT_EVERY_S``."""
        now = self.clock()
        while self.recent and self.recent[0][0] < now - WINDOW_S:
            self.recent.popleft()
        ttft = sorted(r[1] for r in self.recent if r[1] is not None)
        tps = sorted(r[2] for r in self.recent if r[2] is not None)
        window = min(WINDOW_S, now - self.run.first_start) if self.run.first_start else WINDOW_S
        point = {"t": round(now, 3), "users": users, "stage": stage, "requests": len(self.recent),
                 "ttftp50": _round(percentile(ttft, 50)), "ttftp95": _round(percentile(ttft, 95)),
                 "tpsrequest": _round(percentile(tps, 50)),
                 "tpstotal": _round(sum(r[3] for r in self.recent) / window) if self.recent and window > 0 else None}
        self.series.append(point)
        self._last_point = now
        return point

    # -- the tables --------------------------------------------------------------------------
    def snapshot(self, span=None, running: bool = True) -> dict:
        """Rows for the current stage (``span``: the timeline's current StageSpan, or None) and the run.

        Computed at most once per ``SNAPSHOT_EVERY_S`` (the UI polls every 2 s, possibly from many tabs).
        """
        now = self.clock()
        if self._cache is not None and now - self._cache[1] < SNAPSHOT_EVERY_S:
            return self._cache[2]
        rows = []
        stage = None
        if span is not None:
            end = span.end_time or (now if running else (self.run.last_end or now))
            scope = self.stages.get(span.stage)
            stage = {"stage": span.stage, "users": span.users, "kind": span.kind, "settle_s": span.settle_s,
                     "start_time": span.start_time, "end_time": span.end_time}
            label = f"stage {span.stage} ({span.users} users)"
            rows += (scope or Scope(self.cap)).rows(label, max(0.0, end - span.start_time - span.settle_s))
        run_window = None
        if self.run.first_start is not None:
            end = now if running else (self.run.last_end or now)
            run_window = max(0.0, end - self.run.first_start)
        rows += self.run.rows("whole run", run_window)
        result = {"stage": stage, "rows": [_display(row) for row in rows], "requests": self.version}
        self._cache = (self.version, now, result)
        return result


def _round(value, digits: int = 1):
    return None if value is None else round(value, digits)


def _display(row: dict) -> dict:
    """Numbers rounded for the table; what could not be measured says so."""
    shown = {}
    for key, value in row.items():
        if value is None:
            shown[key] = NA
        elif isinstance(value, float):
            shown[key] = round(value, 1)
        else:
            shown[key] = value
    return shown


# -- Locust / Flask wiring (master or single process only) ---------------------------------------

def template_args() -> dict:
    """The web UI's extension arguments: the LLM tab, its table, and the extra download links."""
    return {
        "extended_tabs": [{"title": "LLM", "key": TAB_KEY}],
        "extended_tables": [{"key": TAB_KEY, "structure": [{"key": k, "title": t} for k, t in COLUMNS]}],
        "extended_csv_files": [
            {"href": "./llm/requests.csv", "title": "Download LLM requests.csv (one row per request)"},
            {"href": "./llm/report.md", "title": "Download LLM report so far (markdown)"},
            {"href": "./llm/", "title": "Open LLM live charts (TTFT, tokens/s)"},
        ],
    }


def _running(runner) -> bool:
    return getattr(runner, "state", None) in ("spawning", "running")


def _users(runner) -> int | None:
    return getattr(runner, "user_count", None)


def snapshot_run_folder(run_dir: str, parent: str) -> str:
    """Copy the run folder's files (not a previous report) into ``parent``/<same name>; returns the copy.

    Called right after ``sink.flush()`` in the same greenlet, so ``requests.csv`` ends on a whole row."""
    copy = os.path.join(parent, os.path.basename(os.path.normpath(run_dir)))  # same name: same label
    os.mkdir(copy)
    for name in os.listdir(run_dir):
        source = os.path.join(run_dir, name)
        if os.path.isfile(source) and not name.endswith((".png", ".md", ".tmp")) and name != contract.RESULTS_JSON:
            shutil.copyfile(source, os.path.join(copy, name))
    return copy


def report_markdown(copy: str) -> str:
    """The markdown report of a run-folder snapshot: ``reports.write_report``, the headless runs'
    post-processor (no plots; it writes only into the snapshot, never into the live folder)."""
    from ollama_locust.reports import write_report

    return write_report(copy, plots=False).markdown


def register(environment, web_ui, recorder) -> LiveStats:
    """Add the LLM tab, the chart page and the downloads to ``web_ui``; feed them from ``recorder.sink``."""
    import gevent
    from flask import Blueprint, Response, g, jsonify, make_response, request, send_from_directory

    live = LiveStats()
    recorder.sink.listeners.append(live.add)
    environment.llm_live = live
    web_ui.template_args.update(template_args())
    runner = environment.runner
    auth = web_ui.auth_required_if_enabled

    def current_stage():
        span = recorder.timeline.current
        return span.stage if span is not None else None

    def chart_loop() -> None:
        while True:
            gevent.sleep(POINT_EVERY_S)
            if _running(runner) or live.recent:
                try:
                    live.tick(_users(runner), current_stage())
                except Exception:  # a chart point is never worth the run
                    logger.exception("LLM chart point failed")

    gevent.spawn(chart_loop)

    def snapshot() -> dict:
        return live.snapshot(recorder.timeline.current, _running(runner))

    base = (getattr(environment.parsed_options, "web_base_path", None) or "").rstrip("/")
    blueprint = Blueprint("llm", __name__, url_prefix=f"{base}/llm")

    @blueprint.route("/")
    @auth
    def page():
        return send_from_directory(STATIC, "llm.html", max_age=0)

    @blueprint.route("/static/<path:name>")
    @auth
    def static(name):
        return send_from_directory(STATIC, name, max_age=0)

    @blueprint.route("/stats")
    @auth
    def stats():
        data = snapshot()
        return jsonify({**data, "columns": [{"key": k, "title": t} for k, t in COLUMNS],
                        "series": list(live.series), "state": getattr(runner, "state", None),
                        "user_count": _users(runner), "run_dir": recorder.path,
                        "recorded": recorder.sink.total})

    @blueprint.route("/requests.csv")
    @auth
    def requests_csv():
        recorder.sink.flush()
        path = os.path.join(recorder.path, contract.REQUESTS_FILE)
        if not os.path.exists(path):
            return make_response("no requests.csv yet\n", 404)
        size = os.path.getsize(path)  # the file grows while we send: send what was there now

        def chunks():
            with open(path, "rb") as handle:
                left = size
                while left > 0:
                    data = handle.read(min(65536, left))
                    if not data:
                        break
                    left -= len(data)
                    yield data

        name = f"{os.path.basename(recorder.path.rstrip('/'))}-{contract.REQUESTS_FILE}"
        return Response(chunks(), mimetype="text/csv", headers={
            "Content-Length": str(size), "Content-Disposition": f"attachment; filename={name}",
            "Cache-Control": "no-store"})

    @blueprint.route("/report.md")
    @auth
    def report():
        from ollama_locust.reports import ReportError

        with tempfile.TemporaryDirectory(prefix="llm-report-") as parent:
            recorder.sink.flush()
            copy = snapshot_run_folder(recorder.path, parent)
            try:  # pandas in a real thread: the UI and the records keep flowing meanwhile
                markdown = gevent.get_hub().threadpool.apply(report_markdown, (copy,))
            except ReportError as error:
                return make_response(f"no report yet: {error}\n", 409)
        name = f"{os.path.basename(recorder.path.rstrip('/'))}-{contract.RESULTS_MD}"
        return Response(markdown, mimetype="text/markdown", headers={
            "Content-Disposition": f"attachment; filename={name}", "Cache-Control": "no-store"})

    web_ui.app.register_blueprint(blueprint)

    @web_ui.app.before_request
    def note_new_run():
        if request.endpoint == "locust.swarm":
            g.llm_new_run = getattr(runner, "shape_greenlet", None) is None

    @web_ui.app.after_request
    def extend(response):
        endpoint = request.endpoint
        if endpoint == "locust.request_stats" and response.status_code == 200 and response.is_json:
            data = json.loads(response.get_data())
            data["extended_stats"] = [{"key": TAB_KEY, "data": snapshot()["rows"]}]
            # a new response: Locust memoizes the original one for 2 s
            return web_ui.app.response_class(json.dumps(data), mimetype="application/json")
        if endpoint == "locust.swarm" and g.get("llm_new_run") and environment.shape_class is not None:
            try:
                recorder.replan()
            except Exception:
                logger.exception("ollama-locust: could not apply the form's options")
        if endpoint == "locust.index" and response.status_code == 200 and response.mimetype == "text/html":
            html = response.get_data(as_text=True)
            tag = '<script src="./llm/static/tab.js"></script>'
            if "</body>" in html and tag not in html:
                response.set_data(html.replace("</body>", f"{tag}\n</body>", 1))
        return response

    return live
