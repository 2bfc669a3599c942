"""The benchmark harness: ``python -m bench --help``.

Every scenario drives the OMS through its public API (``start_oms``, the blocking
``place_order``) with the paper broker in-process and no added latency, durable writes
on (SQLite synchronous=FULL; PostgreSQL with fsync). Each scenario runs ``--repeat``
times on a fresh database and reports the median.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import sys
import threading
import time
import tracemalloc
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from string import ascii_uppercase
from typing import Callable

from actors import start_oms
from bench.reads import reads_beside_orders
from domain import OrderRequest
from domain.enums import OrderStatus
from domain.order import Order, created, transition
from domain.order_tag import broker_tag
from domain.risk import Account, Exposure, RiskLimits, validate_order
from persistence.paper_book import PaperBookStore, PaperOrderRecord
from persistence.store import Store, op_new_order, op_transition

D = Decimal
PRICE = D("1500.00")
LIMITS = dict(
    capital=D("1000000000000"), require_stop_loss=False, max_order_value=None,
    max_position_value=None, max_open_orders=None,
)


@dataclass
class Result:
    scenario: str
    database: str
    metrics: dict[str, float]
    runs: list[dict[str, float]] = field(default_factory=list)


# --- databases ------------------------------------------------------------------------

def fresh_database(kind: str, workdir: Path, postgres_url: str | None) -> tuple[str, Callable[[], None]]:
    """A new empty database of ``kind`` and a function that removes it."""
    if kind == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite:///{path}"

        def drop() -> None:
            # the database, its WAL, and the lock files the OMS keeps beside it
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            for lock in path.parent.glob(f"{path.name}.*.lock"):
                lock.unlink(missing_ok=True)

        return url, drop
    if not postgres_url:
        raise SystemExit("--postgres-url (or OMS_TEST_POSTGRES_URL) is needed for PostgreSQL runs")
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(postgres_url)
    name = f"oms_bench_{uuid.uuid4().hex[:8]}"
    admin = {**_connect_params(postgres_url), "autocommit": True}
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return base.set(database=name).render_as_string(hide_password=False), drop


def _connect_params(url: str) -> dict[str, object]:
    """psycopg's connection keywords for the PostgreSQL database of SQLAlchemy ``url``."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    params: dict[str, object] = dict(host=parsed.host, port=parsed.port, user=parsed.username, dbname=parsed.database)
    if parsed.password:
        params["password"] = parsed.password
    return params


# --- measuring ------------------------------------------------------------------------

