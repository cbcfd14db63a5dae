"""`ollama-locust predict PROBE.json`: the step test, run against the fitted server in virtual time
(:func:`virtual_run.simulate`).

The run folder (``requests.csv``, ``stages.csv``, ``run.json`` marked ``"predicted": true``) goes through
the ordinary post-processor, so results.md, results.json and the plots are the same as a measured run's,
labelled predicted. With ``--num-parallel 1,2,4`` the plan is also run under each slot count: the
what-if table (``what-if.md``, ``what-if.json``). ``step --predict`` prints the prediction beside the
measured steps (:func:`beside`).

What the model does not capture is listed in docs/predict.md ("Limits"); a measured step test is the
final word.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

from ollama_locust import contract, options
from ollama_locust.scenarios import plans, run_folder
from ollama_locust.scenarios.fit import resample
from ollama_locust.scenarios.prompts import PromptsError, load_prompts
from ollama_locust.scenarios.user_model import parse_think_time
from ollama_locust.scenarios.virtual_run import Fit, PredictError, Prediction, fit_from_probe, read_probe, simulate

PROG = "ollama-locust predict"


def beside(measured_json: str, predicted_json: str) -> str:
    """Per step: measured, predicted and the relative error (predicted / measured - 1) of the key figures."""
    with open(measured_json, encoding="utf-8") as handle:
        measured = json.load(handle)
    with open(predicted_json, encoding="utf-8") as handle:
        predicted = json.load(handle)
    by_users = {s.get("users"): s for s in predicted.get("steps") or []}
    keys = WHAT_IF_KEYS[:5]
    lines = ["| Concurrent users | " + " | ".join(f"{label} measured / predicted (error)" for _, label in keys) + " |",
             "|---" * (len(keys) + 1) + "|"]
    for step in measured.get("steps") or []:
        other = by_users.get(step.get("users")) or {}
        cells = []
        for key, _ in keys:
            m, p = step.get(key), other.get(key)
            error = (f" ({(p / m - 1) * 100:+.0f} %)" if isinstance(m, (int, float)) and isinstance(p, (int, float)) and m
                     else "")
            cells.append(f"{_figure(key, m)} / {_figure(key, p)}{error}")
        users = step.get("users")
        lines.append(f"| {int(users) if isinstance(users, (int, float)) else '?'} | " + " | ".join(cells) + " |")
    m_best = (measured.get("conclusion") or {}).get("largest_users_meeting_slo")
    p_best = (predicted.get("conclusion") or {}).get("largest_users_meeting_slo")
    lines += ["", f"Largest user count meeting the thresholds: measured {_users(m_best)}, predicted {_users(p_best)}."]
    return "\n".join(lines) + "\n"


def _users(value) -> str:
    return f"{int(value)} users" if isinstance(value, (int, float)) else "none"


# -- the command ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = options.OneLineParser(prog=PROG, description="Predict a step test from a probe: the user model against the server "
                     "fitted by 'ollama-locust probe', in virtual time (seconds instead of the plan's minutes). "
                     "Writes a run folder like 'ollama-locust step' does (results.md, results.json, plots), "
                     "labelled predicted, and with --num-parallel a what-if table over NUM_PARALLEL values.")
    parser.add_argument("probe", metavar="PROBE.json", help="the probe file written by 'ollama-locust probe'")
    options.add_planning(parser, options.PREDICT_ROWS, ("user_class", "num_parallel", "seed", "band", "out"),
                         aliases={"steps": ("--users",)})
    return parser


def parse_slots(text: str, fitted: int) -> list[int]:
    if not str(text).strip():
        return [fitted]
    try:
        values = plans.parse_users(text)
    except plans.PlanError:
        raise PredictError(f"--num-parallel must be whole numbers >= 1 separated by commas (e.g. 1,2,4), got '{text}'") from None
    return list(dict.fromkeys(values))


def run_info(args, fit: Fit, stages: list[plans.Stage], slots: int, prediction: Prediction) -> dict:
    """run.json of a predicted run: the keys a measured run has (plugin.described) plus the prediction's."""
    slo = {"p95_ms": args.slo_p95 or None, "ttft_p95_ms": args.slo_ttft_p95 or None, "min_success": args.min_success}
    values = {dest: getattr(args, dest) for dest in options.PREDICT_ROWS if dest != "run_dir"}
    p = fit.profile
    return {
        contract.RUN_PREDICTED: True,
        "label": args.label or f"predicted-np{slots}",
        "host": fit.host, "model": fit.model, "api": fit.api, "user_classes": [args.user_class],
        "shape": "step", "steps": [stage.users for stage in stages], "step_time_s": stages[0].duration_s,
        "settle_s": stages[0].settle_s, "slo": slo, "options": {**values, "shape": "step"},
        "requests": len(prediction.records), "interrupted": False,
        "stopped_on_failure": ({"stage": prediction.controller.failed_stage, "reason": prediction.controller.failure_reason}
                               if args.stop_on_failure and prediction.controller.failed_stage is not None else None),
        "prediction": {"probe": os.path.abspath(args.probe), "num_parallel": slots, "fitted_num_parallel": fit.num_parallel,
                       "decode_tps": p.decode_tps, "prefill_tps": p.prefill_tps, "beta": p.beta,
                       "batch_curve": [list(point) for point in p.batch_curve],
                       "load_time": p.load_time, "overhead_s": fit.overhead_s,
                       "prompt_token_scale": fit.prompt_token_scale, "prompt_template_tokens": fit.prompt_template_tokens,
                       "reply_reprefilled": fit.reply_reprefilled, "seed": args.seed,
                       "reply_tokens_sample": len(fit.replies_for(args.user_class)),
                       "wall_s": round(prediction.wall_s, 3), "virtual_s": round(prediction.virtual_s, 3)},
        "ended_at": prediction.timeline.spans[-1].end_time if prediction.timeline.spans else None,
    }


