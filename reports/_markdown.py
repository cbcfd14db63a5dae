"""results.md: the tables, the time split, the conclusion and the gaps, rendered from an Analysis."""

from __future__ import annotations

from ollama_locust import contract

from ._analysis import CONCURRENCY_NOTE, Analysis
from ._concurrency import SERIALISED
from ._conclusion import users_text
from ._step_metrics import MIN_P95_N, format_seconds, format_value, is_number, table_metrics
from ._steps import CLIENT_SPLIT, TIME_PARTS


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


SAMPLED = {"p95_ms": "n", "ttft_p95_ms": "ttft_n"}  # a p95 and the count it is computed over


def marked(step, key: str) -> bool:
    """Whether the step's value of ``key`` is a p95 from fewer than MIN_P95_N requests."""
    if key not in SAMPLED or not is_number(step.metrics.get(key)):
        return False
    n = step.ttft_n if SAMPLED[key] == "ttft_n" else step.metrics.get("n", 0)
    return n < MIN_P95_N


def results_table(a: Analysis) -> str:
    metrics = table_metrics(a.rate_run)
    header = [a.key_label] + [m.label for m in metrics] + ["Notes"]
    rows = []
    for step in a.steps:
        rows.append([step.users_label] + [format_value(m.unit, step.metrics.get(m.key)) + ("*" if marked(step, m.key) else "")
                                          for m in metrics] + ["; ".join(step.notes)])
    return table(header, rows)


def footnotes(a: Analysis) -> list[str]:
    """The lines under the table: the * of a small sample, the drain."""
    out = []
    if any(marked(s, k) for s in a.steps for k in SAMPLED):
        out.append(f"\\* a p95 from fewer than {MIN_P95_N} requests (see n): a rough figure, no verdict rests on "
                   "it; hold steps longer (--step-time 60s) for a firm one.")
    if a.drain:
        how = ", ".join(f"{n} {o}" for o, n in sorted(a.drain["outcomes"].items(), key=lambda kv: -kv[1]))
        out.append(f"Drain: {a.drain['requests']} requests started after the last step's end (the users' "
                   f"requests in flight as they stopped): {how}; they belong to no step.")
    return out


def class_table(a: Analysis) -> str:
    metrics = table_metrics(a.rate_run)
    header = [a.key_label, "User class"] + [m.label for m in metrics]
    rows = []
    for row in a.class_rows:
        users = f"{row['rate']:g}" if is_number(row.get("rate")) else str(int(row["users"])) if is_number(row["users"]) else "?"
        rows.append([users, row["user_class"]] + [format_value(m.unit, row["metrics"].get(m.key)) for m in metrics])
    return table(header, rows)


def error_table(a: Analysis) -> str | None:
    present = [o for o in contract.OUTCOMES if o != contract.OK and any(s.outcomes.get(o) for s in a.steps)]
    extra = sorted({o for s in a.steps for o in s.outcomes if o not in contract.OUTCOMES})
    present += extra
    if not present:
        return None
    header = [a.key_label] + present + ["Top error texts"]
    rows = []
    for step in a.steps:
        if not any(step.outcomes.get(o) for o in present):
            continue
        errors = "; ".join(f"{text[:80]} ×{n}" for text, n in step.top_errors)
        rows.append([step.users_label] + [str(step.outcomes.get(o, 0)) for o in present] + [errors or "–"])
    return table(header, rows)


def client_split_section(a: Analysis) -> list[str]:
    """Before the first token vs streaming, from the client's timings (every API), with the measured overlap."""
    if not any(s.client_split for s in a.steps):
        return []
    suffix = {"ttft_ms": " (median)", "streaming_ms": " (median)", "requests_ahead": " (mean)",
              "ahead_left_ms": " (mean)", "streams_alongside": " (mean)", "holding_at_send": " (mean)"}
    header = [a.key_label, "Requests with TTFT"] + \
             [label[0].upper() + label[1:] + suffix.get(key, "") for key, label, _ in CLIENT_SPLIT] + ["Verdict"]
    rows, sentences = [], []
    for step in a.steps:
        c = step.client_split
        if not c:
            rows.append([step.users_label, "0"] + ["–"] * (len(CLIENT_SPLIT) + 1))
            continue
        cells = []
        for key, _, _ in CLIENT_SPLIT:
            value = c.get(key)
            cells.append(format_seconds(value) if key.endswith("_ms") and is_number(value)
                         else f"{value} of {c['n']} ({c.get('waited_from')})" if key == "waited"
                         else format_value("ratio", value) if key == "ttft_share"
                         else f"{value:.1f}" if is_number(value) else "–")
        mode = (step.concurrency or {}).get("mode")
        rows.append([step.users_label, str(c["n"])] + cells + [CONCURRENCY_NOTE.get(mode, "")])
        if mode == SERIALISED and is_number(c.get("ttft_share")):
            sentences.append(f"- at {users_text(step)}, {c['ttft_share'] * 100:.0f} % of a request's time passes "
                             f"before its first token, with {c['requests_ahead']:.1f} requests ahead of it: "
                             "requests wait for each other")
    return ["From the client's timings (every API): the time before the first token and the time the answer "
            "streams, and how much the requests overlapped (measured from their start and end times). The rule "
            "behind the verdict is in docs/reports.md (\"Do requests wait for each other?\").", "",
            table(header, rows), ""] + (sentences + [""] if sentences else [])


