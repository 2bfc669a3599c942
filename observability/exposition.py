"""Serving the metrics: prometheus-client's HTTP server on a loopback port, or an app
for another server to mount at ``/metrics``."""
from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import make_asgi_app, make_wsgi_app, start_http_server

from observability.metrics import OMSMetrics

log = logging.getLogger("oms.metrics")


class MetricsServer:
    """prometheus-client's HTTP server for one OMS's registry, on 127.0.0.1 only (put a
    proxy in front to expose it further). ``port`` 0 takes any free port."""

    def __init__(self, metrics: OMSMetrics, port: int, host: str = "127.0.0.1") -> None:
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=metrics.registry)
        except OSError as error:
            raise OSError(f"metrics_port: cannot listen on {host}:{port} ({error.strerror or error})") from error
        self._thread.name = f"oms-metrics-{self.port}"
        self._stopped = threading.Event()
        log.info("metrics served at %s", self.url)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving and wait for the server's thread."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def asgi_app(metrics: OMSMetrics) -> Any:
    """An ASGI app answering the Prometheus text format, to mount at ``/metrics``."""
    return make_asgi_app(metrics.registry)


def wsgi_app(metrics: OMSMetrics) -> Any:
    """The same as a WSGI app."""
    return make_wsgi_app(metrics.registry)


def metrics_app(oms: Any) -> Any:
    """The ASGI app an HTTP server mounts at ``/metrics`` for a running OMS (its own
    registry; nothing is read from the actors)."""
    return asgi_app(oms.metrics)