WHAT_IF_KEYS = (("p50_ms", "p50"), ("p95_ms", "p95"), ("ttft_p50_ms", "TTFT p50"), ("tokens_per_s_total", "Tokens/s (total)"),
                ("req_per_s", "Req/s"), ("success_rate", "Success"))


def _figure(key: str, value) -> str:
    if not isinstance(value, (int, float)) or value != value:
        return "–"
    if key.endswith("_ms"):
        return f"{value / 1000:.2f} s"
    if key == "success_rate":
        return f"{value * 100:.0f} %"
    return f"{value:.1f}" if key == "tokens_per_s_total" else f"{value:.2f}"


def what_if(results: dict[int, dict]) -> tuple[str, dict]:
    """The what-if table (markdown) and its data from each slot count's results.json."""
    data = {"rows": [], "largest_users_meeting_slo": {}}
    lines = ["| NUM_PARALLEL | Concurrent users | " + " | ".join(label for _, label in WHAT_IF_KEYS) + " | Verdict |",
             "|---" * (len(WHAT_IF_KEYS) + 3) + "|"]
    for slots, result in results.items():
        conclusion = result.get("conclusion") or {}
        data["largest_users_meeting_slo"][slots] = conclusion.get("largest_users_meeting_slo")
        for step in result.get("steps") or []:
            row = {"num_parallel": slots, "users": step.get("users"), **{k: step.get(k) for k, _ in WHAT_IF_KEYS},
                   "concurrency_mode": step.get("concurrency_mode")}
            data["rows"].append(row)
            users = step.get("users")
            lines.append(f"| {slots} | {int(users) if isinstance(users, (int, float)) else '?'} | "
                         + " | ".join(_figure(k, step.get(k)) for k, _ in WHAT_IF_KEYS) + f" | {step.get('concurrency_mode') or '–'} |")
    slo = next((r.get("slo") for r in results.values() if r.get("slo")), {}) or {}
    rule = [f"{what} ≤ {_figure('x_ms', slo[key])}" for key, what in (("p95_ms", "p95"), ("ttft_p95_ms", "TTFT p95"))
            if isinstance(slo.get(key), (int, float))]
    if isinstance(slo.get("min_success"), (int, float)):
        rule.append(f"success ≥ {slo['min_success'] * 100:g} %")
    lines += ["", f"Largest user count meeting the thresholds ({' and '.join(rule) or 'success only'}):", ""]
    for slots, users in data["largest_users_meeting_slo"].items():
        lines.append(f"- NUM_PARALLEL {slots}: " + (f"{int(users)} users" if isinstance(users, (int, float)) else "none of the steps"))
    return "\n".join(lines) + "\n", data


