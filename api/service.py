"""The API served in the OMS's process: uvicorn on a thread of its own, beside the
actors, started after the OMS and stopped before it."""
from __future__ import annotations

import logging
import threading
import time

import pykka
import uvicorn

from actors.oms import OMS
from api.app import PREFIX, create_app
from api.events import EventHub, EventListener
from api.keys import ApiKeys
from persistence.api_keys import ApiKeyStore

log = logging.getLogger("oms.api")
START_TIMEOUT = 30.0


class ApiUnavailable(RuntimeError):
    """The API could not start listening (the port is taken, say)."""


class ApiService:
    """Serves ``oms`` over HTTP and WebSocket on ``oms.settings.api_host``/``api_port``
    (``port`` overrides; 0 picks a free one). ``start`` returns once it listens;
    ``stop`` closes every connection and waits for its thread."""

    def __init__(self, oms: OMS, port: int | None = None) -> None:
        self._oms = oms
        settings = oms.settings
        self.host = settings.api_host
        self._port = settings.api_port if port is None else port
        self._keys_store: ApiKeyStore | None = None
        self._listener: pykka.ActorRef | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.hub = EventHub(settings.api_event_buffer)

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    def start(self) -> "ApiService":
        settings = self._oms.settings
        # The schema is the OMS's (migrated by start_oms): no migration from here.
        self._keys_store = ApiKeyStore.open(settings.database_url, settings.account, migrate=False)
        try:
            self._listener = EventListener.start(self.hub)
            self._oms.subscribe(self._listener, None)
            app = create_app(self._oms, ApiKeys(self._keys_store), self.hub)
            config = uvicorn.Config(
                app, host=self.host, port=self._port, log_level=logging.getLevelName(log.getEffectiveLevel()).lower(),
                access_log=False, lifespan="off", server_header=False, ws="websockets-sansio", proxy_headers=False,
                timeout_graceful_shutdown=5,
            )
            self._server = uvicorn.Server(config)
            self._thread = threading.Thread(target=self._server.run, name="oms-api", daemon=True)
            self._thread.start()
            deadline = time.monotonic() + START_TIMEOUT
            while not self._server.started:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    raise ApiUnavailable(f"the API could not listen on {self.host}:{self._port} (see the log)")
                time.sleep(0.01)
            self._port = self._server.servers[0].sockets[0].getsockname()[1]
        except BaseException:
            self.stop()
            raise
        log.warning("API listening on %s%s (docs at %s/docs)", self.url, PREFIX, self.url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        self._server = None
        if self._listener is not None:
            try:
                self._listener.stop(block=True, timeout=10)
            except pykka.ActorDeadError:
                pass
            self._listener = None
        if self._keys_store is not None:
            self._keys_store.close()
            self._keys_store = None

    def __enter__(self) -> "ApiService":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
