"""Reading a run folder: requests.csv, stages.csv, run.json, or Locust's own CSVs.

Every reader returns what it could read plus a list of *gaps*: one sentence per thing that was
missing or damaged, which the report prints instead of hiding it. Only a folder with nothing to
report on, or a file the OS refuses to open, raises ``ReportError``.
"""

from __future__ import annotations

import glob
import io
import json
import os
from dataclasses import dataclass, field

from ollama_locust import contract

from ._errors import ReportError

# The requests.csv columns the report uses, and how to read them.
_STR_COLUMNS = ("user_class", "outcome", "error", "api", "settle", "done_reason", "bad_counts")
_NUM_COLUMNS = (
    "stage", "stage_users", "start_time", "http_status", "ttft_ms", "e2e_ms", "output_tokens",
    "tokens_per_s", "load_ms", "prompt_eval_ms", "eval_ms", "server_total_ms", "queue_wait_ms", "send_lag_ms",
)
_TEXT_COLUMNS = ("token_arrivals",)  # free text, one value per record: read as plain strings, not categories
USED_COLUMNS = _STR_COLUMNS + _NUM_COLUMNS + _TEXT_COLUMNS
SERVER_DURATION_COLUMNS = ("load_ms", "prompt_eval_ms", "eval_ms", "server_total_ms", "queue_wait_ms")
_TRUE = ("true", "True", "TRUE", "1", "1.0", "yes")


@dataclass
class RunFolder:
    path: str
    run: dict = field(default_factory=dict)  # run.json ({} when missing)
    requests: object = None  # pandas.DataFrame, or None on the Locust-CSV path
    stages: object = None  # pandas.DataFrame or None
    generator: object = None  # generator.csv as a pandas.DataFrame, or None (not judged)
    locust_stats: str | None = None  # path of *_stats.csv
    locust_history: str | None = None  # path of *_stats_history.csv
    gaps: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        label = self.run.get("label") if isinstance(self.run, dict) else None
        return str(label) if label else os.path.basename(os.path.normpath(self.path))


class _UpTo(io.RawIOBase):
    """A binary file that ends at ``limit`` bytes: hides a truncated last line from the CSV parser."""

    def __init__(self, fh, limit: int) -> None:
        self._fh, self._left = fh, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: self._left]
        n = self._fh.readinto(view)
        self._left -= n
        return n


def _complete_length(path: str) -> tuple[int, bool]:
    """(bytes up to and including the last newline, whether a partial line follows)."""
    size = os.path.getsize(path)
    if size == 0:
        return 0, False
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return size, False
        pos, chunk = size, 1 << 16
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            block = fh.read(pos - start)
            i = block.rfind(b"\n")
            if i >= 0:
                return start + i + 1, True
            pos = start
        return 0, True


def _open_error(path: str, err: OSError) -> ReportError:
    reason = err.strerror or type(err).__name__
    return ReportError(f"cannot read {path} ({reason}); check the file's permissions")


def read_csv_complete(path: str, what: str, gaps: list[str], **kwargs):
    """Read a CSV written incrementally, skipping a truncated last line (and saying so)."""
    import pandas as pd

    try:
        length, truncated = _complete_length(path)
        if truncated:
            gaps.append(f"{what} ends in a truncated line (the writer stopped mid-line): that line was skipped")
        if length == 0:
            return None
        with open(path, "rb") as fh:
            source = io.BufferedReader(_UpTo(fh, length), 1 << 20) if truncated else fh
            readable = _readable_rows(path, length, what, gaps)
            if readable is not None:  # damaged rows: parse only the rows that can be read
                fh = io.BytesIO(readable)
                length = len(readable)
                source = fh
            try:
                return pd.read_csv(source, **kwargs)
            except (ValueError, pd.errors.ParserError):
                if "dtype" not in kwargs:
                    raise
                # A value that does not parse as its type: read as text and coerce below.
                fh.seek(0)
                source = io.BufferedReader(_UpTo(fh, length), 1 << 20)
                kwargs = {k: v for k, v in kwargs.items() if k != "dtype"}
                frame = pd.read_csv(source, dtype=str, **kwargs)
                frame.attrs["coerce"] = True
                return frame
    except OSError as err:
        raise _open_error(path, err) from err
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        gaps.append(f"{what} could not be parsed ({first}); it was left out")
        return None
    except pd.errors.EmptyDataError:
        return None


