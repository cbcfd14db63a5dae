"""The LLM numbers in Locust's web UI, live (``register(environment, web_ui, recorder)``, from the plugin).

Through Locust's own extension points, no fork of the UI:

* an **LLM** tab (``template_args["extended_tabs"/"extended_tables"]``; its rows ride along in the
  ``extended_stats`` of ``/stats/requests``): one row per stage (the report's step table, live) and the
  whole test. ``webui_static/tab.js``, added to Locust's page, puts our own page ``/llm/?embed=1`` in its
  place: the same table with per-class rows behind a toggle and failures that expand by class, the time
  split per stage, and live charts (TTFT, tokens/s, users and requests in flight, on a time axis with
  the stage boundaries). Locust's table stays as the fallback if its markup ever changes;
* downloads (``extended_csv_files``, in "Download Data"): ``/llm/requests.csv`` (the run folder's file,
  flushed first), ``/llm/report.md`` and ``/llm/report.html`` (the headless runs' post-processor on a
  snapshot of the run folder; the HTML has the plots embedded);
* the start form: the project's fields in sections (target and model, load, thresholds, run) with the
  option table's labels; Start checks the target and warms the model up *before* the test starts, with
  "loading the model ..." on the page meanwhile and a preflight error shown in the form;
* a run started from the form runs with the form's values (``RunOwner.replan``); "New" after a Stop
  starts a new run folder (``RunOwner.new_run``) and empties the tab; Locust's Reset empties it too;
* Locust's page polls ``/stats/requests`` only while a test is spawning or running: while the runner is
  stopping (``cleanup``/``stopping``) that answer waits for the stop to finish, so the page never stays
  at CLEANUP after a Stop.

All routes respect ``--web-login``. Records come from the master's record sink, so in a distributed run
the view aggregates every worker. The numbers are :class:`~ollama_locust.scenarios.live_stats.LiveStats`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import time

from ollama_locust import contract, options
from ollama_locust.scenarios import secrets
from ollama_locust.scenarios.live_stats import NA, POINT_EVERY_S, LiveStats  # noqa: F401  (NA: the tests' marker)

logger = logging.getLogger(__name__)

TAB_KEY = "llm"
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "webui_static")
STOPPING_STATES = ("cleanup", "stopping")
STOP_WAIT_S = 30.0  # longest a /stats/requests answer waits for a stop to finish

# The LLM table's columns, key columns first: (key, title, what it is). Keys have no underscores
# (Locust's UI camel-cases them). The same list heads Locust's fallback table and our page's table.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("stage", "Stage", "stage number; 'all' = the whole test since the last reset"),
    ("users", "Users", "the stage's user count"),
    ("requests", "Requests", "requests started in the stage (after its settle window)"),
    ("success", "OK %", "successful / (requests - cut short)"),
    ("failed", "Failed", "failed requests (every class but ok and cut short); click for the breakdown by class"),
    ("ttftp50", "TTFT p50 ms", "time to first token, median over successful requests"),
    ("ttftp95", "TTFT p95 ms", "time to first token, 95th percentile over successful requests"),
    ("e2ep95", "E2E p95 ms", "end-to-end latency, 95th percentile over successful requests"),
    ("tpsrequest", "Tok/s per req", "decode rate of one request, median over successful requests"),
    ("tpstotal", "Tok/s total", "output tokens that arrived inside the stage's window / its length"),
    ("rps", "Req/s", "successful requests that ended inside the stage's window / its length"),
    ("queuep50", "Queue p50 ms", "median wait for a free NUM_PARALLEL slot (server durations; n/a without them)"),
    ("held", "Users held", "time-weighted mean of the users running during the stage"),
    ("cutshort", "Cut short", "requests cut short by a stop (neither success nor failure)"),
)
MARK = "TTFT p50 ms"  # the title tab.js finds Locust's table by


def template_args() -> dict:
    """The web UI's extension arguments: the LLM tab, its table, and the extra download links."""
    return {
        "extended_tabs": [{"title": "LLM", "key": TAB_KEY}],
        "extended_tables": [{"key": TAB_KEY, "structure": [{"key": k, "title": t} for k, t, _ in COLUMNS]}],
        "extended_csv_files": [
            {"href": "./llm/requests.csv", "title": "Download LLM requests.csv (one row per request)"},
            {"href": "./llm/report.html", "title": "Download LLM report (HTML with plots)"},
            {"href": "./llm/report.md", "title": "Download LLM report so far (markdown)"},
            {"href": "./llm/", "title": "Open LLM live view (table and charts)"},
        ],
    }


def table_rows(snapshot: dict) -> list[dict]:
    """Locust's fallback table: one flat row per stage and the whole test."""
    keys = [key for key, _, _ in COLUMNS]
    rows = [{key: row.get(key, NA) for key in keys} for row in snapshot["stages"]]
    return rows + [{key: snapshot["total"].get(key, NA if key != "users" else "") for key in keys}]


