"""Where ``place_order``'s round trip goes when the OMS is idle, handler by handler.

Orders are placed one at a time, with a pause between them (the 1,000-a-minute load of
issue 14 leaves the OMS idle between orders). Every message any actor handles is timed,
wall clock and the thread's CPU, and split into what began before ``place_order``
answered (the path the caller waits on, and any notice handled meanwhile) and what came
after (fills, positions, notices). "Began", not "ended": a handler may answer before it
returns, and on a busy machine the caller may hear of it first. The round trip's time
outside every handler is the hand-offs between threads.

    python -m bench.critical_path --db postgres --orders 200 --pause 0.06

Only for measuring: it wraps pykka's message handling while it runs, and restores it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykka

from actors import runtime, start_oms
from bench.harness import LIMITS, PRICE, fresh_database, market, percentile


@dataclass(frozen=True, slots=True)
class Handling:
    """One message handled by one actor (a pooled actor's resumed step is named after
    the answer it was resumed with)."""

    actor: str
    message: str
    started: float
    ended: float
    cpu: float


class Recorder:
    """Times every message handled while it is active (a context manager)."""

    def __init__(self) -> None:
        self.handlings: list[Handling] = []
        self._threaded = pykka.Actor._handle_receive
        self._pooled = runtime.PooledActor._handle_envelope

    def take(self) -> list[Handling]:
        taken, self.handlings = self.handlings, []
        return taken

    def __enter__(self) -> Recorder:
        threaded, pooled = self._threaded, self._pooled

        def record(handling: Handling) -> None:
            self.handlings.append(handling)  # the list of the moment: take() starts a new one

        def handle_receive(actor: Any, message: Any) -> Any:
            if isinstance(actor, runtime.PooledActor):  # timed by its envelope, below
                return threaded(actor, message)
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return threaded(actor, message)
            finally:
                record(Handling(type(actor).__name__, type(message).__name__, started, time.perf_counter(), time.thread_time() - cpu))

        def handle_envelope(actor: Any, envelope: Any) -> Any:
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return pooled(actor, envelope)
            finally:
                message = envelope.message
                name = type(message).__name__
                if isinstance(message, runtime.Answered):
                    name = f"answer ({type(message.value).__name__})"
                record(Handling(type(actor).__name__, name, started, time.perf_counter(), time.thread_time() - cpu))

        pykka.Actor._handle_receive = handle_receive  # type: ignore[method-assign]
        runtime.PooledActor._handle_envelope = handle_envelope  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        pykka.Actor._handle_receive = self._threaded  # type: ignore[method-assign]
        runtime.PooledActor._handle_envelope = self._pooled  # type: ignore[method-assign]


def measure(url: str, orders: int, pause: float, warm_up: int | None = None) -> dict[str, Any]:
    """Place ``orders`` market orders one at a time, ``pause`` seconds apart, and report
    the round trip and each (actor, message)'s share of it. The first ``warm_up``
    orders (a fifth, by default) are left out."""
    warm_up = orders // 5 if warm_up is None else warm_up
    samples: list[tuple[float, float, list[Handling]]] = []
    with Recorder() as recorder:
        oms = start_oms(database_url=url, **LIMITS)
        try:
            oms.paper.set_price("INFY", PRICE)
            time.sleep(pause)
            for i in range(orders):
                recorder.take()
                started = time.perf_counter()
                oms.place_order(market("BUY" if i % 2 else "SELL"))
                answered = time.perf_counter()
                time.sleep(pause)  # the order's fill, trade and position finish meanwhile
                samples.append((started, answered, recorder.take()))
        finally:
            oms.stop()
    return summarize(samples[warm_up:])


def _covered(handlings: list[Handling], start: float, end: float) -> float:
    """How much of [start, end] some handler was running in (handlers on different
    threads overlap: each moment is counted once)."""
    covered, reached = 0.0, start
    for h in sorted(handlings, key=lambda h: h.started):
        begin, finish = max(h.started, reached), min(h.ended, end)
        if finish > begin:
            covered += finish - begin
            reached = finish
    return covered


def summarize(samples: list[tuple[float, float, list[Handling]]]) -> dict[str, Any]:
    if not samples:
        raise ValueError("no orders to summarize")
    round_trips = [(answered - started) * 1000 for started, answered, _ in samples]
    outside: list[float] = []
    totals: dict[tuple[str, str, bool], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for started, answered, handlings in samples:
        outside.append((answered - started - _covered(handlings, started, answered)) * 1000)
        for h in handlings:
            total = totals[(h.actor, h.message, h.started < answered)]
            total[0] += 1
            total[1] += (h.ended - h.started) * 1000
            total[2] += h.cpu * 1000
    n = len(samples)
    rows = [
        {"actor": actor, "message": message, "before_answer": before,
         "per_order": count / n, "wall_ms": wall / n, "cpu_ms": cpu / n}
        for (actor, message, before), (count, wall, cpu) in totals.items()
    ]
    rows.sort(key=lambda row: (not row["before_answer"], -row["wall_ms"]))
    return {
        "orders": n,
        "round_trip_p50_ms": percentile(round_trips, 50),
        "round_trip_p90_ms": percentile(round_trips, 90),
        "round_trip_p99_ms": percentile(round_trips, 99),
        "outside_handlers_p50_ms": statistics.median(outside),
        "before_answer_wall_ms": sum(r["wall_ms"] for r in rows if r["before_answer"]),
        "before_answer_cpu_ms": sum(r["cpu_ms"] for r in rows if r["before_answer"]),
        "handlings": rows,
    }


def format_report(report: dict[str, Any], top: int = 25) -> str:
    lines = [
        f"{report['orders']} orders: round trip p50 {report['round_trip_p50_ms']:.2f} ms, "
        f"p90 {report['round_trip_p90_ms']:.2f} ms, p99 {report['round_trip_p99_ms']:.2f} ms",
        f"before the answer: in handlers {report['before_answer_wall_ms']:.2f} ms "
        f"(CPU {report['before_answer_cpu_ms']:.2f} ms), "
        f"between them (hand-offs) p50 {report['outside_handlers_p50_ms']:.2f} ms",
        f"{'':6} {'actor':16} {'message':26} {'per order':>9} {'wall ms':>8} {'CPU ms':>7}",
    ]
    for row in report["handlings"][:top]:
        lines.append(
            f"{'before' if row['before_answer'] else 'after':6} {row['actor']:16} {row['message']:26} "
            f"{row['per_order']:9.1f} {row['wall_ms']:8.3f} {row['cpu_ms']:7.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.critical_path", description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres-url", default=os.environ.get("OMS_TEST_POSTGRES_URL"),
                        help="server to create a throw-away database on (default: $OMS_TEST_POSTGRES_URL)")
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--pause", type=float, default=0.06, help="seconds between orders (0.06: 1,000 a minute)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp"), help="where the SQLite file goes")
    parser.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    args = parser.parse_args(argv)
    if args.orders < 2:
        parser.error("--orders: at least 2")
    url, drop = fresh_database(args.db, args.workdir, args.postgres_url)
    try:
        report = measure(url, args.orders, args.pause)
    finally:
        drop()
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps({"db": args.db, "pause_s": args.pause, **report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