def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def machine_cpu_s() -> float:
    """CPU time every processor of the machine has spent busy since boot (user, nice,
    system, irq and softirq in /proc/stat): the OMS, its database server, and anything
    else running."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def server_cpu_s(url: str) -> float | None:
    """CPU time of the PostgreSQL server behind ``url``, if it runs on this machine (else
    None): its postmaster and every process the postmaster started (the backends, the
    WAL writer, the checkpointer...), all databases'. A child's time is counted with
    its parent's once the parent has reaped it, so a difference of two readings still
    counts a connection that ended in between."""
    import psycopg

    with psycopg.connect(**_connect_params(url), connect_timeout=5) as conn:
        # Read while the connection is open: its server process ends with it.
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        postmaster = _parent(backend) if _name(backend) in ("postgres", "postmaster") else None
    if postmaster is None:
        return None  # no such server process here: the server is on another machine
    total = _own_and_reaped(postmaster) or 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _parent(int(entry.name)) == postmaster:
            total += _own_and_reaped(int(entry.name)) or 0
    return total / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command's name, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None


def _name(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return None


def _parent(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields else None


def _own_and_reaped(pid: int) -> int | None:
    """Clock ticks of ``pid`` and of its children it has reaped (utime stime cutime cstime)."""
    fields = _stat(pid)
    return sum(int(value) for value in fields[11:15]) if fields else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class HandOffClock:
    """Records when the broker is handed each order (the paper exchange's place)."""

    def __init__(self, oms) -> None:
        self.at: dict[int, float] = {}  # by our order id, read from the tag
        exchange = oms.paper.exchange
        real_place = exchange.place

        def place(request):
            self.at[int(request.tag.lstrip(ascii_uppercase))] = time.perf_counter()
            return real_place(request)

        exchange.place = place


def market(side: str = "BUY") -> OrderRequest:
    return OrderRequest(symbol="INFY", side=side, quantity=1, product="MIS")


# --- scenarios ------------------------------------------------------------------------

def throughput(url: str, orders: int, clients: int) -> dict[str, float]:
    """Orders per second through the whole pipeline: validate, durable PENDING, broker,
    fill, trade, position, audit, as seen by ``clients`` threads calling place_order."""
    oms = start_oms(database_url=url, **LIMITS)
    try:
        oms.paper.set_price("INFY", PRICE)
        requests = (market("BUY"), market("SELL"))

        def client(k: int) -> None:
            for i in range(orders // clients):
                oms.place_order(requests[(i + k) % 2])

        usage = resource.getrusage(resource.RUSAGE_SELF)
        machine, server = machine_cpu_s(), server_cpu_s(url) if url.startswith("postgresql") else None
        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        placed = time.perf_counter() - started
        # Wait until every fill reached its position: the pipeline's end.
        deadline = time.monotonic() + 120
        while oms.get_active_orders() and time.monotonic() < deadline:
            time.sleep(0.01)
        finished = time.perf_counter() - started
        used = resource.getrusage(resource.RUSAGE_SELF)
        machine_used, server_used = machine_cpu_s(), server_cpu_s(url) if server is not None else None
        done = (orders // clients) * clients
        # What the machine can give: at N orders/s, each order has (CPUs / N) seconds of
        # all its processors, the database server's work included.
        costs = {"machine_cpu_ms_per_order": (machine_used - machine) * 1000 / done}
        if server is not None and server_used is not None:
            costs["database_cpu_ms_per_order"] = (server_used - server) * 1000 / done
        return {
            "orders": done, "placed_per_s": done / placed, "filled_per_s": done / finished,
            # The process's own cost per order (clients included), which the machine's
            # other load disturbs far less than the rates.
            "cpu_ms_per_order": (used.ru_utime + used.ru_stime - usage.ru_utime - usage.ru_stime) * 1000 / done,
            "switches_per_order": (used.ru_nvcsw + used.ru_nivcsw - usage.ru_nvcsw - usage.ru_nivcsw) / done,
            **costs,
        }
    finally:
        oms.stop()


def latency(url: str, per_minute: int, seconds: float, workers: int = 32) -> dict[str, float]:
    """At a fixed offered load (open loop): place -> broker hand-off latency, and the
    place_order round trip."""
    oms = start_oms(database_url=url, **LIMITS)
    try:
        oms.paper.set_price("INFY", PRICE)
        clock = HandOffClock(oms)
        count = max(1, int(per_minute * seconds / 60))
        interval = 60.0 / per_minute
        started_at: dict[int, float] = {}
        round_trips: list[float] = []
        lock = threading.Lock()

        def send(i: int) -> None:
            t0 = time.perf_counter()
            result = oms.place_order(market("BUY" if i % 2 else "SELL"))
            took = (time.perf_counter() - t0) * 1000
            with lock:
                started_at[result.order_id] = t0
                round_trips.append(took)

        begin = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for i in range(count):
                target = begin + i * interval
                delay = target - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(send, i)
        samples = [(clock.at[o] - t0) * 1000 for o, t0 in started_at.items() if o in clock.at]
        return {
            "offered_per_min": per_minute,
            "orders": len(samples),
            "p50_ms": percentile(samples, 50),
            "p95_ms": percentile(samples, 95),
            "p99_ms": percentile(samples, 99),
            # place_order's whole round trip: checked, recorded, sent, the broker's
            # acknowledgement recorded, answered.
            "round_trip_p50_ms": percentile(round_trips, 50),
            "round_trip_p99_ms": percentile(round_trips, 99),
        }
    finally:
        oms.stop()


def resting(url: str, count: int, probes: int = 200) -> dict[str, float]:
    """Memory and threads with ``count`` resting LIMIT orders (one tracker each), the
    time to accept and to cancel them, and new-order latency with and without them."""
    oms = start_oms(database_url=url, **LIMITS)
    try:
        oms.paper.set_price("INFY", PRICE)
        oms.paper.set_price("TCS", D("3400.00"))
        clock = HandOffClock(oms)

        def probe_latency() -> float:
            samples = []
            for i in range(probes):
                t0 = time.perf_counter()
                result = oms.place_order(OrderRequest(symbol="TCS", side="BUY" if i % 2 else "SELL", quantity=1))
                samples.append((clock.at[result.order_id] - t0) * 1000)
            return statistics.median(samples)

        idle_latency = probe_latency()
        rss_before, threads_before = rss_mib(), threading.active_count()
        far = OrderRequest(symbol="INFY", side="BUY", quantity=1, order_type="LIMIT", price=D("1300.00"))
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = list(pool.map(lambda _: oms.place_order(far).order_id, range(count)))
        accept_s = time.perf_counter() - started
        loaded_latency = probe_latency()
        rss_after, threads_after = rss_mib(), threading.active_count()
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(oms.cancel_order, ids))
        # A cancel answers once the broker took it; done means every order CANCELLED.
        while oms.get_active_orders():
            time.sleep(0.005)
        cancel_s = time.perf_counter() - started
        return {
            "resting": count,
            "accept_s": accept_s,
            "cancel_s": cancel_s,
            "rss_mib_added": rss_after - rss_before,
            "kib_per_resting_order": (rss_after - rss_before) * 1024 / count,
            "threads_added": threads_after - threads_before,
            "new_order_ms_idle": idle_latency,
            "new_order_ms_with_resting": loaded_latency,
        }
    finally:
        oms.stop()


def threads_alive() -> int:
    return threading.active_count()


def recovery(url: str, count: int) -> dict[str, float]:
    """Time for start_oms to come back with ``count`` live orders in the database (and
    at the paper exchange, whose book is kept in the same database), and what they cost
    while it runs: threads, and memory per live order (RSS growth over an OMS started
    once before on the same, then empty, database, so imports and fixed costs are not
    counted against the orders)."""
    # Python's own count of the bytes its objects hold (tracemalloc), taken on a start
    # of its own (tracing slows it): RSS is the allocator's, and after the scenarios
    # before this one it barely moves, whatever the orders cost.
    fixed = traced_start(url)
    at = datetime.now(timezone.utc)
    # Every order carries what the validator found, as a placed order does: all the checks
    # with their reasons (about 2 KB of text), which a live order keeps.
    sample = OrderRequest(symbol="INFY", side="BUY", quantity=1, order_type="LIMIT", price=D("1300.00"), stop_loss=D("1290.00"))
    checked = validate_order(sample, D("1300.00"), Exposure(), Account(), RiskLimits(capital=D("1000000"))).as_dict()
    store = Store.open(url)
    book = PaperBookStore.open(url)
    try:
        ops = []
        resting = []
        prefix = store.tag_prefix()
        for i, order_id in enumerate(store.reserve_ids(count)):
            request = OrderRequest(symbol="INFY", side="BUY", quantity=1, order_type="LIMIT", price=D("1300.00"), stop_loss=D("1290.00"))
            order = Order.from_request(order_id, request, at, checked, tag=broker_tag(prefix, order_id))
            pending, first = created(order)
            submitted, second = transition(pending, OrderStatus.SUBMITTED, at)
            opened, third = transition(submitted, OrderStatus.OPEN, at, {}, broker_order_id=str(9_000_000_000_000_000 + i))
            ops += [op_new_order(pending, first), op_transition(submitted, second), op_transition(opened, third)]
            resting.append(PaperOrderRecord(
                opened.broker_order_id, i + 1, opened.tag, "NSE", "INFY", "BUY", "LIMIT", "MIS", "DAY", 1,
                D("1300.00"), None, "OPEN", 0, D(0), None, None, at, at,
            ))
            if len(ops) >= 3000:
                store.write_many(ops)
                book.save(orders=resting)
                ops, resting = [], []
        if ops:
            store.write_many(ops)
            book.save(orders=resting)
    finally:
        book.close()
        store.close()
    gc.collect()
    rss_before, threads_before = rss_mib(), threads_alive()
    started = time.perf_counter()
    oms = start_oms(database_url=url, **LIMITS)
    recovered_s = time.perf_counter() - started
    try:
        live = len(oms.get_active_orders())
        gc.collect()
        rss_after, threads = rss_mib(), threads_alive()
    finally:
        stop_started = time.perf_counter()
        oms.stop()
        stop_s = time.perf_counter() - stop_started
    held = traced_start(url)
    return {
        "live_orders": live,
        "recover_s": recovered_s,
        "stop_s": stop_s,
        "threads": threads,
        "threads_added": threads - threads_before,
        "kib_per_live_order": (held - fixed) / 1024 / max(1, count),
        "rss_kib_per_live_order": (rss_after - rss_before) * 1024 / max(1, count),
    }


def traced_start(url: str) -> int:
    """Bytes of Python objects a started OMS holds on ``url`` (its live orders tracked
    again), measured with tracemalloc; the OMS is stopped again."""
    gc.collect()
    tracemalloc.start()
    try:
        oms = start_oms(database_url=url, **LIMITS)
        try:
            oms.get_active_orders()
            gc.collect()
            held, _peak = tracemalloc.get_traced_memory()
        finally:
            oms.stop()
    finally:
        tracemalloc.stop()
    return held


# --- running and reporting ----------------------------------------------------------------

SIZES = {
    "full": dict(orders=5000, clients=4, latency_seconds=20, resting=(1000, 5000), recover=10000, reads=60000),
    "quick": dict(orders=200, clients=2, latency_seconds=1, resting=(50,), recover=200, reads=500),
}


def scenarios(size: dict) -> list[tuple[str, Callable[[str], dict]]]:
    plan: list[tuple[str, Callable[[str], dict]]] = [
        (f"throughput {size['clients']} clients", lambda url: throughput(url, size["orders"], size["clients"])),
    ]
    for per_minute in (1000, 10000, 100000):
        plan.append((f"latency @{per_minute}/min", lambda url, p=per_minute: latency(url, p, size["latency_seconds"])))
    for count in size["resting"]:
        plan.append((f"resting {count}", lambda url, c=count: resting(url, c)))
    plan.append((f"recovery {size['recover']}", lambda url: recovery(url, size["recover"])))
    plan.append((f"reads of {size['reads']} orders", lambda url: reads_beside_orders(url, size["reads"], limits=LIMITS)))
    return plan


def median_metrics(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def describe_machine() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "cpus": str(os.cpu_count()),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
    }


def _figure(value: object) -> str:
    """A metric as the table shows it: ratios and other figures below 1 to two places."""
    if not isinstance(value, float):
        return str(value)
    return f"{value:.2f}" if abs(value) < 1 else f"{value:.1f}"


def format_table(results: list[Result]) -> str:
    lines = [f"{'scenario':<26} {'db':<8} metrics (median of {len(results[0].runs) if results else 0} runs)"]
    for r in results:
        shown = ", ".join(f"{k}={_figure(v)}" for k, v in r.metrics.items())
        lines.append(f"{r.scenario:<26} {r.database:<8} {shown}")
    return "\n".join(lines)


# NautilusTrader's resting orders cost time quadratic in their number (every order event
# recomputes the balance locked by all open orders): 5,000 take 85 s a run. The peer's
# resting figure is taken at this many, and compared with ours at the same count.
PEER_RESTING = 1000


def peer(size: dict, repeat: int, only: list[str], ours: list[Result]) -> list[Result]:
    """NautilusTrader's backtest engine on the same work, in this session, when it is
    installed (an optional benchmark dependency); and our rates as a ratio to it."""
    if only and not any(part in "nautilus peer" for part in only):
        return []
    from bench import nautilus

    if not nautilus.available():
        print("nautilus peer: nautilus_trader is not installed (pip install nautilus_trader); no ratio", flush=True)
        return []
    rates = median_metrics([nautilus.throughput(size["orders"]) for _ in range(repeat)])
    resting_runs = median_metrics([nautilus.resting(PEER_RESTING) for _ in range(repeat)])
    metrics = {**rates, **{f"resting_{k}": v for k, v in resting_runs.items() if k != "resting"}}
    for result in ours:
        if result.scenario.startswith("throughput") and rates.get("orders_per_s"):
            metrics[f"ratio_{result.database}"] = result.metrics["placed_per_s"] / rates["orders_per_s"]
    result = Result("nautilus peer (in memory)", "-", metrics)
    print(format_table([result]).splitlines()[1], flush=True)
    return [result]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the OMS end to end (paper broker in-process, durable writes).",
    )
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both", help="database(s) to run on")
    parser.add_argument("--postgres-url", default=os.environ.get("OMS_TEST_POSTGRES_URL"), help="server to create throw-away databases on (default: $OMS_TEST_POSTGRES_URL)")
    parser.add_argument("--size", choices=sorted(SIZES), default="full", help="full: the README's figures; quick: a tiny smoke run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario; the median is reported")
    parser.add_argument("--only", action="append", default=[], help="run only scenarios whose name contains this (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--clients", type=int, help="client threads of the throughput scenario (default: the size's)")
    parser.add_argument("--resting", type=int, action="append", help="resting orders of a resting scenario (repeatable; default: the size's)")
    parser.add_argument("--recover", type=int, help="live orders of the recovery scenario (default: the size's)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp"), help="where SQLite files go")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr: the results only")
    parser.add_argument("--pin-to-cpu", type=int, metavar="CPU",
                        help="start every OMS with pin_to_cpu=CPU: the process, clients included, on that one CPU while it runs")
    args = parser.parse_args(argv)
    if args.pin_to_cpu is not None:
        os.environ["OMS_PIN_TO_CPU"] = str(args.pin_to_cpu)  # read by every start_oms of the run

    databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    size = dict(SIZES[args.size])
    if args.clients:
        size["clients"] = args.clients
    if args.resting:
        size["resting"] = tuple(args.resting)
    if args.recover:
        size["recover"] = args.recover
    results: list[Result] = []
    chosen = [(name, run) for name, run in scenarios(size) if not args.only or any(part in name for part in args.only)]
    began = time.monotonic()
    steps, step = len(chosen) * len(databases) * args.repeat, 0
    for name, run in chosen:
        for kind in databases:
            runs = []
            for attempt in range(args.repeat):
                if not args.quiet:
                    spent = time.monotonic() - began
                    left = f", about {spent / step * (steps - step):.0f}s to go" if step else ""
                    print(f"[{step + 1}/{steps}] {name} on {kind}, run {attempt + 1} of {args.repeat} "
                          f"({spent:.0f}s so far{left})", file=sys.stderr, flush=True)
                step += 1
                url, drop = fresh_database(kind, args.workdir, args.postgres_url)
                try:
                    runs.append(run(url))
                finally:
                    drop()
            result = Result(name, kind, median_metrics(runs), runs)
            results.append(result)
            print(format_table([result]).splitlines()[1], flush=True)
    results += peer(size, args.repeat, args.only, results)
    print()
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps(
            {"machine": describe_machine(), "size": args.size, "repeat": args.repeat, "pin_to_cpu": args.pin_to_cpu,
             "results": [r.__dict__ for r in results]}, indent=2, default=str))
    return 0