def time_split_section(a: Analysis) -> list[str]:
    client = client_split_section(a)
    server = server_split_section(a)
    if client and any(s.time_split for s in a.steps):
        server = ["From the server's own durations:", ""] + server
    return client + server


def server_split_section(a: Analysis) -> list[str]:
    with_split = [s for s in a.steps if s.time_split]
    if not with_split:
        return [a.server_durations or "n/a: no server durations"]
    header = [a.key_label, "Requests with durations"] + \
             [f"{label} (median)" for _, label, _ in TIME_PARTS] + [f"{label} share" for _, label, _ in TIME_PARTS]
    rows, sentences = [], []
    for step in a.steps:
        split = step.time_split
        if not split:
            rows.append([step.users_label, "0"] + ["–"] * (2 * len(TIME_PARTS)))
            continue
        total = sum(split[k] for k, _, _ in TIME_PARTS)
        shares = [split[k] / total if total > 0 else float("nan") for k, _, _ in TIME_PARTS]
        rows.append([step.users_label, str(split["n"])] + [format_seconds(split[k]) for k, _, _ in TIME_PARTS]
                    + [format_value("ratio", s) for s in shares])
        if total > 0:
            i = max(range(len(TIME_PARTS)), key=lambda j: shares[j])
            key, label, _ = TIME_PARTS[i]
            why = {"queue_wait_ms": " (waiting for a free OLLAMA_NUM_PARALLEL slot)",
                   "load_ms": " (waiting for the model to load or for the scheduler)",
                   "outside_ms": " (network, gateway or client)"}.get(key, "")
            sentences.append(f"- at {users_text(step)}, {shares[i] * 100:.0f} % of the wait is {label}{why}")
    out = [table(header, rows), "",
           "Medians of each part over the step's successful requests with server durations; shares are of the "
           "sum of those medians. Queue wait = total_duration − load − prompt eval − eval (Ollama reports no "
           "slot wait of its own).", ""]
    out += sentences
    return out


def render(a: Analysis, conclusion: dict, plots: list[tuple[str, str]]) -> str:
    run = a.run
    predicted = bool(run.get(contract.RUN_PREDICTED))
    title = f"# Results (predicted): {a.label}" if predicted else f"# Results: {a.label}"
    meta = []
    for key, name in (("host", "target"), ("model", "model"), ("api", "API"), ("server_version", "server")):
        if run.get(key):
            meta.append(f"{name} `{run[key]}`")
    out = [title, ""]
    if predicted:
        source = (run.get("prediction") or {}).get("probe") if isinstance(run.get("prediction"), dict) else None
        out += [f"**Predicted, not measured**: `ollama-locust predict` ran the user model against the server fitted "
                f"by `ollama-locust probe`{f' (`{source}`)' if source else ''}, in virtual time. The model does not "
                "capture thermal throttling, memory pressure or other tenants; a measured step test is the final "
                "word (docs/predict.md).", ""]
    if meta:
        out += [", ".join(meta) + ".", ""]
    out += [results_table(a), ""]
    notes = footnotes(a)
    if notes:
        out += notes + [""]
    if a.source == "requests.csv":
        out.append(f"Percentiles: {a.percentile_text}. Avg, p50, p95, Max and TTFT are over successful requests "
                   "(n of them); Requests started in the step; Tokens/s (total) counts the tokens that arrived "
                   "inside the step's window and Req/s the successful requests that completed inside it (Completed), "
                   "over the window (stages.csv, settle window excluded), so neither can exceed what the server "
                   "delivered; Tokens/s (per request) is the median decode rate.")
    else:
        out.append(f"Percentiles: {a.percentile_text}. Avg is over all of Locust's entries (failures too), from "
                   "the difference of its running totals; Req/s counts successful requests over the step's "
                   "time in the history; TTFT and tokens/s are not in Locust's CSVs.")
    slo = a.slo
    out.append(f"Thresholds: {slo.rule}" + ("" if slo.latency_rule else ", no latency objective")
               + f" ({slo.source}).")
    out.append("")
    if a.class_rows:
        out += ["## Per user class", "", class_table(a), ""]
    if a.source == "requests.csv":
        errors = error_table(a)
        out += ["## Errors per step", ""]
        out += [errors if errors else "No failures in any step.", ""]
    out += ["## Where the time goes", ""] + time_split_section(a) + [""]
    out += ["## Conclusion", ""]
    for paragraph in conclusion["text"]:
        out += [paragraph, ""]
    if plots:
        out += ["## Plots", ""]
        out += [f"![{title_}]({name})" for name, title_ in plots]
        out.append("")
    if a.gaps:
        out += ["## Gaps", ""] + [f"- {g}" for g in a.gaps] + [""]
    return "\n".join(out)