def form_fields() -> dict:
    """The start form's sections and labels, from the option table (tab.js applies them)."""
    return {"groups": [{"key": key, "title": title} for key, title in options.GROUPS],
            "fields": [{"name": option.dest, "label": option.title, "group": option.group, "help": option.help}
                       for option in options.web_form()]}


def order_form(extra_options: dict) -> dict:
    """Locust's ``extra_options`` in the form's order (sections, then the option table's order)."""
    order = [option.dest for option in options.web_form()]
    first = {name: extra_options[name] for name in order if name in extra_options}
    return {**first, **{name: value for name, value in extra_options.items() if name not in first}}


def _form_name(dest: str) -> str:
    """The name Locust's page posts for the option ``dest``: it camel-cases the keys it gets and snake-cases
    them back before posting, which is not a round trip for digits (``slo_p95`` -> ``sloP95`` -> ``slo_p9_5``)."""
    camel = re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), dest)
    return re.sub(r"([a-z0-9])([A-Z0-9])", r"\1_\2", camel).lower()


FORM_NAMES = {_form_name(o.dest): o.dest for o in options.ALL_OPTIONS if _form_name(o.dest) != o.dest}


def fix_form(form):
    """The posted form with the option table's names (see :func:`_form_name`); None when nothing to fix."""
    if not any(name in form for name in FORM_NAMES):
        return None
    from werkzeug.datastructures import ImmutableMultiDict

    return ImmutableMultiDict([(FORM_NAMES.get(key, key), value) for key, value in form.items(multi=True)])


def _running(runner) -> bool:
    return getattr(runner, "state", None) in ("spawning", "running")


def snapshot_run_folder(run_dir: str, parent: str) -> str:
    """Copy the run folder's files (not a previous report) into ``parent``/<same name>; returns the copy.

    Called right after ``sink.flush()`` in the same greenlet, so ``requests.csv`` ends on a whole row."""
    copy = os.path.join(parent, os.path.basename(os.path.normpath(run_dir)))  # same name: same label
    os.mkdir(copy)
    for name in os.listdir(run_dir):
        source = os.path.join(run_dir, name)
        if os.path.isfile(source) and not name.endswith((".png", ".md", ".html", ".tmp")) and name != contract.RESULTS_JSON:
            shutil.copyfile(source, os.path.join(copy, name))
    return copy


def report_markdown(copy: str) -> str:
    """The markdown report of a run-folder snapshot: ``reports.write_report``, the headless runs'
    post-processor (no plots; it writes only into the snapshot, never into the live folder)."""
    from ollama_locust.reports import write_report

    return write_report(copy, plots=False).markdown


def report_html(copy: str) -> str:
    """The report of a run-folder snapshot as one HTML page, plots embedded."""
    from ollama_locust.reports import write_report
    from ollama_locust.scenarios.html_report import render_html

    return render_html(write_report(copy, plots=True))