BAND_KEYS = WHAT_IF_KEYS[:5]
BAND_LOW, BAND_HIGH = 10, 90  # percentiles of the replicates: the band


def band(args, data: dict, stages: list[plans.Stage], slots: int, think, prompts) -> tuple[str, dict]:
    """The band of the predicted figures from the probe's own spread: ``args.band`` predictions, each on a
    bootstrap replicate of the probe's measurements (``scenarios/fit.resample``) with its own seed; per step
    and figure the 10th-90th percentile of the replicates, and how often each largest user count met the SLO."""
    import tempfile

    from ollama_locust import reports, stats

    rng = random.Random(f"band-{args.seed}")
    figures: dict[int, dict[str, list[float]]] = {}
    largest: dict[str, int] = {}
    for replicate in range(args.band):
        fit = fit_from_probe(resample(data, rng), args.probe)
        with tempfile.TemporaryDirectory(prefix="ollama-locust-band-") as tmp:
            prediction = simulate(fit, stages, user_class=args.user_class, num_parallel=slots, think=think,
                                  seed=args.seed + 1 + replicate, prompts=prompts, num_predict=args.num_predict,
                                  drain_timeout_s=args.drain_timeout, stop_on_failure=args.stop_on_failure,
                                  min_success=args.min_success, slo_p95_ms=args.slo_p95 or None,
                                  slo_ttft_p95_ms=args.slo_ttft_p95 or None, run_dir=tmp)
            run_folder.write_json(os.path.join(tmp, contract.RUN_FILE), run_info(args, fit, stages, slots, prediction))
            result = reports.write_report(tmp, plots=False).data
        for step in result.get("steps") or []:
            row = figures.setdefault(int(step["users"]), {key: [] for key, _ in BAND_KEYS})
            for key, _ in BAND_KEYS:
                if isinstance(step.get(key), (int, float)):
                    row[key].append(float(step[key]))
        best = (result.get("conclusion") or {}).get("largest_users_meeting_slo")
        name = f"{int(best)} users" if isinstance(best, (int, float)) else "none"
        largest[name] = largest.get(name, 0) + 1
    out = {"replicates": args.band, "percentiles": [BAND_LOW, BAND_HIGH], "steps": {}, "largest_users_meeting_slo": largest}
    lines = ["| Concurrent users | " + " | ".join(label for _, label in BAND_KEYS) + " |", "|---" * (len(BAND_KEYS) + 1) + "|"]
    for users, row in sorted(figures.items()):
        cells, data_row = [], {}
        for key, _ in BAND_KEYS:
            ordered = sorted(row[key])
            low, high = stats.percentile(ordered, BAND_LOW), stats.percentile(ordered, BAND_HIGH)
            data_row[key] = [low, high]
            cells.append(f"{_figure(key, low)} – {_figure(key, high)}" if low is not None else "–")
        out["steps"][users] = data_row
        lines.append(f"| {users} | " + " | ".join(cells) + " |")
    verdicts = ", ".join(f"{name} in {count} of {args.band}" for name, count in sorted(largest.items(), key=lambda i: -i[1]))
    lines += ["", f"Largest user count meeting the thresholds over the replicates: {verdicts}."]
    intro = (f"{args.band} predictions on bootstrap replicates of the probe's requests (its lone requests, each "
             f"round's stream rates and the reply-length sample drawn again), each with its own seed; per figure "
             f"the {BAND_LOW}th–{BAND_HIGH}th percentile. The band is the probe's spread and the predictor's own "
             "sampling, not the server effects the model leaves out (docs/predict.md, Limits).")
    return intro + "\n\n" + "\n".join(lines) + "\n", out