def _readable_rows(path: str, length: int, what: str, gaps: list[str]) -> bytes | None:
    """Check every row on its own (the writers put one record on one line): a row with an unclosed quote
    or another number of fields than the header is skipped, and the gap names its line numbers.
    None when every row is readable (the file is then parsed as it is)."""
    import csv

    with open(path, "rb") as fh:
        data = fh.read(length)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        return None
    fields = len(next(csv.reader([lines[0].decode("utf-8", "replace").rstrip("\r")])))
    bad: list[int] = []
    reader_of = csv.reader
    commas = fields - 1
    for number, line in enumerate(lines[1:], start=2):
        if b'"' not in line:  # the common row: no quoting, its fields are its commas
            if line.count(b",") != commas and line.strip():
                bad.append(number)
            continue
        text = line.decode("utf-8", "replace").rstrip("\r")
        try:
            row = next(reader_of([text], strict=True))
        except (csv.Error, StopIteration):
            bad.append(number)
            continue
        if len(row) != fields:
            bad.append(number)
    if not bad:
        return None
    shown = ", ".join(map(str, bad[:10])) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
    gaps.append(f"{what}: {len(bad)} damaged row{'s' if len(bad) != 1 else ''} (an unclosed quote or another number "
                f"of fields than the header) could not be read and {'were' if len(bad) != 1 else 'was'} skipped: "
                f"line{'s' if len(bad) != 1 else ''} {shown}")
    skip = set(bad)
    return b"\n".join(line for number, line in enumerate(lines, start=1) if number not in skip) + b"\n"


