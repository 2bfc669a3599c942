"""A TCP proxy on loopback that a test can cut and restore: to the OMS, the database
behind it goes away (every connection dropped, new ones refused) and comes back."""
from __future__ import annotations

import socket
import threading
from contextlib import suppress


class FaultProxy:
    """Forwards 127.0.0.1:<port> to ``target``; ``cut()`` drops every connection and
    refuses new ones until ``restore()``. ``close()`` stops it and its threads."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            if not self._open.is_set():
                client.close()  # the server is "down": refused
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pump, args=(source, sink), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass  # cut or closed: the other side sees the connection drop
        finally:
            self._drop(source)
            self._drop(sink)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with suppress(OSError):
            sock.close()

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            live = list(self._sockets)
        for sock in live:
            self._drop(sock)

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self._acceptor.join(5)
        self._listener.close()
        for thread in self._threads:
            thread.join(5)
