"""Window arithmetic: what happened *inside* a step's measured window, by arrival and completion time.

Pure numpy over plain arrays (no pandas, no run folder), so it is unit-tested on hand-made records.

* **Tokens in a window**: every record's ``output_tokens`` are spread over its ``token_arrivals`` buckets
  (``'W:c0,c1,...'``: ``c_i`` content chunks arrived in ``[i*W, (i+1)*W)`` ms after ``start_time``), in
  proportion to the chunk counts, so the server's token count is kept when it differs from the chunk
  count. Each bucket is clipped to the part of the request where content can arrive (first token ..
  last byte) and a bucket cut by the window's edge counts in proportion to the overlap (linear split).
  A record without ``token_arrivals`` (an older run, a reply without content timing) spreads its tokens
  evenly over first token .. last byte (a stated approximation), or puts them at the last byte when it
  has no first-token time (``stream: false``: the tokens arrive with the one reply).
* **Completions in a window**: ``start_time + e2e_ms`` inside ``[lo, hi)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Arrivals:
    """All records' token arrivals, flattened: one row per (record, bucket) with tokens > 0."""

    record: np.ndarray  # index of the record each bucket belongs to
    lo: np.ndarray  # unix seconds the bucket (clipped to first token .. last byte) starts
    hi: np.ndarray  # ... ends (== lo for a point: every token arrived at one instant)
    tokens: np.ndarray  # output tokens credited to the bucket
    estimated: int = 0  # records whose arrivals were spread evenly (no token_arrivals cell)

    def in_window(self, lo: float, hi: float, mask: np.ndarray | None = None) -> float:
        """Tokens that arrived in ``[lo, hi)``; ``mask`` (per record, bool) keeps only some records."""
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo or len(self.tokens) == 0:
            return 0.0 if math.isfinite(lo) and math.isfinite(hi) else math.nan
        width = self.hi - self.lo
        overlap = np.clip(np.minimum(self.hi, hi) - np.maximum(self.lo, lo), 0.0, None)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(width > 0, overlap / width, ((self.lo >= lo) & (self.lo < hi)).astype(float))
        counted = self.tokens * share
        if mask is not None:
            counted = counted[mask[self.record]]
        return float(counted.sum())


def parse_cell(cell) -> tuple[float, list[int]] | None:
    """(bucket width in ms, counts) from one ``token_arrivals`` cell; None when empty or malformed."""
    if not isinstance(cell, str) or ":" not in cell:
        return None
    width, _, counts = cell.partition(":")
    try:
        w = float(width)
        values = [int(c) for c in counts.split(",")] if counts else []
    except ValueError:
        return None
    if not (w > 0) or not values or min(values) < 0:
        return None
    return w, values


def arrivals(start_time: np.ndarray, ttft_ms: np.ndarray, e2e_ms: np.ndarray, output_tokens: np.ndarray,
             cells) -> Arrivals:
    """The flattened token arrivals of every record (see the module's docstring for the rule)."""
    rec, los, his, toks = [], [], [], []
    estimated = 0
    for i in range(len(start_time)):
        start, tokens = float(start_time[i]), float(output_tokens[i])
        if not (math.isfinite(start) and math.isfinite(tokens)) or tokens <= 0:
            continue
        ttft, e2e = float(ttft_ms[i]), float(e2e_ms[i])
        first = start + ttft / 1000.0 if math.isfinite(ttft) else math.nan
        last = start + e2e / 1000.0 if math.isfinite(e2e) else math.nan
        parsed = parse_cell(cells[i]) if cells is not None else None
        if parsed is not None:
            width, counts = parsed
            total = sum(counts)
            if total > 0:
                scale = tokens / total
                w = width / 1000.0
                for k, c in enumerate(counts):
                    if c:
                        b_lo, b_hi = start + k * w, start + (k + 1) * w
                        if math.isfinite(first):
                            b_lo = max(b_lo, first)
                        if math.isfinite(last):
                            b_hi = min(b_hi, last)
                        b_hi = max(b_hi, b_lo)
                        rec.append(i), los.append(b_lo), his.append(b_hi), toks.append(c * scale)
                continue
        if not math.isfinite(last):
            continue
        estimated += 1
        lo = first if math.isfinite(first) and first <= last else last
        rec.append(i), los.append(lo), his.append(last), toks.append(tokens)
    return Arrivals(np.asarray(rec, dtype=np.int64), np.asarray(los, dtype=float), np.asarray(his, dtype=float),
                    np.asarray(toks, dtype=float), estimated)


def completions_in(start_time: np.ndarray, e2e_ms: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Per record: did it complete (start + e2e) inside ``[lo, hi)``?"""
    end = start_time + e2e_ms / 1000.0
    with np.errstate(invalid="ignore"):
        return (end >= lo) & (end < hi)


def assign_stages(start_time: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The stage position (index into ``starts``) each start time falls in, from the stage spans:
    -1 before the first stage, -2 after the last stage's end (the drain), the record's own stamp
    is not consulted. ``ends`` may hold nan for a stage without an end (then the next start ends it,
    and the last stage has no end)."""
    pos = np.searchsorted(starts, start_time, side="right") - 1
    out = pos.astype(np.int64)
    with np.errstate(invalid="ignore"):
        end = np.where(pos >= 0, ends[np.clip(pos, 0, None)], np.nan) if len(starts) else np.full(len(pos), np.nan)
        after = (pos >= 0) & np.isfinite(end) & (start_time >= end)
    out[after] = -2  # after the last stage's end (or in a gap between stages): no stage
    out[~np.isfinite(start_time)] = -1
    return out
