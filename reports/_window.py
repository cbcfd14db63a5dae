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
* **Completions in a window**: ``start_time + e2e_ms`` inside ``[lo, hi)``, counted on the sorted
  completion times (two binary searches per window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ollama_locust import stats


@dataclass
class Arrivals:
    """All records' token arrivals, flattened: one row per (record, bucket) with tokens > 0, sorted by ``lo``."""

    record: np.ndarray  # index of the record each bucket belongs to
    lo: np.ndarray  # unix seconds the bucket (clipped to first token .. last byte) starts
    hi: np.ndarray  # ... ends (== lo for a point: every token arrived at one instant)
    tokens: np.ndarray  # output tokens credited to the bucket
    estimated: int = 0  # records whose arrivals were spread evenly (no token_arrivals cell)

    def __post_init__(self) -> None:
        order = np.argsort(self.lo, kind="stable")
        self.record, self.lo, self.hi, self.tokens = (a[order] for a in (self.record, self.lo, self.hi, self.tokens))
        self._widest = float((self.hi - self.lo).max()) if len(self.lo) else 0.0

    def _shares(self, lo: float, hi: float) -> tuple[slice, np.ndarray]:
        """The buckets that can overlap [lo, hi) (a slice of the sorted rows) and the share of each inside."""
        a = int(np.searchsorted(self.lo, lo - self._widest, side="left"))
        b = int(np.searchsorted(self.lo, hi, side="left"))
        part = slice(a, b)
        b_lo, b_hi = self.lo[part], self.hi[part]
        width = b_hi - b_lo
        overlap = np.clip(np.minimum(b_hi, hi) - np.maximum(b_lo, lo), 0.0, None)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(width > 0, overlap / width, ((b_lo >= lo) & (b_lo < hi)).astype(float))
        return part, share

    def in_window(self, lo: float, hi: float, mask: np.ndarray | None = None) -> float:
        """Tokens that arrived in ``[lo, hi)``; ``mask`` (per record, bool) keeps only some records."""
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return math.nan
        if hi <= lo or len(self.tokens) == 0:
            return 0.0
        part, share = self._shares(lo, hi)
        counted = self.tokens[part] * share
        if mask is not None:
            counted = counted[mask[self.record[part]]]
        return float(counted.sum())

    def in_window_by(self, lo: float, hi: float, codes: np.ndarray, groups: int) -> np.ndarray:
        """Tokens that arrived in ``[lo, hi)`` per group (``codes``: each record's group, 0..groups-1)."""
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return np.full(groups, math.nan)
        if hi <= lo or len(self.tokens) == 0:
            return np.zeros(groups)
        part, share = self._shares(lo, hi)
        return np.bincount(codes[self.record[part]], weights=self.tokens[part] * share, minlength=groups)


parse_cell = stats.parse_token_arrivals  # the one parser (ollama_locust.stats)


def arrivals(start_time: np.ndarray, ttft_ms: np.ndarray, e2e_ms: np.ndarray, output_tokens: np.ndarray,
             cells, present: np.ndarray | None = None) -> Arrivals:
    """The flattened token arrivals of every record (see the module's docstring for the rule).

    Records with a ``token_arrivals`` cell are parsed one by one (a few thousand per run); the rest are
    handled as whole arrays, so a million records without cells cost a few numpy passes. ``present``
    (bool per record) says which cells are filled, when the caller knows it already."""
    start = np.asarray(start_time, dtype=float)
    tokens = np.asarray(output_tokens, dtype=float)
    ttft, e2e = np.asarray(ttft_ms, dtype=float), np.asarray(e2e_ms, dtype=float)
    first = start + ttft / 1000.0
    last = start + e2e / 1000.0
    usable = np.isfinite(start) & np.isfinite(tokens) & (tokens > 0)
    parsed_mask = np.zeros(len(start), dtype=bool)
    rec, los, his, toks = [], [], [], []
    if cells is not None:
        cells = np.asarray(cells, dtype=object)
        if present is None:
            present = np.fromiter((isinstance(c, str) and c != "" for c in cells), dtype=bool, count=len(cells))
        candidates = np.flatnonzero(usable & present)
        for i in candidates:
            spans = stats.token_spans(float(start[i]), float(ttft[i]), float(e2e[i]), float(tokens[i]), cells[i])
            if not spans or parse_cell(cells[i]) is None:
                continue
            parsed_mask[i] = True
            for b_lo, b_hi, t in spans:
                rec.append(i), los.append(b_lo), his.append(b_hi), toks.append(t)
    # The rest: spread evenly over first token .. last byte, or all at the last byte without a first token.
    rest = np.flatnonzero(usable & ~parsed_mask & np.isfinite(last))
    lo = np.where(np.isfinite(first[rest]) & (first[rest] <= last[rest]), first[rest], last[rest])
    return Arrivals(np.concatenate([np.asarray(rec, dtype=np.int64), rest.astype(np.int64)]),
                    np.concatenate([np.asarray(los, dtype=float), lo]),
                    np.concatenate([np.asarray(his, dtype=float), last[rest]]),
                    np.concatenate([np.asarray(toks, dtype=float), tokens[rest]]), int(len(rest)))


def count_in(sorted_ends: np.ndarray, lo: float, hi: float) -> float:
    """How many of the (sorted, finite) completion times lie in ``[lo, hi)``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return math.nan
    return float(np.searchsorted(sorted_ends, hi, side="left") - np.searchsorted(sorted_ends, lo, side="left"))


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
