"""Issue 9 end to end: a real headless Chromium opens the web UI of a locust master with 2 workers against
the simulator, starts a run from the form, and checks the LLM tab against requests.csv; downloads too;
then edits the running test's user count, which must become a stage of its own.

The tab's "whole run" rows are computed from the records in the order they reached the master's sink,
which is also the order of requests.csv: the first N rows of the CSV (N = the tab's request count) are
exactly the records the tab had seen, so the numbers must agree to the display's rounding whatever the
refresh lag.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import urllib.error
import urllib.request

import numpy as np
import pytest

from ollama_locust import contract
from tests.e2e.helpers import ollama_locust, run as run_command
from tests.e2e.webui.helpers import ARTIFACTS, get_json, wait_for

pytestmark = pytest.mark.timeout(300)

THINK_TIME = "0.1,0.3"  # the custom option set in the form (the default, 1-5 s, would give few requests)
USERS = 4
EDITED_USERS = 6  # Locust's "Edit" of the running test
TABLE_JS = """() => {
  const head = [...document.querySelectorAll('th')].find(th => th.textContent.trim() === 'TTFT p50 (ms)');
  if (!head) return null;
  const table = head.closest('table');
  const titles = [...table.querySelectorAll('thead th')].map(th => th.textContent.trim());
  return [...table.querySelectorAll('tbody tr')].map(tr =>
    Object.fromEntries([...tr.querySelectorAll('td')].map((td, i) => [titles[i], td.textContent.trim()])));
}"""
ROUNDING = 0.051  # the tab shows 0.1 ms / 0.1 tok/s; requests.csv holds 3 decimals


def start_from_form(page, url: str, host: str) -> None:
    page.goto(url)
    page.locator("input[name=userCount]").fill(str(USERS))
    page.locator("input[name=spawnRate]").fill(str(USERS))
    page.locator("input[name=host]").fill(host)
    think = page.locator("input[name=thinkTime]")
    if not think.is_visible():  # the project's options sit in a collapsed "Custom parameters" section
        page.get_by_role("button", name=re.compile("custom parameters", re.I)).click()
    think.fill(THINK_TIME)
    page.get_by_role("button", name=re.compile("^start$", re.I)).click()


def llm_rows(page) -> list[dict] | None:
    return page.evaluate(TABLE_JS)


def row(rows: list[dict], scope_prefix: str, user_class: str) -> dict:
    found = [r for r in rows if r["Scope"].startswith(scope_prefix) and r["User class"] == user_class]
    assert len(found) == 1, rows
    return found[0]


def number(text: str) -> float | None:
    return None if text == "n/a" else float(text)


def expected(records: list[dict]) -> dict:
    """What the tab must show for these requests.csv rows (exact percentiles, numpy's linear method)."""
    ok = [r for r in records if r["outcome"] == contract.OK]

    def pct(column: str, q: float) -> float | None:
        values = [float(r[column]) for r in ok if r[column] != ""]
        return float(np.percentile(values, q)) if values else None

    counts = {outcome: sum(r["outcome"] == outcome for r in records) for outcome in contract.OUTCOMES}
    return {"Requests": len(records), "OK": counts[contract.OK], "cut_short": counts[contract.CUT_SHORT],
            **{outcome: counts[outcome] for outcome in contract.FAILURE_OUTCOMES},
            "TTFT p50 (ms)": pct("ttft_ms", 50), "TTFT p95 (ms)": pct("ttft_ms", 95),
            "E2E p50 (ms)": pct("e2e_ms", 50), "E2E p95 (ms)": pct("e2e_ms", 95),
            "Tokens/s per request (p50)": pct("tokens_per_s", 50)}


def assert_agrees(shown: dict, records: list[dict]) -> None:
    for title, value in expected(records).items():
        got = number(shown[title])
        if isinstance(value, int):
            assert got == value, (title, shown, value)
        elif value is None:
            assert got is None, (title, shown)
        else:
            assert got is not None and abs(got - value) <= ROUNDING, (title, got, value)


def download(page, link_name: str, tmp_path) -> bytes:
    page.get_by_role("tab", name="Download Data").click()
    with page.expect_download(timeout=60_000) as info:
        page.get_by_role("link", name=link_name).click()
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    return path.read_bytes()


def test_llm_tab_live_agrees_with_requests_csv(sim_process, locust_cluster, browser_page, tmp_path):
    target = sim_process("--profile", "instant", decode_tps=200, num_parallel=4)
    cluster = locust_cluster(workers=2)
    page = browser_page
    start_from_form(page, cluster.url, target.url)

    # the form's values took effect: users, host, and the custom option (forwarded to the workers)
    stats = wait_for(lambda: (s := get_json(cluster.url + "stats/requests"))["user_count"] == USERS and s,
                     60, f"{USERS} users running")
    assert stats["state"] in ("spawning", "running"), stats["state"]
    with open(os.path.join(cluster.run_dir, contract.RUN_FILE)) as fh:
        run = json.load(fh)
    assert run["options"]["think_time"] == THINK_TIME and run["host"] == target.url, run

    # the LLM tab, live: non-empty TTFT and tokens/s for every user class and the total
    page.get_by_role("tab", name="LLM").click()
    def enough():
        rows = llm_rows(page)
        if not rows:
            return None
        total = row(rows, "whole run", "Total")
        return rows if int(total["Requests"]) >= 40 and total["TTFT p50 (ms)"] != "n/a" else None
    rows = wait_for(enough, 90, "40 requests in the LLM tab")
    assert page.locator("#llm-extra iframe").count() == 1  # the live charts sit under the tab's table
    frame = page.frame_locator("#llm-extra iframe")
    wait_for(lambda: int(frame.locator("body").get_attribute("data-points") or 0) >= 2, 30, "chart points")
    rows = llm_rows(page)  # the latest refresh, read in one go
    page.screenshot(path=os.path.join(os.makedirs(ARTIFACTS, exist_ok=True) or ARTIFACTS, "webui-llm-tab.png"),
                    full_page=True)

    stage_rows = [r for r in rows if r["Scope"].startswith("stage 0")]
    assert stage_rows and all(f"{USERS} users" in r["Scope"] for r in stage_rows), rows
    total = row(rows, "whole run", "Total")
    classes = sorted(r["User class"] for r in rows if r["Scope"] == "whole run" and r["User class"] != "Total")
    assert classes, rows
    for r in [row(rows, "whole run", c) for c in classes] + [total]:
        if int(r["OK"]) > 0:
            assert number(r["TTFT p50 (ms)"]) > 0 and number(r["Tokens/s per request (p50)"]) > 0, r
            assert number(r["Tokens/s total"]) > 0, r

    # downloads: requests.csv of the run so far; its first N rows are what the tab had aggregated
    body = download(page, "Download LLM requests.csv (one row per request)", tmp_path).decode()
    records = list(csv.DictReader(io.StringIO(body)))
    assert tuple(csv.reader(io.StringIO(body)).__next__()) == contract.COLUMN_NAMES
    seen = int(total["Requests"])
    assert len(records) >= seen, (len(records), seen)
    records = records[:seen]
    assert {r["worker"] for r in records} and len({r["worker"] for r in records}) == 2, "both workers' records"
    assert_agrees(total, records)
    for name in classes:
        assert_agrees(row(rows, "whole run", name), [r for r in records if r["user_class"] == name])
    # tokens/s in total: this run's decode rate is 200 tok/s per stream and at most 4 streams
    assert 0 < number(total["Tokens/s total"]) <= 4 * 200 * 1.1, total

    report = download(page, "Download LLM report so far (markdown)", tmp_path).decode()
    assert report.startswith("# Results") and "| Concurrent users |" in report and "TTFT p50" in report, report[:500]
    assert f"| {USERS} |" in report, report[:2000]

    # Locust's "Edit" of the running test (no --shape): the new user count runs, in a stage of its own
    page.get_by_role("button", name=re.compile("^edit$", re.I)).click()
    page.locator("input[name=userCount]").fill(str(EDITED_USERS))  # in the modal: the start form is gone
    page.get_by_role("button", name=re.compile("^update$", re.I)).click()
    wait_for(lambda: get_json(cluster.url + "stats/requests")["user_count"] == EDITED_USERS, 60,
             f"{EDITED_USERS} users running after the edit")
    page.get_by_role("tab", name="LLM").click()
    wait_for(lambda: any(r["Scope"].startswith(f"stage 1 ({EDITED_USERS} users)") for r in llm_rows(page) or []),
             30, "the edited stage in the LLM tab")

    page.locator("header").get_by_role("button", name=re.compile("^stop$", re.I)).click()
    wait_for(lambda: get_json(cluster.url + "stats/requests")["state"] == "stopped", 60, "the run to stop")
    cluster.stop()
    logs = cluster.logs()
    assert "Traceback" not in logs, logs[-4000:]
    with open(os.path.join(cluster.run_dir, contract.STAGES_FILE), newline="") as fh:
        stages = [(int(r["stage"]), int(r["users"])) for r in csv.DictReader(fh)]
    assert stages == [(0, USERS), (1, EDITED_USERS)], stages
    with open(os.path.join(cluster.run_dir, contract.REQUESTS_FILE), newline="") as fh:
        edited = [r for r in csv.DictReader(fh) if r["stage"] == "1"]
    assert edited and all(r["stage_users"] == str(EDITED_USERS) for r in edited), edited[:3]
    report = run_command(ollama_locust("report", cluster.run_dir), tmp_path, name="report")
    assert report.code == 0, report.text[-2000:]
    table = open(os.path.join(cluster.run_dir, "results.md"), encoding="utf-8").read()
    assert f"\n| {USERS} |" in table and f"\n| {EDITED_USERS} |" in table, table[:2000]


def test_llm_routes_respect_web_login(locust_cluster):
    """With --web-login the LLM routes answer like Locust's own: a redirect to the login page."""
    cluster = locust_cluster(workers=0, extra=["--web-login"],
                             locustfile=os.path.join(os.path.dirname(__file__), "login_locustfile.py"))
    opener = urllib.request.build_opener(NoRedirect)
    for path in ("stats/requests", "llm/requests.csv", "llm/report.md", "llm/stats", "llm/", "llm/static/llm.js"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            opener.open(cluster.url + path, timeout=10)
        assert caught.value.code == 302 and "/login" in caught.value.headers["Location"], (path, caught.value.code)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
