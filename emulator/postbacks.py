"""Kite's postbacks, sent by the emulator: each order update the book makes is posted to
the app's postback URL, signed as Kite signs it, and (on request) lost, sent twice, or
sent late, after the update that followed it.

Kite posts an order when it changes (OPEN, a partial fill, a modification, COMPLETE,
CANCELLED, REJECTED), with checksum = hex SHA-256(order_id + order_timestamp +
api_secret), and does not retry a postback that failed. The knobs are probabilities
drawn from one ``random.Random(seed)``, so a run with the same seed and the same updates
misbehaves the same way.
"""
from __future__ import annotations

import hashlib
import json
import logging
import queue
import random
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger("emulator.postbacks")

# The statuses Kite posts; the transient "... PENDING" / "... REQ RECEIVED" ones it does not.
POSTED = frozenset({"OPEN", "TRIGGER PENDING", "COMPLETE", "CANCELLED", "REJECTED"})
_STOP = object()


def checksum(order_id: str, order_timestamp: str, api_secret: str) -> str:
    return hashlib.sha256(f"{order_id}{order_timestamp}{api_secret}".encode()).hexdigest()


@dataclass(slots=True)
class PostbackCounts:
    """What the sender did: updates it was handed, posts made, and the misbehaviour."""

    updates: int = 0
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    failed: int = 0  # the app did not answer 200 (or could not be reached)


class Postbacks:
    """Owns the sending thread and the knobs. ``configure`` starts it; ``stop`` ends it.

    ``reorder``: the update is held back and sent after the next one (or after
    ``hold`` seconds if no next one comes: late, never lost)."""

    def __init__(self, api_secret: str, encode: Callable[[Any], Any]) -> None:
        self._secret = api_secret
        self._encode = encode
        self._lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._url: str | None = None
        self._random = random.Random(0)
        self.drop = self.duplicate = self.reorder = 0.0
        self.hold = 0.5
        self.counts = PostbackCounts()

    def configure(
        self, url: str | None, *, drop: float = 0.0, duplicate: float = 0.0, reorder: float = 0.0,
        seed: int | None = None, hold: float = 0.5,
    ) -> None:
        """Post each order update to ``url`` (None: stop posting)."""
        for name, p in (("drop", drop), ("duplicate", duplicate), ("reorder", reorder)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} is a probability, got {p}")
        with self._lock:
            self._url = url
            self.drop, self.duplicate, self.reorder, self.hold = drop, duplicate, reorder, hold
            self._random = random.Random(seed)
            if url is not None and self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kite-emulator-postbacks", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(10)

    # ------------------------------------------------------------------ the book's side

    def order_changed(self, order: dict[str, Any]) -> None:
        """Called by the book (under its lock) with the order as Kite shows it: queue
        it, never block."""
        if self._url is not None and order.get("status") in POSTED:
            self._queue.put(order)

    # ------------------------------------------------------------------ the sending thread

    def _run(self) -> None:
        held: dict[str, Any] | None = None
        while True:
            try:
                item = self._queue.get(timeout=self.hold if held is not None else None)
            except queue.Empty:
                self._post(held)  # nothing came after it: late, then
                held = None
                continue
            if item is _STOP:
                if held is not None:
                    self._post(held)
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
            self._post(item)
            if twice:
                self._post(item)
            if held is not None:
                self._post(held)
                held = None

    def _post(self, order: dict[str, Any]) -> None:
        url = self._url
        if url is None:
            return
        body = dict(order)
        body.update(user_id=order.get("placed_by"), app_id=1,
                    unfilled_quantity=order["quantity"] - order["filled_quantity"])
        body["checksum"] = checksum(str(body["order_id"]), str(body["order_timestamp"]), self._secret)
        data = json.dumps(body, default=self._encode).encode()
        request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=2) as answer:
                ok = answer.status == 200
        except (urllib.error.URLError, OSError):
            ok = False  # Kite does not retry a postback: polling is the app's safety net
        with self._lock:
            if ok:
                self.counts.sent += 1
            else:
                self.counts.failed += 1
