"""``python -m bench.critical_path``: where an idle OMS's place_order round trip goes,
message by message, on a real OMS (SQLite file, paper broker)."""
from __future__ import annotations

import json

import pykka

from actors import runtime
from bench import critical_path
from bench.critical_path import Recorder, format_report, measure

# What every market order's round trip waits on: checked, recorded PENDING and
# SUBMITTED, handed to the broker, its acknowledgement recorded.
ON_THE_PATH = {
    ("Validator", "CheckOrder"), ("Journal", "RecordSubmission"),
    ("BrokerGateway", "PlaceAtBroker"), ("Journal", "RecordTransition"),
}


def test_each_order_s_round_trip_is_split_into_the_handlers_it_waited_on(tmp_path):
    report = measure(f"sqlite:///{tmp_path / 'oms.db'}", orders=6, pause=0.02, warm_up=1)

    assert report["orders"] == 5
    before = {(r["actor"], r["message"]): r for r in report["handlings"] if r["before_answer"]}
    for key in ON_THE_PATH:
        assert before[key]["per_order"] == 1.0, key
        assert 0 < before[key]["cpu_ms"] <= before[key]["wall_ms"] + 0.5, key
    # The fill, its trade and the position come after the answer (on a busy machine the
    # caller may hear its answer late, after the position of some order began).
    after = {(r["actor"], r["message"]): r for r in report["handlings"] if not r["before_answer"]}
    applied = sum(r["per_order"] for r in report["handlings"] if (r["actor"], r["message"]) == ("PositionKeeper", "ApplyFill"))
    assert applied == 1.0 and ("PositionKeeper", "ApplyFill") in after
    assert 0 < report["before_answer_wall_ms"] < report["round_trip_p99_ms"]
    assert report["outside_handlers_p50_ms"] >= 0
    assert "Journal" in format_report(report)


def test_the_recorder_puts_pykka_s_handling_back():
    threaded, pooled = pykka.Actor._handle_receive, runtime.PooledActor._handle_envelope
    with Recorder():
        assert pykka.Actor._handle_receive is not threaded
    assert pykka.Actor._handle_receive is threaded and runtime.PooledActor._handle_envelope is pooled


def test_the_command_prints_the_report_and_writes_it_as_json(tmp_path, capsys):
    out = tmp_path / "path.json"
    assert critical_path.main(["--db", "sqlite", "--orders", "4", "--pause", "0.01", "--workdir", str(tmp_path), "--json", str(out)]) == 0
    assert "round trip p50" in capsys.readouterr().out
    written = json.loads(out.read_text())
    assert written["db"] == "sqlite" and written["orders"] == 4 - 4 // 5
    assert not list(tmp_path.glob("bench-*.db"))  # its database is removed


def test_handlers_overlapping_on_different_threads_cover_each_moment_once():
    from bench.critical_path import Handling, _covered

    handlings = [Handling("A", "m", 1.0, 3.0, 0), Handling("B", "m", 2.0, 4.0, 0), Handling("C", "m", 6.0, 9.0, 0)]
    assert _covered(handlings, 0.0, 8.0) == 5.0  # [1, 4] and [6, 8]
