"""pin_to_cpu: the whole process on one CPU while an OMS runs, every thread's CPUs given
back when the last OMS that asked for it stops, and a CPU the process may not use refused
by name before anything starts."""
from __future__ import annotations

import os
import threading
from decimal import Decimal

import pytest
from pydantic import ValidationError

from actors import start_oms
from actors.cpu_pin import process_pin
from domain import OrderRequest
from persistence.preflight import DatabaseUnavailable

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux's")

ALLOWED = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
CPU = ALLOWED[-1]


def affinities() -> dict[int, set[int]]:
    """Every thread of this process, by id, and the CPUs it may run on."""
    found = {}
    for name in os.listdir("/proc/self/task"):
        try:
            found[int(name)] = set(os.sched_getaffinity(int(name)))
        except (ProcessLookupError, FileNotFoundError):
            continue  # ended meanwhile
    return found


class Sleeper:
    """A thread of the caller's, with CPUs of its own choosing, that waits to be told."""

    def __init__(self, cpus: set[int] | None = None) -> None:
        self.cpus: set[int] = set()
        self.tid = 0
        self._go = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(cpus,), name="caller-sleeper")
        self._thread.start()
        self._ready.wait(5)

    def _run(self, cpus: set[int] | None) -> None:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        self.tid = threading.get_native_id()
        self._ready.set()
        self._go.wait(30)

    def end(self) -> None:
        self._go.set()
        self._thread.join(5)


def test_every_thread_runs_on_the_chosen_cpu_while_the_oms_runs_and_gets_its_own_back_after(sqlite_url):
    own = Sleeper({ALLOWED[0]})  # a thread of the caller's that chose its own CPUs
    before = affinities()
    try:
        oms = start_oms(database_url=sqlite_url, pin_to_cpu=CPU, capital=Decimal("1000000"), require_stop_loss=False)
        try:
            started_meanwhile = Sleeper()  # inherits the pin from the thread that started it
            try:
                oms.paper.set_price("INFY", Decimal("1500"))
                result = oms.place_order(OrderRequest(symbol="INFY", side="BUY", quantity=1, product="MIS"))
                assert result.broker_order_id  # the OMS works as ever, on one CPU
                pinned = affinities()
                assert len(pinned) > len(before)  # the OMS's own threads are there too
                assert all(cpus == {CPU} for cpus in pinned.values()), pinned
                assert process_pin.cpu == CPU
            finally:
                started_meanwhile.end()
        finally:
            oms.stop()
        after = affinities()
        assert after[threading.get_native_id()] == before[threading.get_native_id()] == set(ALLOWED)
        assert after[own.tid] == {ALLOWED[0]}  # its own choice, not the process's
        assert process_pin.cpu is None
    finally:
        own.end()


def test_oms_instances_in_one_process_share_the_pin_and_the_last_to_stop_gives_it_back(tmp_path):
    first = start_oms(database_url=f"sqlite:///{tmp_path}/one.db", pin_to_cpu=CPU)
    try:
        second = start_oms(database_url=f"sqlite:///{tmp_path}/two.db", pin_to_cpu=CPU)
        try:
            if len(ALLOWED) > 1:
                with pytest.raises(ValueError, match=rf"pin_to_cpu: this process already runs on CPU {CPU}"):
                    start_oms(database_url=f"sqlite:///{tmp_path}/three.db", pin_to_cpu=ALLOWED[0])
        finally:
            second.stop()
        assert os.sched_getaffinity(0) == {CPU}  # the first still runs
    finally:
        first.stop()
    assert os.sched_getaffinity(0) == set(ALLOWED)
    assert process_pin.cpu is None


def test_a_cpu_the_process_may_not_use_is_refused_by_name_before_anything_starts(sqlite_url):
    threads = set(affinities())
    with pytest.raises(ValidationError, match=r"pin_to_cpu\n.*is not one this process may run on \(it may use "):
        start_oms(database_url=sqlite_url, pin_to_cpu=max(ALLOWED) + 1000)
    with pytest.raises(ValidationError, match=r"pin_to_cpu\n.*greater than or equal to 0"):
        start_oms(database_url=sqlite_url, pin_to_cpu=-1)
    assert not set(affinities()) - threads, "no thread was started"
    assert os.sched_getaffinity(0) == set(ALLOWED)


def test_an_empty_setting_in_the_environment_leaves_the_process_where_it_is(sqlite_url, monkeypatch):
    monkeypatch.setenv("OMS_PIN_TO_CPU", "")
    oms = start_oms(database_url=sqlite_url)
    try:
        assert process_pin.cpu is None and os.sched_getaffinity(0) == set(ALLOWED)
    finally:
        oms.stop()


def test_a_start_that_fails_leaves_every_thread_where_it_was(tmp_path):
    before = affinities()
    with pytest.raises(DatabaseUnavailable, match="does not exist"):
        start_oms(database_url=f"sqlite:///{tmp_path}/missing/oms.db", pin_to_cpu=CPU)
    assert process_pin.cpu is None
    after = affinities()
    assert {tid: after[tid] for tid in before if tid in after} == {tid: before[tid] for tid in before if tid in after}