def read_run_json(path: str, gaps: list[str]) -> dict:
    file = os.path.join(path, contract.RUN_FILE)
    if not os.path.exists(file):
        gaps.append("no run.json: target, model, SLO and warm-up are unknown")
        return {}
    try:
        with open(file, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as err:
        raise _open_error(file, err) from err
    except (ValueError, UnicodeDecodeError) as err:
        gaps.append(f"run.json is not valid JSON ({err}): target, model, SLO and warm-up are unknown")
        return {}
    if not isinstance(data, dict):
        gaps.append("run.json is not a JSON object: ignored")
        return {}
    return data


def read_requests(file: str, gaps: list[str]):
    """requests.csv as a frame with every column in ``USED_COLUMNS`` (missing ones empty)."""
    import numpy as np
    import pandas as pd

    try:
        with open(file, encoding="utf-8", errors="replace") as fh:
            header = fh.readline().rstrip("\r\n").split(",")
    except OSError as err:
        raise _open_error(file, err) from err
    present = [c for c in USED_COLUMNS if c in header]
    dtype = {c: ("category" if c in _STR_COLUMNS else object if c in _TEXT_COLUMNS else "float64") for c in present}
    frame = None
    if present:
        frame = read_csv_complete(file, "requests.csv", gaps, usecols=present, dtype=dtype,
                                  keep_default_na=False, na_values=[""])
    if frame is None:
        frame = pd.DataFrame({c: pd.Series(dtype="category" if c in _STR_COLUMNS else object if c in _TEXT_COLUMNS
                                           else "float64") for c in present})
    if frame.attrs.get("coerce"):
        bad = 0
        for c in present:
            if c in _NUM_COLUMNS:
                raw = frame[c]
                frame[c] = pd.to_numeric(raw, errors="coerce")
                bad += int((frame[c].isna() & raw.notna()).sum())
            elif c in _STR_COLUMNS:
                frame[c] = frame[c].astype("category")
        if bad:
            gaps.append(f"requests.csv: {bad} malformed numeric cells were treated as not measured")
    n = len(frame)
    for c in USED_COLUMNS:
        if c not in frame.columns:
            frame[c] = pd.Series(np.nan, index=frame.index, dtype="float64") if c in _NUM_COLUMNS \
                else pd.Series([None] * n, index=frame.index, dtype=object) if c in _TEXT_COLUMNS \
                else pd.Series(pd.Categorical([""] * n))
    _note_bad_counts(frame, gaps)
    missing = [c for c in ("stage", "outcome", "e2e_ms") if c not in present]
    if missing:
        gaps.append("requests.csv has no " + ", ".join(missing) + " column: those numbers are missing")
    # settle: bool as text ("True"/"False", "1"/"0"); missing means "not in a settle window".
    frame["settle"] = _truthy(frame["settle"]) if n else np.zeros(0, dtype=bool)
    if frame["outcome"].isna().any():
        frame["outcome"] = frame["outcome"].astype(object).fillna("").astype(str).astype("category")
    frame["stage"] = frame["stage"].fillna(-1)
    return frame


def _note_master_died(run: dict, gaps: list[str]) -> None:
    """The launcher found the master killed (run.json ``master_died``): say what is missing."""
    died = run.get("master_died")
    if not isinstance(died, dict):
        return
    workers = " and of its workers" if died.get("workers") else ""
    gaps.insert(0, f"the locust master died ({died.get('signal', 'killed')}) before the run ended: the records of the "
                   f"last second before that{workers}, the run's end (the last stage is cut where the records stop) "
                   "and Locust's own CSV/HTML summary are missing")


def _note_unwritten(run: dict, gaps: list[str]) -> None:
    """The load side could not write every record (a full disk): say how many are missing."""
    lost = run.get("records_unwritten")
    if isinstance(lost, int) and not isinstance(lost, bool) and lost > 0:
        total = run.get("requests")
        of = f" of {total}" if isinstance(total, int) else ""
        gaps.insert(0, f"records incomplete: {lost}{of} requests could not be written to requests.csv "
                       f"({run.get('write_error') or 'write error'}); they are lost, and every number below undercounts")
    elif run.get("write_error"):
        total = run.get("requests")
        gaps.insert(0, f"the run was stopped early by a write error ({run['write_error']}); the "
                       f"{total if isinstance(total, int) else ''} records it made were all written in the end (0 lost)")


def _note_bad_counts(frame, gaps: list[str]) -> None:
    """One gap for the records whose reported token counts were not non-negative integers."""
    bad = frame["bad_counts"].astype(object).fillna("").astype(str)
    bad = bad[bad != ""]
    if len(bad):
        gaps.append(f"{len(bad)} requests reported token counts that are not non-negative integers "
                    f"(e.g. {bad.iloc[0]}): ignored, their output tokens were counted from the content chunks")


def _truthy(series):
    """A bool column written as text ("True"/"False", "1"/"0"): pandas may already have parsed it."""
    import numpy as np

    if series.dtype == "category":
        truth = np.isin(np.asarray(series.cat.categories.astype(str)), _TRUE)
        codes = series.cat.codes.to_numpy()
        return np.where(codes >= 0, truth[np.clip(codes, 0, None)] if len(truth) else False, False)
    return np.isin(series.astype(object).astype(str).to_numpy(), _TRUE)


def read_stages(path: str, gaps: list[str]):
    file = os.path.join(path, contract.STAGES_FILE)
    if not os.path.exists(file):
        return None
    dtype = {c: ("str" if kind == "str" else "float64") for c, kind, _ in contract.STAGE_COLUMNS}
    frame = read_csv_complete(file, "stages.csv", gaps, dtype=dtype, keep_default_na=False, na_values=[""])
    if frame is None or len(frame) == 0:
        return None
    if frame.attrs.get("coerce"):
        import pandas as pd

        for c, kind, _ in contract.STAGE_COLUMNS:
            if c in frame.columns and kind != "str":
                frame[c] = pd.to_numeric(frame[c], errors="coerce")
    if not {"stage", "users"} <= set(frame.columns):
        gaps.append("stages.csv lacks its stage/users columns: ignored")
        return None
    for c in ("start_time", "end_time", "settle_s"):
        if c not in frame.columns:
            frame[c] = float("nan")
    frame = frame.dropna(subset=["stage"])
    return frame.sort_values("stage", kind="stable").reset_index(drop=True)


def find_locust_csv(path: str) -> tuple[str | None, str | None, list[str]]:
    """(stats, history, notes) for Locust ``--csv`` output in the folder; the newest prefix wins."""
    notes: list[str] = []
    histories = sorted(glob.glob(os.path.join(glob.escape(path), "*_stats_history.csv")), key=os.path.getmtime)
    stats = sorted(glob.glob(os.path.join(glob.escape(path), "*_stats.csv")), key=os.path.getmtime)
    if histories:
        history = histories[-1]
        prefix = history[: -len("_stats_history.csv")]
        stat = prefix + "_stats.csv"
        if len(histories) > 1:
            notes.append(f"several Locust CSV sets in the folder: used the newest, {os.path.basename(prefix)}_*")
        return (stat if os.path.exists(stat) else None), history, notes
    if stats:
        if len(stats) > 1:
            notes.append(f"several Locust CSV sets in the folder: used the newest, {os.path.basename(stats[-1])}")
        return stats[-1], None, notes
    return None, None, notes


def load_run(path: str) -> RunFolder:
    """Read whatever the folder holds; raise ReportError when it holds no run at all."""
    if not os.path.isdir(path):
        what = "does not exist" if not os.path.exists(path) else "is not a folder"
        raise ReportError(f"{path} {what}; give the run folder written by 'ollama-locust step' or 'locust --csv'")
    folder = RunFolder(path=path)
    requests_file = os.path.join(path, contract.REQUESTS_FILE)
    has_requests = os.path.exists(requests_file)
    stats, history, notes = find_locust_csv(path)
    has_run_json = os.path.exists(os.path.join(path, contract.RUN_FILE))
    if not has_requests and stats is None and history is None:
        hint = " (run.json is there, but no requests were written)" if has_run_json else ""
        raise ReportError(
            f"no run in {path}{hint}: no {contract.REQUESTS_FILE} and no Locust *_stats.csv; "
            "point to a run folder written by 'ollama-locust step' or 'locust --headless --csv PREFIX'"
        )
    if has_requests:
        folder.run = read_run_json(path, folder.gaps)
        _note_unwritten(folder.run, folder.gaps)
        _note_master_died(folder.run, folder.gaps)
        folder.requests = read_requests(requests_file, folder.gaps)
        folder.stages = read_stages(path, folder.gaps)
        from ._generator import read_generator

        folder.generator = read_generator(path, folder.gaps)
        if folder.stages is None:
            folder.gaps.append(
                "no usable stages.csv: steps grouped by the records' stage column and each step's duration "
                "estimated from its first request's start to its last request's end"
            )
    else:
        gaps: list[str] = []
        folder.run = read_run_json(path, gaps) if has_run_json else {}
        folder.gaps.extend(g for g in gaps)
        folder.locust_stats, folder.locust_history = stats, history
        folder.gaps.extend(notes)
    return folder
