"""TokenFileWatcher: takes a new Kite access token from the secrets file when it changes,
so the daily login (``oms-login`` writing the file) needs no restart of the OMS."""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from actors.brokers.kite_secrets import SecretsFileError, read_secrets

log = logging.getLogger("oms.kite")


class TokenFileWatcher:
    """Owns a thread that looks at the file every ``interval`` seconds; when the file
    changed and holds an access token other than the last one seen, hands it to
    ``on_token``. Starts from ``current`` (the token the OMS started with)."""

    def __init__(self, path: Path, on_token: Callable[[str], None], *, interval: float, current: str | None) -> None:
        self._path = path
        self._on_token = on_token
        self._interval = interval
        self._last = current
        self._seen = self._stamp()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def _stamp(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self._path)
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kite-token-watch")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.look()

    def look(self) -> bool:
        """One look at the file; True if a new token was handed on."""
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return False
        try:
            token = read_secrets(self._path).get("kite_access_token")
        except SecretsFileError as error:  # perhaps half-written by hand: look again later
            if not self._failing:
                log.warning("%s", error)
            self._failing = True
            return False
        self._failing = False
        self._seen = stamp
        if not token or token == self._last:
            return False
        try:
            self._on_token(token)
        except Exception as error:  # the OMS stopping, say: the next change tries again
            log.warning("the new access token in %s could not be set: %s", self._path, type(error).__name__)
            return False
        self._last = token
        log.warning("took the new Kite access token from %s", self._path)
        return True
