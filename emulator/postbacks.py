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
import urllib.error
import urllib.request
from typing import Any, Callable

from emulator.delivery import DeliveryCounts, UnreliableDelivery

log = logging.getLogger("emulator.postbacks")

# The statuses Kite posts; the transient "... PENDING" / "... REQ RECEIVED" ones it does not.
POSTED = frozenset({"OPEN", "TRIGGER PENDING", "COMPLETE", "CANCELLED", "REJECTED"})
PostbackCounts = DeliveryCounts


def checksum(order_id: str, order_timestamp: str, api_secret: str) -> str:
    return hashlib.sha256(f"{order_id}{order_timestamp}{api_secret}".encode()).hexdigest()


class Postbacks:
    """Owns the postback URL and the misbehaving sender (``emulator.delivery``).
    ``configure`` starts it; ``stop`` ends it."""

    def __init__(self, api_secret: str, encode: Callable[[Any], Any]) -> None:
        self._secret = api_secret
        self._encode = encode
        self._url: str | None = None
        self._delivery = UnreliableDelivery(self._post, "kite-emulator-postbacks")

    @property
    def counts(self) -> DeliveryCounts:
        return self._delivery.counts

    def configure(
        self, url: str | None, *, drop: float = 0.0, duplicate: float = 0.0, reorder: float = 0.0,
        seed: int | None = None, hold: float = 0.5,
    ) -> None:
        """Post each order update to ``url`` (None: stop posting)."""
        self._delivery.configure(drop=drop, duplicate=duplicate, reorder=reorder, seed=seed, hold=hold)
        self._url = url
        if url is not None:
            self._delivery.start()

    def stop(self) -> None:
        self._delivery.stop()

    # ------------------------------------------------------------------ the book's side

    def order_changed(self, order: dict[str, Any]) -> None:
        """Called by the book (under its lock) with the order as Kite shows it: queue
        it, never block."""
        if self._url is not None and order.get("status") in POSTED:
            self._delivery.put(order)

    # ------------------------------------------------------------------ the sending thread

    def _post(self, order: dict[str, Any]) -> bool:
        url = self._url
        if url is None:
            return False
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
        return ok
