"""Hand-made run folders for the report tests."""

from __future__ import annotations

import csv
import json
import os

import pytest

from ollama_locust import contract

T0 = 1_790_000_000.0


def record(stage: int, users: int, e2e_ms, *, outcome="ok", ttft_ms=None, tokens=100, tps=None, start=None,
           settle=False, user_class="StudentUser", status=None, error="", load_ms=None, prompt_eval_ms=None,
           eval_ms=None, total_ms=None, queue_ms=None, **extra) -> dict:
    row = {name: "" for name in contract.COLUMN_NAMES}
    row.update({
        "request_id": f"local-{id(row)}", "worker": "local", "user_class": user_class, "api": "ollama-chat",
        "model": "m", "stage": stage, "stage_users": users, "settle": settle,
        "start_time": T0 + stage * 100 + 20 if start is None else start, "outcome": outcome,
        "http_status": (200 if outcome != contract.REJECTED else 503) if status is None else status,
        "ttft_ms": ttft_ms, "e2e_ms": e2e_ms, "output_tokens": tokens if outcome == contract.OK else 0,
        "tokens_per_s": tps, "load_ms": load_ms, "prompt_eval_ms": prompt_eval_ms, "eval_ms": eval_ms,
        "server_total_ms": total_ms, "queue_wait_ms": queue_ms, "error": error,
    })
    row.update(extra)
    return {k: ("" if v is None else v) for k, v in row.items()}


def stage_rows(users: list[int], *, duration=100.0, settle_s=0.0) -> list[dict]:
    return [{"stage": i, "users": u, "start_time": T0 + i * duration, "end_time": T0 + (i + 1) * duration,
             "settle_s": settle_s, "kind": "step"} for i, u in enumerate(users)]


def write_run(path, records, stages=None, run=None) -> str:
    path = str(path)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, contract.REQUESTS_FILE), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=contract.COLUMN_NAMES)
        writer.writeheader()
        writer.writerows(records)
    if stages is not None:
        with open(os.path.join(path, contract.STAGES_FILE), "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=contract.STAGE_COLUMN_NAMES)
            writer.writeheader()
            writer.writerows(stages)
    if run is not None:
        with open(os.path.join(path, contract.RUN_FILE), "w") as fh:
            json.dump(run, fh)
    return path


@pytest.fixture
def make_run(tmp_path):
    counter = {"n": 0}

    def make(records, stages=None, run=None, name=None):
        counter["n"] += 1
        return write_run(tmp_path / (name or f"run{counter['n']}"), records, stages, run)

    return make


def read_text(path) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def closed_loop(stage: int, users: int, *, slots: int = 1, think_s: float = 0.0, ttft_s: float = 0.1,
                stream_s: float = 0.9, beta: float = 0.0, tokens: int = 100, step_s: float = 100.0,
                tail_s: float = 20.0, max_requests: int | None = None, seed: int = 0) -> list[dict]:
    """Records of one step of ``users`` closed-loop users against a server with ``slots`` FIFO slots.

    Each user sends, waits for the whole answer, thinks 1 ms + ``think_s`` × U(0.5, 1.5), sends again (starts
    staggered over the first second). A request takes the earliest free slot in arrival order (FIFO); its
    first token comes ``ttft_s`` after it got a slot, then it streams for ``stream_s`` × (1 + ``beta`` ×
    the other busy slots): ``slots=1`` is a server that answers one at a time, many slots with ``beta`` > 0
    one that batches. Sends stop ``tail_s`` before the step ends, so steps do not overlap.
    """
    import heapq
    import random

    rng = random.Random(seed * 1000 + stage)
    begin_step = T0 + stage * step_s
    pending = [(begin_step + rng.uniform(0, 1.0), u) for u in range(users)]
    heapq.heapify(pending)
    free = [begin_step] * slots
    out: list[dict] = []
    while pending and (max_requests is None or len(out) < max_requests):
        send, user = heapq.heappop(pending)
        if send >= begin_step + step_s - tail_s:
            continue
        slot = min(range(slots), key=lambda j: free[j])
        begin = max(send, free[slot])
        busy = sum(1 for j, f in enumerate(free) if j != slot and f > begin)
        stream = stream_s * (1 + beta * busy)
        first, end = begin + ttft_s, begin + ttft_s + stream
        free[slot] = end
        out.append(record(stage, users, round((end - send) * 1000, 3), ttft_ms=round((first - send) * 1000, 3),
                          tokens=tokens, tps=round((tokens - 1) / stream, 3), start=send))
        heapq.heappush(pending, (end + 0.001 + think_s * rng.uniform(0.5, 1.5), user))  # 1 ms in the client
    return out
