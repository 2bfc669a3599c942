"""The whole process on one CPU while an OMS runs (the ``pin_to_cpu`` setting).

Why: the OMS's Python work runs under one GIL, so it gets one processor's worth of work
done however many it is given. Spread over several, each hop between actors wakes a
thread on another processor (a wake-up across processors, cold caches) and the GIL is
handed from one processor to another. Kept on one, measured on a 2-vCPU machine
(PostgreSQL on the same machine, 4 client threads, run alternately with the process
free): CPU per order 2.7-3.0 -> 2.1 ms, context switches per order 48 -> 32, orders/s
+12-20%; the database server has the other processor to itself.

Off unless asked for: it pins every thread of the process, the caller's too (a thread
started while it holds runs on the same CPU), and two processes pinned to one CPU would
share it. When the last OMS that asked for it stops, every thread gets back the CPUs it
had (a thread started meanwhile, those the process had). Linux only.
"""
from __future__ import annotations

import os
import threading


def can_pin() -> bool:
    """Whether this platform lets a process choose its threads' CPUs."""
    return hasattr(os, "sched_setaffinity") and os.path.isdir("/proc/self/task")


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on: those it had before an OMS pinned it, while one
    does; else this thread's."""
    held = process_pin.held_from()
    return held if held is not None else set(os.sched_getaffinity(0))


def _threads() -> list[int]:
    """The ids of the process's threads (Linux: each is a task of its own)."""
    return [int(name) for name in os.listdir("/proc/self/task")]


def _set(tid: int, cpus: set[int]) -> None:
    try:
        os.sched_setaffinity(tid, cpus)
    except (ProcessLookupError, FileNotFoundError):
        pass  # the thread ended meanwhile


class ProcessPin:
    """Counts the OMS instances that asked for the process on one CPU; pins on the first,
    gives every thread its CPUs back on the last release."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._cpu: int | None = None
        self._found: dict[int, set[int]] = {}
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
        with self._lock:
            if self._users:
                if cpu != self._cpu:
                    raise ValueError(
                        f"pin_to_cpu: this process already runs on CPU {self._cpu} for another OMS; "
                        f"it cannot also run on CPU {cpu}",
                    )
                self._users += 1
                return
            if not can_pin():
                raise ValueError("pin_to_cpu: this platform cannot keep a process on one CPU (Linux only)")
            allowed = set(os.sched_getaffinity(0))
            if cpu not in allowed:
                raise ValueError(f"pin_to_cpu: CPU {cpu} is not one this process may run on (it may use {sorted(allowed)})")
            found: dict[int, set[int]] = {}
            for tid in _threads():
                try:
                    found[tid] = set(os.sched_getaffinity(tid))
                except (ProcessLookupError, FileNotFoundError):
                    continue
            self._found, self._process = found, allowed
            for tid in found:
                _set(tid, {cpu})
            self._cpu = cpu
            self._users = 1

    def release(self) -> None:
        with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users:
                return
            for tid in _threads():
                _set(tid, self._found.get(tid, self._process))
            self._cpu, self._found = None, {}


process_pin = ProcessPin()