def register(environment, web_ui, recorder) -> LiveStats:
    """Add the LLM tab, our page, the downloads and the form's order to ``web_ui``; feed them from the sink."""
    import gevent
    from flask import Blueprint, Response, g, jsonify, make_response, request, send_from_directory

    runner = environment.runner
    live = LiveStats(lambda: recorder.timeline.spans)
    recorder.sink.listeners.append(live.add)
    environment.llm_live = live
    web_ui.template_args.update(template_args())
    # the form's fields in our order: the page's template args go through Jinja's tojson, which sorts keys
    web_ui.app.jinja_env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    auth = web_ui.auth_required_if_enabled
    update_template_args = web_ui.update_template_args

    def ordered_template_args() -> None:
        update_template_args()
        web_ui.template_args["extra_options"] = order_form(web_ui.template_args.get("extra_options") or {})

    web_ui.update_template_args = ordered_template_args
    environment.events.reset_stats.add_listener(lambda **_kw: live.reset())

    def current_stage():
        span = recorder.timeline.current
        return span.stage if span is not None and span.end_time is None else None

    def chart_loop() -> None:
        while True:
            gevent.sleep(POINT_EVERY_S)
            if _running(runner):
                try:
                    live.sample(getattr(runner, "user_count", None), current_stage())
                except Exception:  # a chart point is never worth the run
                    logger.exception("LLM chart point failed")

    gevent.spawn(chart_loop)

    def snapshot() -> dict:
        return live.snapshot(_running(runner))

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
        return jsonify({**snapshot(), "columns": [{"key": k, "title": t, "tip": d} for k, t, d in COLUMNS],
                        "state": getattr(runner, "state", None), "user_count": getattr(runner, "user_count", None),
                        "run_dir": recorder.path, "recorded": recorder.sink.total, "phase": recorder.phase})

    @blueprint.route("/rate", methods=["GET", "POST"])
    @auth
    def rate():
        """The open-loop rate of a run without a plan (``--rate``; 0 = users): POST ``rate=R`` changes it while the
        test runs — the shape begins a stage of R req/s at its next tick (``stepping.ShapeController``)."""
        parsed = environment.parsed_options
        if request.method == "POST":
            raw = request.form.get("rate")
            if raw is None:
                raw = (request.get_json(silent=True) or {}).get("rate")
            try:
                value = float(raw)
            except (TypeError, ValueError):
                value = math.nan
            if not (math.isfinite(value) and value >= 0):
                return jsonify({"success": False, "message": "rate: give requests/s as a number >= 0 (0 = users)"}), 400
            if recorder.plan is not None:
                return jsonify({"success": False, "message": "the rate is set by the plan (--shape): run without a "
                                "shape (--shape none) to set it here"}), 409
            from ollama_locust.scenarios.open_loop import check_classes

            why = check_classes(environment.user_classes) if value else None
            if why:
                return jsonify({"success": False, "message": why}), 400
            if parsed is not None:
                parsed.rate = value
            logger.info("ollama-locust: rate set to %g req/s", value)
        return jsonify({"success": True, "rate": options.get(environment, "rate"), "plan": recorder.plan is not None})

    @blueprint.route("/phase")
    @auth
    def phase():
        return jsonify({"phase": recorder.phase, "state": getattr(runner, "state", None)})

    @blueprint.route("/form")
    @auth
    def form():
        return jsonify(form_fields())

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

    def report(render, suffix: str, mimetype: str):
        from ollama_locust.reports import ReportError

        with tempfile.TemporaryDirectory(prefix="llm-report-") as parent:
            recorder.sink.flush()
            copy = snapshot_run_folder(recorder.path, parent)
            try:  # pandas/matplotlib in a real thread: the UI and the records keep flowing meanwhile
                body = gevent.get_hub().threadpool.apply(render, (copy,))
            except ReportError as error:
                return make_response(f"no report yet: {error}\n", 409)
        name = f"{os.path.basename(recorder.path.rstrip('/'))}-{suffix}"
        return Response(body, mimetype=mimetype, headers={
            "Content-Disposition": f"attachment; filename={name}", "Cache-Control": "no-store"})

    @blueprint.route("/report.md")
    @auth
    def report_md():
        return report(report_markdown, contract.RESULTS_MD, "text/markdown")

    @blueprint.route("/report.html")
    @auth
    def report_page():
        return report(report_html, "results.html", "text/html")

    web_ui.app.register_blueprint(blueprint)

    @web_ui.app.before_request
    def before_swarm():
        if request.endpoint != "locust.swarm":
            return None
        form_host = (request.form.get("host") or "").strip()
        if secrets.has_credentials(form_host):  # refused before Locust stores or shows it anywhere
            message = secrets.url_credentials_error(form_host, field="Host")
            logger.error("ollama-locust: %s", message)
            return jsonify({"success": False, "message": f"ollama-locust: {message}", "host": environment.host})
        fixed = fix_form(request.form)
        if fixed is not None:
            request.form = fixed  # before Locust's view reads it: --slo-p95 from the form applies
        state = getattr(runner, "state", None)
        g.llm_new_run = getattr(runner, "shape_greenlet", None) is None and state in ("ready", "stopped")
        if not g.llm_new_run:
            return None  # Edit of a running test
        if recorder.timeline.spans:  # "New" after a stop: a run folder of its own
            recorder.new_run()
        live.reset()
        if options.get(environment, "skip_preflight"):
            return None
        from ollama_locust.scenarios import preflight

        try:  # before the runner starts: the page says "loading the model ..." meanwhile (tab.js)
            recorder.check_target(host=(request.form.get("host") or "").strip() or None,
                                  model=(request.form.get("model") or "").strip() or None,
                                  api=(request.form.get("api") or "").strip() or None)
        except preflight.PreflightError as error:
            logger.error("ollama-locust: %s", error)
            return jsonify({"success": False, "message": f"ollama-locust: {error}", "host": environment.host})
        recorder.checked = True
        return None

    @web_ui.app.after_request
    def extend(response):
        endpoint = request.endpoint
        if endpoint == "locust.request_stats" and response.status_code == 200 and response.is_json:
            data = json.loads(response.get_data())
            if data.get("state") in STOPPING_STATES:
                # Locust's page stops polling in any state but spawning/running: answer once the stop is done
                deadline = time.monotonic() + STOP_WAIT_S
                while getattr(runner, "state", None) in STOPPING_STATES and time.monotonic() < deadline:
                    gevent.sleep(0.1)
                data["state"], data["user_count"] = getattr(runner, "state", None), getattr(runner, "user_count", 0)
            data["extended_stats"] = [{"key": TAB_KEY, "data": table_rows(snapshot())}]
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
