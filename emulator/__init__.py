"""A Kite Connect emulator: the broker's far side, for tests and for trying Kite mode.

``KiteEmulator`` serves Kite's REST API on 127.0.0.1 to the official ``kiteconnect``
client, and Kite's websocket (order updates and ticks, ``emulator.ticker``), backed by
``KiteBook`` (a small simulated matching book) and ``Faults`` (latency, timeouts after accept, 429, 5xx, token expiry on demand). It imports nothing
of the OMS.
"""
from emulator.book import KiteBook, KiteError
from emulator.faults import Faults
from emulator.server import KiteEmulator

__all__ = ["Faults", "KiteBook", "KiteEmulator", "KiteError"]
