"""Unreliable delivery: how Kite's pushed order updates (postbacks, the websocket's
order messages) reach an app on a bad day: lost, sent twice, or sent late, after the
update that followed them.

``UnreliableDelivery`` owns one sending thread, its queue and the knobs. The knobs are
probabilities drawn from one ``random.Random(seed)``, so a run with the same seed and
the same updates misbehaves the same way. ``reorder``: the update is held back and sent
after the next one (or after ``hold`` seconds if no next one comes: late, never lost).
"""
from __future__ import annotations

import queue
import random
import threading
from dataclasses import dataclass
from typing import Any, Callable

_STOP = object()


@dataclass(slots=True)
class DeliveryCounts:
    """What the sender did: updates it was handed, sends made, and the misbehaviour."""

    updates: int = 0
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    failed: int = 0  # the send did not reach the app


class UnreliableDelivery:
    """Hands each item ``put`` to ``send`` (which answers whether it reached the app)
    on a thread of its own, misbehaving as configured."""

    def __init__(self, send: Callable[[Any], bool], name: str) -> None:
        self._send = send
        self._name = name
        self._lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._random = random.Random(0)
        self.drop = self.duplicate = self.reorder = 0.0
        self.hold = 0.5
        self.counts = DeliveryCounts()

    def configure(
        self, *, drop: float = 0.0, duplicate: float = 0.0, reorder: float = 0.0, seed: int | None = None, hold: float = 0.5,
    ) -> None:
        for name, p in (("drop", drop), ("duplicate", duplicate), ("reorder", reorder)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} is a probability, got {p}")
        with self._lock:
            self.drop, self.duplicate, self.reorder, self.hold = drop, duplicate, reorder, hold
            self._random = random.Random(seed)

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(10)

    def put(self, item: Any) -> None:
        """Queue ``item``; never blocks (the book calls this under its lock)."""
        self._queue.put(item)

    def _run(self) -> None:
        held: Any = None
        while True:
            try:
                item = self._queue.get(timeout=self.hold if held is not None else None)
            except queue.Empty:
                self._deliver(held)  # nothing came after it: late, then
                held = None
                continue
            if item is _STOP:
                if held is not None:
                    self._deliver(held)
                return
            with self._lock:
                self.counts.updates += 1
                draw = self._random.random()
                twice = self._random.random() < self.duplicate
                if draw < self.drop:
                    self.counts.dropped += 1
                    continue
                if held is None and draw < self.drop + self.reorder:
                    self.counts.reordered += 1
                    held = item
                    continue
                if twice:
                    self.counts.duplicated += 1
            self._deliver(item)
            if twice:
                self._deliver(item)
            if held is not None:
                self._deliver(held)
                held = None

    def _deliver(self, item: Any) -> None:
        ok = self._send(item)
        with self._lock:
            if ok:
                self.counts.sent += 1
            else:
                self.counts.failed += 1
