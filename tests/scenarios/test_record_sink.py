import csv

from ollama_locust import contract, stats
from ollama_locust.scenarios.record_sink import RecordBuffer, RecordSink, StageTally
from ollama_locust.scenarios.timeline import StageTimeline


def test_sink_stamps_stage_settle_and_writes_incrementally(tmp_path):
    timeline = StageTimeline(str(tmp_path / "stages.csv"))
    sink = RecordSink(str(tmp_path / "requests.csv"), timeline)
    sink.add({"start_time": 99.0, "outcome": "ok"})  # before the first stage
    timeline.begin(1, 2.0, "step", 100.0)
    sink.add({"start_time": 101.0, "outcome": "ok", "e2e_ms": 10.0})  # settle
    sink.add({"start_time": 103.0, "outcome": "ok", "e2e_ms": 20.0, "ttft_ms": 5.0, "output_tokens": 7})
    timeline.begin(3, 2.0, "step", 110.0)
    sink.add({"start_time": 109.9, "outcome": "rejected", "http_status": 503})  # arrives late, started in stage 0
    sink.flush()
    rows = list(csv.DictReader(open(tmp_path / "requests.csv")))
    assert list(rows[0].keys()) == list(contract.COLUMN_NAMES)
    assert [(r["stage"], r["stage_users"], r["settle"]) for r in rows] == [
        ("-1", "0", "False"), ("0", "1", "True"), ("0", "1", "False"), ("0", "1", "False")]
    tally = sink.tallies[0]
    assert tally.settle == 1 and tally.outcomes == {"ok": 1, "rejected": 1}
    assert tally.ok_e2e_ms == [20.0] and tally.output_tokens == 7
    stages = list(csv.DictReader(open(tmp_path / "stages.csv")))
    assert [(s["stage"], s["users"], s["end_time"]) for s in stages] == [("0", "1", "110.000000"), ("1", "3", "")]
    sink.add({"start_time": 111.0, "outcome": "ok"})
    sink.close()
    assert len(list(csv.DictReader(open(tmp_path / "requests.csv")))) == 5


def test_tally_percentile_is_linear_interpolation_and_cut_short_does_not_count():
    tally = StageTally()
    tally.outcomes.update({"ok": 3, "cut_short": 2})
    assert tally.counted == 3 and tally.success_rate == 1.0
    assert stats.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert stats.percentile([], 50) is None


def test_buffer_drains_once():
    buffer = RecordBuffer()
    buffer.add({"a": 1})
    assert buffer.drain() == [{"a": 1}] and buffer.drain() == [] and len(buffer) == 0


def test_a_request_after_the_last_stage_end_is_in_no_stage():
    timeline = StageTimeline()
    timeline.begin(1, 0.0, "step", 100.0)
    timeline.begin(4, 0.0, "step", 110.0)
    stamped = timeline.stamp({"start_time": 115.0})
    assert stamped["stage"] == 1
    timeline.finish(120.0)
    assert timeline.stamp({"start_time": 119.99})["stage"] == 1
    drained = timeline.stamp({"start_time": 120.0})
    assert (drained["stage"], drained["stage_users"], drained["settle"]) == (-1, 0, False)


def test_write_error_keeps_pending_rows(tmp_path):
    """A full disk (/dev/full): nothing pending is dropped, the error is kept, the rows wait for a retry."""
    from ollama_locust.scenarios.timeline import StageTimeline

    sink = RecordSink("/dev/full", StageTimeline(str(tmp_path / "stages.csv")))
    for index in range(3):
        sink.add({"request_id": str(index), "start_time": 1.0, "outcome": "ok", "e2e_ms": 5.0})
    assert sink.flush() is False
    assert sink.unwritten == 3 and sink.total == 3 and sink.write_error == "No space left on device"
    sink.close()
    assert sink.unwritten == 3