def predict(args) -> tuple[str, dict[int, dict]]:
    """Run the prediction(s) the arguments ask for; returns the main run folder and results per slot count."""
    from ollama_locust import reports

    data = read_probe(args.probe)
    fit = fit_from_probe(data, args.probe)
    if args.band < 0:
        raise PredictError(f"--band must be 0 or more replicates, got {args.band}")
    try:
        stages = plans.step_plan(plans.parse_users(args.steps), plans.parse_duration(args.step_time, "--step-time"),
                                 plans.parse_duration(args.settle, "--settle"))
    except plans.PlanError as error:
        raise PredictError(str(error)) from None
    think = parse_think_time(args.think_time)
    prompts = load_prompts(args.prompts or None)
    slots_list = parse_slots(args.num_parallel, fit.num_parallel)
    main_slots = fit.num_parallel if fit.num_parallel in slots_list else slots_list[0]
    label = args.label or f"predicted-np{main_slots}"
    main_dir = run_folder.prepare(args.run_dir) if args.run_dir else run_folder.create_unique(label, args.out)
    results: dict[int, dict] = {}
    for slots in [main_slots] + [s for s in slots_list if s != main_slots]:
        run_dir = main_dir if slots == main_slots else run_folder.prepare(os.path.join(main_dir, f"what-if-np{slots}"))
        prediction = simulate(fit, stages, user_class=args.user_class, num_parallel=slots, think=think, seed=args.seed,
                              prompts=prompts, num_predict=args.num_predict, drain_timeout_s=args.drain_timeout,
                              stop_on_failure=args.stop_on_failure, min_success=args.min_success,
                              slo_p95_ms=args.slo_p95 or None, slo_ttft_p95_ms=args.slo_ttft_p95 or None,
                              run_dir=run_dir)
        sub = replace_label(args, slots, main_slots)
        run_folder.write_json(os.path.join(run_dir, contract.RUN_FILE), run_info(sub, fit, stages, slots, prediction))
        report = reports.write_report(run_dir, plots=slots == main_slots)
        results[slots] = report.data
        if slots == main_slots:
            main_report = report
    table, what = what_if(results)
    with open(os.path.join(main_dir, contract.WHAT_IF_MD), "w", encoding="utf-8") as handle:
        handle.write("# What if: NUM_PARALLEL (predicted)\n\n" + table)
    run_folder.write_json(os.path.join(main_dir, contract.WHAT_IF_JSON), what)
    args.band_text = None
    if args.band:
        args.band_text, band_data = band(args, data, stages, main_slots, think, prompts)
        run_folder.write_json(os.path.join(main_dir, contract.BAND_JSON), band_data)
    with open(os.path.join(main_dir, contract.RESULTS_MD), "a", encoding="utf-8") as handle:
        if args.band_text:
            handle.write(f"\n## Band of the prediction (NUM_PARALLEL {main_slots})\n\n" + args.band_text)
        handle.write("\n## What if: NUM_PARALLEL (predicted)\n\n" + table)
    args.main_report = main_report
    args.what_if_table = table
    return main_dir, results


def replace_label(args, slots: int, main_slots: int):
    if slots == main_slots:
        return args
    copy = argparse.Namespace(**vars(args))
    copy.label = f"{args.label or 'predicted'}-what-if-np{slots}"
    return copy


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    try:
        run_dir, _results = predict(args)
    except (PredictError, PromptsError, run_folder.RunFolderError, ValueError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return contract.EXIT_BAD_INPUT
    report = args.main_report
    print(f"Predicted (virtual time, from {args.probe}; not measured):\n")
    print(report.table_markdown)
    print("\nConclusion:")
    for paragraph in (report.data.get("conclusion") or {}).get("text") or []:
        print(paragraph)
    if args.band_text:
        print("\nBand of the prediction\n")
        print(args.band_text)
    print("\nWhat if: NUM_PARALLEL\n")
    print(args.what_if_table)
    print(f"Predicted in {time.perf_counter() - started:.1f} s. Full report: {os.path.join(run_dir, contract.RESULTS_MD)}")
    return 0
