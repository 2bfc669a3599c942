"""The whole process on one CPU while an OMS runs (the ``pin_to_cpu`` setting).

Why: the OMS's Python work runs under one GIL, so it gets one processor's worth of work
done however many it is given. Spread over several, each hop between actors wakes a
thread on another processor (a wake-up across processors, cold caches) and the GIL is
handed from one processor to another. Kept on one, measured on a 2-vCPU machine
(PostgreSQL on the same machine, 4 client threads, run alternately with the process
free): CPU per order 3.1-3.3 -> 2.3-2.5 ms, context switches per order 49 -> 33,
orders/s +17-26% (SQLite +6-15%); the database server has the other processor to itself.

Off unless asked for: it pins every thread of the process, the caller's too (a thread
started while it holds runs on the same CPU), and two processes pinned to one CPU would
share it. When the last OMS that asked for it stops, every thread gets back the CPUs it
had (a thread started meanwhile, those of the process's main thread). Linux only.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Callable

log = logging.getLogger("oms.cpu")

# A thread may start another while a pass sets them one by one; the new one inherits
# its creator's old CPUs. Passes repeat until one finds no thread it had not seen.
MAX_PASSES = 20


def can_pin() -> bool:
    """Whether this platform lets a process choose its threads' CPUs."""
    return hasattr(os, "sched_setaffinity") and os.path.isdir("/proc/self/task")


def process_cpus() -> set[int]:
    """The CPUs this process may run on: its main thread's, or while an OMS holds it
    on one, those it had before."""
    held = process_pin.held_from()
    return held if held is not None else set(os.sched_getaffinity(os.getpid()))


def refusal(cpu: int) -> str | None:
    """Why the process cannot be kept on ``cpu``, or None if it can."""
    if not can_pin():
        return "this platform cannot keep a process on one CPU (Linux only)"
    allowed = process_cpus()
    if cpu not in allowed:
        return f"CPU {cpu} is not one this process may run on (it may use {sorted(allowed)})"
    return None


def _threads() -> dict[tuple[int, int], int]:
    """The process's threads: (id, start time) -> id. The start time tells a thread from
    a later one given the same id."""
    found = {}
    for name in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        found[(int(name), int(fields[19]))] = int(name)
    return found


def _set(tid: int, cpus: set[int]) -> None:
    try:
        os.sched_setaffinity(tid, cpus)
    except (ProcessLookupError, FileNotFoundError):
        pass  # the thread ended meanwhile
    except OSError as error:  # e.g. its old CPUs went offline: it keeps what it has
        log.warning("could not set the CPUs of thread %d to %s: %s", tid, sorted(cpus), error)


def _each_thread(visit: Callable[[tuple[int, int], int], None]) -> None:
    """Call ``visit(key, tid)`` once for every thread of the process, in passes until a
    pass finds none it had not visited (one started meanwhile is visited too)."""
    visited: set[tuple[int, int]] = set()
    for _ in range(MAX_PASSES):
        fresh = {key: tid for key, tid in _threads().items() if key not in visited}
        if not fresh:
            return
        for key, tid in fresh.items():
            visit(key, tid)
            visited.add(key)


class ProcessPin:
    """Counts the OMS instances that asked for the process on one CPU; pins on the first,
    gives every thread its CPUs back on the last release."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._cpu: int | None = None
        self._found: dict[tuple[int, int], set[int]] = {}
        self._process: set[int] = set()

    @property
    def cpu(self) -> int | None:
        """The CPU the process is pinned to, or None."""
        return self._cpu

    def held_from(self) -> set[int] | None:
        """The CPUs the process had before it was pinned, while it is; else None."""
        with self._lock:
            return set(self._process) if self._users else None

    def take(self, cpu: int) -> None:
        """Run every thread of the process on ``cpu`` (ValueError, naming the setting,
        if it cannot be or another OMS here holds the process on another CPU)."""
        why = refusal(cpu)  # before the lock: process_cpus() takes it
        if why is not None:
            raise ValueError(f"pin_to_cpu: {why}")
        with self._lock:
            if self._users:
                if cpu != self._cpu:
                    raise ValueError(
                        f"pin_to_cpu: this process already runs on CPU {self._cpu} for another OMS; "
                        f"it cannot also run on CPU {cpu}",
                    )
                self._users += 1
                return
            process = set(os.sched_getaffinity(os.getpid()))  # before: the main thread is pinned too
            found: dict[tuple[int, int], set[int]] = {}

            def pin(key: tuple[int, int], tid: int) -> None:
                try:
                    found[key] = set(os.sched_getaffinity(tid))
                except OSError:
                    return  # ended meanwhile
                _set(tid, {cpu})

            _each_thread(pin)
            self._found, self._process = found, process
            self._cpu = cpu
            self._users = 1

    def release(self) -> None:
        """One OMS no longer asks for it; the last gives every thread its CPUs back."""
        with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users:
                return
            _each_thread(lambda key, tid: _set(tid, self._found.get(key, self._process)))
            self._cpu, self._found = None, {}


process_pin = ProcessPin()
