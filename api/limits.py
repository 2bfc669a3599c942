"""Per-key rate limits: a token bucket for each key (a burst, then a sustained rate)."""
from __future__ import annotations

import math
import threading
import time
from typing import Callable


class TokenBuckets:
    """``rate`` requests a second sustained and ``burst`` at once, per key. ``take``
    answers 0 when the request may go, else the seconds until it may."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate and burst must be positive, got {rate} and {burst}")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> float:
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - at) * self._rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self._rate


def retry_after(seconds: float) -> str:
    """A Retry-After header's whole seconds (at least 1)."""
    return str(max(1, math.ceil(seconds)))
